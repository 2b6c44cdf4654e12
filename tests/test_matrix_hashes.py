"""Cell, variant and measurement hashes are pinned: they name every cached model and row, so a
refactor that changed them would silently refit and recompute every run folder."""

from __future__ import annotations

import json
import math

from ppds_core import PluginConfig
from ppds_core.matrix.cells import Cell, _canon, content_hash, measurement_id
from ppds_core.matrix.config import ResolvedDataset, ResolvedPlugin


class _Options(PluginConfig):
    steps: int = 3
    lr: float = 1e-3
    widths: list[int] = [8, 16]
    note: str | None = None


def _plugin(name: str, kind: str, **options) -> ResolvedPlugin:
    return ResolvedPlugin(name, kind, object, _Options(**options), "1.2", f"{kind}s[0]")  # type: ignore[arg-type]


def _cell(epsilon: float, generator: ResolvedPlugin | None) -> Cell:
    data = ResolvedDataset(_plugin("digits", "dataset"), _plugin("glyphs", "dataset", steps=1))
    return Cell(0, data, generator, epsilon, 1e-5, 0, 1000, False, "prv", True)


#: (ε, generator?) → (key, variant, cell id of data "fp0", measurement id of the metric), from
#: the code before the ε codec moved to ppds_core.budget
PINNED = {
    (1.0, True): ("9cca98d930a3ed1d", "b0307028", "d3ebf7a8db6c590a", "56fbc0457fddc24c"),
    (10.0, True): ("ac7d647fbc794cb4", "b0307028", "ca971f2e95bee429", "b9ffd26daad687f5"),
    (math.inf, True): ("45d89ddc78a040d5", "b0307028", "76416a1f54ed54fd", "3bfc9f099eb45bc2"),
    (math.inf, False): ("de736535ea6b0021", "8f38b7fd", "1637dcdd865884d2", "765ee262a5ecaeda"),
}


def _hashes(epsilon: float, with_generator: bool) -> tuple[str, str, str, str]:
    gen = _plugin("dp-gan", "generator", lr=2e-4, note="x") if with_generator else None
    cell = _cell(epsilon, gen)
    cid = cell.cell_id("fp0")
    return cell.key, cell.variant, cid, measurement_id(cid, _plugin("fid", "metric", widths=[1]), False)


def test_cell_and_measurement_hashes_are_the_pinned_ones():
    for (epsilon, with_generator), pinned in PINNED.items():
        assert _hashes(epsilon, with_generator) == pinned, (epsilon, with_generator)


def test_the_canonical_json_writes_infinity_as_a_string_and_sorts_keys():
    obj = {"b": math.inf, "a": [-math.inf, 1.5, (2, "x")], 3: None}
    assert json.dumps(_canon(obj), sort_keys=True) == '{"3": null, "a": ["-inf", 1.5, [2, "x"]], "b": "inf"}'
    assert content_hash(obj) == "5231ec0f6a30ece0"
