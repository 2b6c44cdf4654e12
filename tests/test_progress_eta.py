"""Progress with an estimate of the time left, from the durations a run has recorded."""

from __future__ import annotations

import copy
import json

import pytest
from matrix_fakes import MATRIX, install

from ppds_core.matrix import run_matrix
from ppds_core.matrix._console import Durations, Progress


def test_the_time_left_is_the_sum_of_the_expected_seconds_of_the_units_ahead():
    p = Progress(quiet=True, total=2)
    fit_a, acc, mia = ("fit", "gen", True), ("eval", "acc"), ("eval", "mia")
    p.plan([(fit_a, [acc, mia]), (fit_a, [acc, mia])])
    assert p.left() == (0.0, 6)  # nothing timed yet: six units of unknown length
    p.unit_done(fit_a, 30.0)
    assert p.left() == (30.0, 4)  # the second cell's fit is now expected to take 30 s
    p.unit_done(acc, 2.0)
    p.unit_done(mia, 10.0)
    assert p.left() == (42.0, 0)
    p.cell_done()
    p.unit_done(fit_a, 50.0)  # expect = the median of what such units took: (30, 50) → 50
    assert p.left() == (12.0, 0)
    p.keep_evaluators([acc])  # mia cached in this cell: it will not run
    assert p.left() == (2.0, 0)


def test_a_unit_that_did_not_run_teaches_no_duration():
    d = Durations()
    d.record(("eval", "x"), None)
    d.record(("eval", "x"), -1)
    assert d.expect(("eval", "x")) is None
    d.record(("eval", "x"), 3)
    assert d.expect(("eval", "x")) == 3.0


def test_a_run_folder_seeds_the_estimate_of_the_next_run_in_it(monkeypatch, tmp_path):
    install(monkeypatch, tmp_path)
    out = tmp_path / "out"
    assert run_matrix(copy.deepcopy(MATRIX), out).exit_code == 0
    d = Durations()
    d.seed_from(out)
    fits = {json.loads(f.read_text())["generator"] for f in out.glob("cells/*/fit.json")}
    assert fits and all(d.expect(("fit", g, True)) is not None for g in fits)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    evaluators = {r["evaluator"] for r in rows if r["status"] == "ok"}
    assert evaluators and all(d.expect(("eval", e)) is not None for e in evaluators)


def test_the_cells_bar_says_how_long_is_left_and_the_unit_line_what_runs(monkeypatch, tmp_path, capsys):
    pytest.importorskip("rich")
    install(monkeypatch, tmp_path)
    out = tmp_path / "out"
    run_matrix(copy.deepcopy(MATRIX), out)  # first run: durations recorded
    for f in out.glob("cells/*"):  # drop the cached cells' evaluations, keep their fits' files
        (f / "eval").exists()
    (out / "results.jsonl").unlink()
    seen: list[str] = []
    real_describe = Progress._describe

    def spy(self):
        real_describe(self)
        seconds, unknown = self.left()
        seen.append(f"{seconds:.3f}/{unknown}")

    monkeypatch.setattr(Progress, "_describe", spy)
    run_matrix(copy.deepcopy(MATRIX), out, quiet=False)
    # the estimate starts from the first run's fit.json durations and falls to 0 at the end
    assert seen and seen[-1] == "0.000/0"
    assert any(s != seen[-1] for s in seen[:-1])
