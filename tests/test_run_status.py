"""`ppds status DIR` reads a run folder, runs nothing: each cell's state by the same rules the
run uses to skip finished work, failures by their first line, who writes it now, an ETA."""

from __future__ import annotations

import copy
import json

import pytest
import yaml
from matrix_fakes import MATRIX, install

from ppds_core.cli import main
from ppds_core.matrix import run_matrix
from ppds_core.matrix._lock import RunLock
from ppds_core.matrix._status import run_status

SMALL = copy.deepcopy(MATRIX) | {
    "generators": [{"name": "fake-gen", "epsilons": [1, 10], "config": {"steps": 2}}],
    "metrics": [{"name": "fake-gap"}, {"name": "boom"}],
    "attacks": [],
}


@pytest.fixture
def fakes(monkeypatch, tmp_path):
    return install(monkeypatch, tmp_path)


def test_status_of_a_finished_folder_lists_its_cells_failures_and_no_time_left(fakes, tmp_path, capsys):
    out = tmp_path / "out"
    run_matrix(copy.deepcopy(SMALL), out, quiet=True)
    st = run_status(out)
    assert [c["generator"] for c in st["cells"]] == ["fake-gen", "fake-gen", "real-data"]
    assert sorted(c["cell"] for c in st["cells"]) == sorted(p.name for p in (out / "cells").iterdir())
    assert st["running"] == [] and st["smoke"] is False
    # boom fails in every cell: failed rows are retried, so the cells are not done
    assert st["with_failures"] == 3 and all(c["failed"][0]["name"] == "boom" for c in st["cells"])
    assert all("\n" not in c["failed"][0]["error"] and c["failed"][0]["error"] for c in st["cells"])
    assert all(c["state"] == "fitted; 1 of 2 measurements would run" or
               c["state"] == "1 of 2 measurements would run" for c in st["cells"])
    assert st["to_run"] == 3 and st["eta_seconds"] >= 0 and st["untimed_units"] == 0

    assert main(["status", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["with_failures"] == 3
    assert main(["status", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "3 cells, 0 done, 3 to run, 3 with failures" in printed and "no run is writing" in printed


def test_a_refit_cell_counts_its_fit_and_the_lock_holder_is_named(fakes, tmp_path):
    out = tmp_path / "out"
    ok = copy.deepcopy(SMALL) | {"metrics": [{"name": "fake-gap"}]}
    run_matrix(copy.deepcopy(ok), out, quiet=True)
    st = run_status(out)
    assert st["done"] == 3 and st["to_run"] == 0 and st["eta_seconds"] == 0
    victim = st["cells"][0]["cell"]
    (out / "cells" / victim / "fit.json").unlink()  # as if its fit had never finished
    st = run_status(out)
    cell = next(c for c in st["cells"] if c["cell"] == victim)
    assert cell["state"] == "would run" and cell["units_left"] == 2  # the fit and its metric
    assert st["to_run"] == 1 and st["eta_seconds"] > 0 and st["untimed_units"] == 0
    with RunLock(out).acquire():
        assert "pid" in run_status(out)["running"][0]


def test_status_of_a_folder_that_is_not_a_run_is_one_line_exit_2(fakes, tmp_path, capsys):
    assert main(["status", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no provenance.json" in err and len(err.strip().splitlines()) == 1
    assert main(["status", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_status_reads_a_folder_run_from_a_yaml_file(fakes, tmp_path):
    path, out = tmp_path / "m.yaml", tmp_path / "out"
    path.write_text(yaml.safe_dump(SMALL | {"metrics": [{"name": "fake-gap"}]}))
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    assert run_status(out)["done"] == 3
