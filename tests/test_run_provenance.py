"""A run folder says what made it (provenance.json); --check --out says what is done there;
an unknown plugin option suggests the closest known one; a piped run ends on Markdown."""

from __future__ import annotations

import copy
import json
from datetime import datetime

import pytest
import yaml
from matrix_fakes import MATRIX, install

from ppds_core import ConfigError, __version__
from ppds_core.cli import main
from ppds_core.matrix import run_matrix

#: the cheapest matrix of the fakes: one private cell and the real-data row, one metric
SMALL = copy.deepcopy(MATRIX) | {
    "generators": [{"name": "fake-gen", "epsilons": [10], "config": {"steps": 2}}],
    "metrics": [{"name": "fake-gap"}],
    "attacks": [],
}
KEYS = {"matrix_given", "matrix_resolved", "versions", "cuda", "gpu", "git_revision", "host", "created"}


@pytest.fixture
def fakes(monkeypatch, tmp_path):
    return install(monkeypatch, tmp_path)


def test_provenance_is_written_at_the_start_and_a_resume_keeps_its_creation_time(fakes, tmp_path, capsys):
    out = tmp_path / "out"
    run_matrix(copy.deepcopy(SMALL), out)
    p = json.loads((out / "provenance.json").read_text())
    assert set(p) == KEYS
    assert p["matrix_given"] == SMALL  # as given (a dict here; a file's text from `ppds run`)
    gen = p["matrix_resolved"]["generators"][0]
    assert gen["name"] == "fake-gen" and gen["config"]["steps"] == 2 and "noise" in gen["config"]  # defaults
    assert p["matrix_resolved"]["accountant"] == "prv" and p["matrix_resolved"]["samples"] == 40
    v = p["versions"]
    assert v["ppds"] == __version__ and v["python"] and v["torch"] and v["opacus"]
    assert {"lightning", "diffusers"} <= set(v)
    assert v["plugins"]["fake-matrix"] == {"distribution": "ppds-fake-matrix", "version": "0.1"}
    assert isinstance(p["gpu"], list) and (p["cuda"] is None or isinstance(p["cuda"], str))
    assert p["git_revision"] is None or len(p["git_revision"].removesuffix("-dirty")) == 40
    assert set(p["host"]) == {"node", "machine", "cpu_count"}
    assert datetime.fromisoformat(p["created"]).utcoffset().total_seconds() == 0

    p["created"] = "2026-01-01T00:00:00+00:00"  # as if the first run had been long ago
    (out / "provenance.json").write_text(json.dumps(p))
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0  # a resume: nothing left to do
    again = json.loads((out / "provenance.json").read_text())
    assert again["created"] == "2026-01-01T00:00:00+00:00"
    assert again["matrix_given"] == path.read_text()


def test_check_with_out_says_which_cells_are_done(fakes, tmp_path, capsys):
    path, out = tmp_path / "small.yaml", tmp_path / "out"
    path.write_text(yaml.safe_dump(SMALL))

    def states(matrix) -> list[str]:
        summary = run_matrix(copy.deepcopy(matrix), out, check=True)
        return [f"{c.generator_name} {s}" for c, s in zip(summary.cells, summary.states, strict=True)]

    assert states(SMALL) == ["fake-gen would run", "real-data would run"]
    assert main(["run", str(path), "--check", "--out", str(out)]) == 0
    assert "2 cells: 0 done, 2 to run" in capsys.readouterr().out
    assert not (out / "provenance.json").exists()  # a check writes nothing
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    assert states(SMALL) == ["fake-gen done", "real-data done"]
    assert main(["run", str(path), "--check", "--out", str(out)]) == 0
    assert "2 cells: 2 done, 0 to run" in capsys.readouterr().out
    more = copy.deepcopy(SMALL)
    more["metrics"].append({"name": "fake-acc"})
    assert states(more) == ["fake-gen fitted; 1 of 2 measurements would run",
                            "real-data 1 of 2 measurements would run"]
    assert run_matrix(copy.deepcopy(SMALL), None, check=True).states is None  # no --out: no states


def test_check_names_each_cell_by_the_folder_a_run_writes_it_to(fakes, tmp_path, capsys):
    out = tmp_path / "out"
    folders = run_matrix(copy.deepcopy(SMALL), None, check=True).folders
    run_matrix(copy.deepcopy(SMALL), out)
    assert sorted(folders) == sorted(p.name for p in (out / "cells").iterdir())
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    assert main(["run", str(path), "--check"]) == 0
    printed = capsys.readouterr().out
    assert "cell folder" in printed and all(f in printed for f in folders)


def test_an_unknown_plugin_option_suggests_the_closest_one(fakes):
    bad = copy.deepcopy(SMALL)
    bad["generators"][0]["config"] = {"stepz": 2}
    with pytest.raises(ConfigError) as err:
        run_matrix(bad, check=True)
    assert "generators[0].config.stepz: unknown option — did you mean 'steps'?" in str(err.value)
    bad["generators"][0]["config"] = {"zzzzzz": 2}  # nothing close: no suggestion
    with pytest.raises(ConfigError) as err:
        run_matrix(bad, check=True)
    assert str(err.value).endswith("generators[0].config.zzzzzz: unknown option")


def test_a_piped_ppds_run_ends_on_the_complete_markdown_board(fakes, tmp_path, capsys):
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out  # captured: not a terminal, so no width to fit
    assert "| dataset | generator | ε |" in printed and "fake-gap" in printed and "…" not in printed
