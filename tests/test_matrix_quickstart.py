"""The bundled quickstart matrix: shipped inside the package, identical to the example, valid,
and runnable end to end in smoke mode."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ppds_core.matrix import expand_cells, load_matrix, quickstart_config_path, read_results
from ppds_core.matrix.config import parse_yaml

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "quickstart.yaml"


def test_packaged_quickstart_is_identical_to_the_example():
    assert quickstart_config_path().read_text() == EXAMPLE.read_text()


def test_quickstart_validates_against_the_installed_plugins():
    matrix = load_matrix(parse_yaml(quickstart_config_path().read_text(), "quickstart.yaml"))
    assert [d.plugin.name for d in matrix.datasets] == ["digits"]
    assert matrix.datasets[0].public is not None and matrix.datasets[0].public.name == "glyphs"
    assert all(g.epsilons[:2] == [1.0, 10.0] and g.epsilons[2] == float("inf") for g in matrix.generators)
    assert matrix.config.seeds == [0]
    kinds = {e.kind for e in matrix.evaluators}
    assert kinds == {"metric", "attack"}
    n_gen = len(matrix.generators)
    assert len(expand_cells(matrix)) == 3 * n_gen + 1  # + the real-data reference


def test_quickstart_prints_its_config(capsys):
    from ppds_core.cli import main

    assert main(["quickstart", "--print-config"]) == 0
    assert capsys.readouterr().out == EXAMPLE.read_text()


def test_paper_scale_configs_validate_against_the_installed_plugins():
    """The GPU configs cannot run here, but every option they set must exist and validate."""
    papers = sorted((EXAMPLE.parent / "paper").glob("*.yaml"))
    assert len(papers) >= 2
    for path in papers:
        matrix = load_matrix(parse_yaml(path.read_text(), path.name))
        for gen in matrix.generators:
            assert gen.plugin.config.noise_multiplicity == 32 and gen.plugin.config.max_physical_batch_size


@pytest.mark.slow
def test_quickstart_smoke_runs_every_plugin_without_a_failed_row(tmp_path):
    """`ppds run quickstart.yaml --smoke`: every plugin's smoke config fits every other's
    (LiRA's matched shadows train on the target's own training-set size)."""
    from ppds_core.cli import main

    out = tmp_path / "smoke"
    assert main(["run", str(quickstart_config_path()), "--smoke", "--out", str(out), "--quiet"]) == 0
    rows = read_results(out)
    assert rows and all(r["smoke"] for r in rows)
    assert [r for r in rows if r["status"] == "failed"] == []
    lira = {(r["generator"], r["epsilon"]) for r in rows if r["name"] == "lira-auc" and r["status"] == "ok"}
    assert lira == {("dp-gan", 10.0), ("dp-gan", math.inf), ("real-data", math.inf)}
    # the real-data release is attacked: distance attacks find every member (the ceiling)
    ceiling = {r["name"]: r["value"] for r in rows if r["generator"] == "real-data" and r["kind"] == "attack"}
    assert ceiling["gan-leaks-auc"] == 1.0 and ceiling["lira-auc"] == 1.0
    assert (out / "leaderboard-smoke.md").exists() and not list(out.glob("leaderboard.*"))
