"""The bundled quickstart matrix: shipped inside the package, identical to the example, valid."""

from __future__ import annotations

from pathlib import Path

from ppds_core.matrix import expand_cells, load_matrix, quickstart_config_path
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
