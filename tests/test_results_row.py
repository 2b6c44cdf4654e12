"""The results row: one model owns its columns, the namespacing of plugin extras, the JSON form of
every float, the derived ``reference``, the violation role, and docs/matrix.md's table."""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from matrix_fakes import MATRIX, install

import ppds_core
from ppds_core.interfaces import Measurement
from ppds_core.matrix import REQUIRED_KEYS, ResultRow, append_rows, read_rows, run_matrix
from ppds_core.matrix.row import is_reference, markdown_table, role_of
from ppds_core.testing.distributions import make_plugin_distribution

DOCS = Path(__file__).resolve().parents[1] / "docs" / "matrix.md"


def _base(**over) -> dict:
    return {"cell": "c", "dataset": "d", "generator": "g", "epsilon": 1.0, "epsilon_spent": 0.9,
            "delta": 1e-5, "seed": 0, "kind": "attack", "name": "m", "value": 0.5,
            "higher_is_better": False, "status": "ok", "error": None, "ppds_version": "0"} | over


def _same(a, b) -> bool:
    """Equal, with NaN equal to NaN and floats compared bit for bit."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a.hex() == b.hex()
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def test_the_model_is_exported_and_its_required_keys_are_the_schema_every_version_wrote():
    assert ppds_core.ResultRow is ResultRow and "ResultRow" in ppds_core.__all__
    assert REQUIRED_KEYS == ("cell", "dataset", "generator", "epsilon", "epsilon_spent", "delta", "seed",
                             "kind", "name", "value", "higher_is_better", "status", "error", "ppds_version")


def test_every_float_column_and_extra_round_trips_infinities_and_nan():
    odd = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}
    row = ResultRow.model_validate(_base(epsilon=math.inf, epsilon_spent=-math.inf, delta=math.nan,
                                         value=math.inf, seconds=math.nan)).with_extras({
        "bound": -math.inf, "nested": {"a": [math.inf, 1.5, math.nan], "b": {"c": -math.inf}},
        "np32": np.float32("inf"), "np64": np.float64("nan"), "arr": np.array([1.0, -np.inf]),
    })
    line = row.to_json()
    for spelled in odd:
        assert f'"{spelled}"' in line
    assert "Infinity" not in line and "NaN" not in line  # strict JSON: no bare non-finite literals
    json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c} in {line}"))
    back = ResultRow.from_json(line).to_record()
    want = row.to_record() | {"np32": math.inf, "np64": math.nan, "arr": [1.0, -math.inf]}
    assert _same(back, want)
    assert math.isinf(back["epsilon"]) and back["reference"]  # ε = ∞: a reference, derived


def test_append_and_read_rows_round_trip_every_float(tmp_path):
    path = tmp_path / "results.jsonl"
    rows = [_base(value=-math.inf, ci=[math.nan, math.inf]), _base(name="n", epsilon_spent=math.inf)]
    append_rows(path, rows)
    back = read_rows(path)
    assert math.isinf(back[0]["value"]) and back[0]["value"] < 0
    assert math.isnan(back[0]["ci"][0]) and back[0]["ci"][1] == math.inf
    assert back[1]["epsilon_spent"] == math.inf
    # a text column is never read as a float, whatever it says
    append_rows(path, [_base(name="inf", error="nan", status="failed", value=None)])
    assert read_rows(path)[-1]["name"] == "inf" and read_rows(path)[-1]["error"] == "nan"


@pytest.mark.parametrize("key", ["public", "seconds", "scores", "value", "name", "role", "reference",
                                 "measurement"])
def test_an_extra_named_like_a_column_never_overwrites_it(key):
    row = ResultRow.model_validate(_base(public="glyphs", seconds=1.5, measurement="h"))
    out = row.with_extras({key: "from the plugin", f"extra_{key}": "taken too"}).to_record()
    for column in ResultRow.model_fields:
        assert out.get(column) != "from the plugin"
    assert out[f"extra_{key}"] == "from the plugin"
    assert out[f"extra_extra_{key}"] == "taken too"
    assert out["public"] == "glyphs" and out["seconds"] == 1.5 and out["value"] == 0.5


def test_an_extra_named_like_a_constructor_argument_is_just_an_extra():
    row = ResultRow.model_validate(_base()).with_extras({"outcome": 1, "cell_id": 2, "columns": 3})
    assert {k: row.to_record()[k] for k in ("outcome", "cell_id", "columns")} == {
        "outcome": 1, "cell_id": 2, "columns": 3}


def test_reference_is_derived_from_the_rows_own_fields():
    assert not ResultRow.model_validate(_base()).reference
    assert ResultRow.model_validate(_base(epsilon=math.inf, reference=False)).reference
    assert ResultRow.model_validate(_base(generator="real-data", reference=False)).reference
    # a row from before the key: the same derivation on read
    assert is_reference({"generator": "g", "epsilon": math.inf}) and not is_reference({"epsilon": 2.0})


def test_role_is_explicit_and_only_an_old_row_without_it_falls_back_to_the_name():
    assert role_of({"name": "canary", "role": "violation"}) == "violation"
    assert role_of({"name": "x-epsilon-violation", "role": "value"}) == "value"
    assert role_of({"name": "x-epsilon-violation"}) == "violation"  # written before `role`
    assert role_of({"name": "x-auc"}) == "value"
    assert ResultRow.model_validate(_base(name="old-violation")).role == "violation"
    with pytest.raises(ValueError, match="role"):
        Measurement("m", 1.0, role="flag")


def test_docs_results_table_lists_exactly_the_models_columns():
    text = DOCS.read_text(encoding="utf-8")
    assert markdown_table() in text
    section = text.split("## Results schema", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.M)
    assert documented == list(ResultRow.model_fields)


# --------------------------------------------------------------------------- through the runner

PLUGIN = '''
from ppds_core import Attack, Measurement, hookimpl

class Flagger(Attack):
    """A claim check whose name says nothing, and extras named like columns."""
    name = "flagger"
    higher_is_better = False

    def evaluate(self, ctx):
        extra = {"public": "mine", "seconds": -1.0, "cell_id": "x", "outcome": "y", "far": float("inf")}
        return [Measurement("flagger-score", 0.2, headline=True, extra=extra),
                Measurement("flagger-canary", 1.0, role="violation")]

@hookimpl
def register_plugins(register):
    register(Flagger)
'''


def test_a_run_writes_the_role_and_namespaces_extras_like_columns(monkeypatch, tmp_path):
    install(monkeypatch, tmp_path)
    site = make_plugin_distribution(tmp_path / "flagger", "ppds-flagger", {"ppds_flagger": PLUGIN},
                                    {"flagger": "ppds_flagger"}, version="0.1")
    monkeypatch.syspath_prepend(str(site))
    ppds_core.reset_registry()
    cfg = copy.deepcopy(MATRIX) | {"metrics": [], "attacks": [{"name": "flagger", "generators": ["fake-gen"]}],
                                   "real_data": False}
    cfg["generators"][0]["epsilons"] = [1]
    out = tmp_path / "out"
    assert run_matrix(cfg, out).exit_code == 0
    rows = {r["name"]: r for r in read_rows(out / "results.jsonl")}
    assert rows["flagger-canary"]["role"] == "violation" and rows["flagger-score"]["role"] == "value"
    score = rows["flagger-score"]
    assert score["public"] == "tiny-public" and score["extra_public"] == "mine"
    assert score["seconds"] >= 0 and score["extra_seconds"] == -1.0
    assert score["cell_id"] == "x" and score["outcome"] == "y" and score["far"] == math.inf
    board = (out / "leaderboard.md").read_text()
    assert "Privacy claim violated" in board and "flagger-canary" in board
