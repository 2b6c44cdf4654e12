"""Bad input at the edge: one line, exit 2, no traceback — and faults that keep their identity."""

from __future__ import annotations

import copy
import errno
import json

import pytest
from matrix_fakes import MATRIX, install

from ppds_core import PrivacyBudget
from ppds_core.cli import main
from ppds_core.errors import BudgetError
from ppds_core.matrix import read_results, run_matrix
from ppds_core.privacy.engine import DPSGDPlan, plan_dp_sgd

GOOD = "datasets: [{name: digits}]\ngenerators: [{name: dp-gan, epsilons: [1]}]\n"


def _one_line_exit_2(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("text,match", [
    ("datasets: [{name: digits}]\ngenerators: [{name: dp-gan, epsilons: [true]}]\n", "YAML boolean"),
    ("datasets: [{name: digits}]\ngenerators: [{name: dp-gan, epsilons: [1]}]\n"
     "metrics: [{name: ssim, epsilons: [true]}]\n", "metrics[0].epsilons: Value error, [0] true is a YAML boolean"),
    (GOOD + "seeds: [0, 0]\n", "seed 0 is listed twice"),
    (GOOD + "seeds: [99999999999]\n", "out of range"),
    (GOOD + "seeds: [-1]\n", "out of range"),
    (GOOD + "accountant: rpd\n", "did you mean 'rdp'"),
    (GOOD + "accountant: gdp\n", "under-report"),
    (GOOD + "generators: [{name: dp-gan, epsilons: [10]}]\n", "appears twice"),
    ("base: &b [1, 2]\n" + GOOD + "x: *b\n", "aliases"),
    (GOOD + "trainer: {max_epoch: 3}\n", "did you mean 'max_epochs'"),
    ("datasets: [{name: digits}]\ngenerators: [{name: dp-gan, epsilons: [1], config: {lr: .inf}}]\n",
     "lr: must be a finite number"),
])
def test_a_bad_matrix_is_refused_in_one_line(tmp_path, capsys, text, match):
    cfg = tmp_path / "m.yaml"
    cfg.write_text(text)
    assert match in _one_line_exit_2(capsys, ["run", str(cfg), "--check"])


def test_a_billion_laughs_config_is_refused_at_once(tmp_path, capsys):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]"
              for i in range(8)]
    cfg = tmp_path / "laughs.yaml"
    cfg.write_text("\n".join(lines) + "\n")
    assert "aliases" in _one_line_exit_2(capsys, ["run", str(cfg), "--check"])


def test_binary_and_oversized_configs_are_refused(tmp_path, capsys):
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe" + bytes(range(256)))
    assert "not UTF-8" in _one_line_exit_2(capsys, ["run", str(binary), "--check"])
    big = tmp_path / "big.yaml"
    big.write_text(GOOD + "#" * (1 << 20) + "\n")
    assert "too large" in _one_line_exit_2(capsys, ["run", str(big), "--check"])


@pytest.mark.parametrize("shard", ["1/2/3", "+1/2", " 1/2", "١/٢", "0/2", "3/2", "a/b"])
def test_shard_is_parsed_strictly(capsys, shard):
    assert "--shard" in _one_line_exit_2(capsys, ["run", "examples/quickstart.yaml", "--check",
                                                  "--shard", shard])


def test_a_path_with_rich_markup_is_printed_as_is(tmp_path, capsys):
    folder = tmp_path / "odd[/]name"  # a folder 'odd[' holding 'name]': the path reads as markup
    folder.mkdir(parents=True)
    cfg = folder / "m.yaml"
    cfg.write_text(GOOD)
    assert main(["run", str(cfg), "--check", "--quiet"]) == 0
    assert main(["run", str(cfg), "--check"]) == 0
    assert "odd[/]name" in capsys.readouterr().out


def test_delta_must_be_below_one_over_n():
    with pytest.raises(BudgetError, match=r"not below 1/N = 1/100 .* use delta < 0.01"):
        plan_dp_sgd(DPSGDPlan(budget=PrivacyBudget(epsilon=1.0, delta=0.02), batch_size=10, steps=2),
                    100, "rdp")


@pytest.mark.parametrize("delta", [0.5, 0.1])  # tiny-set: 80 images, its private split fewer
@pytest.mark.parametrize("check", [True, False])
def test_a_matrix_delta_not_below_one_over_n_is_refused_before_any_cell(
        monkeypatch, tmp_path, capsys, delta, check):
    install(monkeypatch, tmp_path)
    cfg = tmp_path / "m.json"
    cfg.write_text(json.dumps(dict(copy.deepcopy(MATRIX), delta=delta)))
    argv = ["run", str(cfg)] + (["--check"] if check else ["--out", str(tmp_path / "out"), "--quiet"])
    err = _one_line_exit_2(capsys, argv)
    assert f"delta: delta={delta:g} is not below 1/N" in err and "(dataset 'tiny-set')" in err
    assert not (tmp_path / "out" / "results.jsonl").exists()  # no cell ran


@pytest.mark.parametrize("argv,match", [
    (["--seed", "99999999999"], "seed"),
    (["--samples", "0"], "samples"),
    (["--trainer", '{"bogus": 1}'], "not an option of Lightning's Trainer"),
    (["--accountant", "gdp"], None),  # argparse choices: exit 2 with its usage line
])
def test_ppds_fit_mistakes_are_one_line(tmp_path, capsys, argv, match):
    base = ["fit", "dp-gan", "--dataset", "digits", "--epsilon", "1", "--out", str(tmp_path / "o"), "--quiet"]
    if match is None:
        with pytest.raises(SystemExit) as exc:
            main(base + argv)
        assert exc.value.code == 2
        return
    assert match in _one_line_exit_2(capsys, base + argv)


def test_ppds_fit_into_a_file_is_one_line(tmp_path, capsys):
    target = tmp_path / "a-file"
    target.write_text("x")
    err = _one_line_exit_2(capsys, ["fit", "dp-gan", "--dataset", "digits", "--epsilon", "1",
                                    "--out", str(target), "--quiet"])
    assert "is a file" in err and target.read_text() == "x"


def test_leaderboard_mistakes_are_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.jsonl").write_text(json.dumps({"cell": "a", "value": 1, "ppds_version": "0.0.1"}) + "\n")
    assert "written by ppds 0.0.1 lacks" in _one_line_exit_2(capsys, ["leaderboard", str(run)])
    row = {k: None for k in ("cell", "dataset", "generator", "delta", "seed", "kind", "name", "value",
                             "higher_is_better", "status", "error", "ppds_version")}
    (run / "results.jsonl").write_text(json.dumps(row | {"epsilon": "ten", "epsilon_spent": 1}) + "\n")
    assert "epsilon is 'ten'" in _one_line_exit_2(capsys, ["leaderboard", str(run)])
    assert "no such run folder" in _one_line_exit_2(capsys, ["leaderboard", str(tmp_path / "missing")])


def test_leaderboard_output_into_a_folder_is_one_line(monkeypatch, tmp_path, capsys):
    install(monkeypatch, tmp_path)
    run_matrix(copy.deepcopy(MATRIX), tmp_path / "out")
    err = _one_line_exit_2(capsys, ["leaderboard", str(tmp_path / "out"), "--format", "md",
                                    "-o", str(tmp_path)])
    assert "is a folder" in err


def test_every_cell_keeps_its_own_dataset_failure(monkeypatch, tmp_path):
    install(monkeypatch, tmp_path)
    from ppds_core.matrix import runner

    def broken(self, cell):
        raise RuntimeError("the disk returned garbage")

    monkeypatch.setattr(runner._Runner, "data", broken)
    summary = run_matrix(copy.deepcopy(MATRIX), tmp_path / "out")
    assert summary.exit_code == 1
    rows = read_results(tmp_path / "out")
    cells = {r["cell"] for r in rows}
    # one failed row per (cell, evaluator): nothing collapses onto a shared key
    assert len(cells) == len(summary.cells) and all(r["status"] == "failed" for r in rows)


def test_a_full_disk_stops_the_run_in_one_line_and_a_rerun_resumes(monkeypatch, tmp_path, capsys):
    install(monkeypatch, tmp_path)
    from ppds_core.matrix import runner

    real = runner._Runner.run_cell
    calls = {"n": 0}

    def run_cell(self, cell):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(self.out / "results.jsonl"))
        return real(self, cell)

    monkeypatch.setattr(runner._Runner, "run_cell", run_cell)
    from ppds_core.errors import RunStorageError

    with pytest.raises(RunStorageError, match="No space left on device.*run the same command again"):
        run_matrix(copy.deepcopy(MATRIX), tmp_path / "out")
    done = read_results(tmp_path / "out")
    monkeypatch.setattr(runner._Runner, "run_cell", real)
    again = run_matrix(copy.deepcopy(MATRIX), tmp_path / "out")
    assert again.exit_code == 0
    rows = read_results(tmp_path / "out")
    keys = [(r["cell"], r["name"]) for r in rows]
    assert len(keys) == len(set(keys)) and len(rows) > len(done)
    assert all(r["status"] in ("ok", "skipped") for r in rows)


def test_a_disk_filling_while_the_board_is_written_stops_in_one_line_and_a_rerun_writes_it(
        monkeypatch, tmp_path):
    install(monkeypatch, tmp_path)
    from ppds_core.errors import RunStorageError
    from ppds_core.report import leaderboard

    real = leaderboard.write_leaderboards

    def full(out):
        raise OSError(errno.ENOSPC, "No space left on device", str(out / "leaderboard.md"))

    monkeypatch.setattr(leaderboard, "write_leaderboards", full)
    with pytest.raises(RunStorageError, match="leaderboard.md.*MiB free.*run the same command again"):
        run_matrix(copy.deepcopy(MATRIX), tmp_path / "out")
    monkeypatch.setattr(leaderboard, "write_leaderboards", real)
    again = run_matrix(copy.deepcopy(MATRIX), tmp_path / "out")
    assert again.exit_code == 0 and (tmp_path / "out" / "leaderboard.md").exists()
    assert again.fits == 0 and again.computed == 0  # every row was kept; only the board was missing


def test_deleting_a_cell_folder_recomputes_its_measurements(monkeypatch, tmp_path):
    import shutil

    install(monkeypatch, tmp_path)
    out = tmp_path / "out"
    run_matrix(copy.deepcopy(MATRIX), out)
    rows = read_results(out)
    cell = next(r["cell"] for r in rows if r["generator"] == "fake-gen" and r["epsilon"] == 1.0)
    before = {r["name"]: r["batch"] for r in rows if r["cell"] == cell}
    shutil.rmtree(out / "cells" / cell)
    summary = run_matrix(copy.deepcopy(MATRIX), out)
    assert summary.fits == 1 and summary.computed == len(set(before.values()))  # one per evaluator
    after = {r["name"]: r["batch"] for r in read_results(out) if r["cell"] == cell}
    assert after.keys() == before.keys() and all(after[k] != before[k] for k in before)


def test_plugin_extras_never_overwrite_a_column(monkeypatch, tmp_path):
    install(monkeypatch, tmp_path)
    from ppds_core import Measurement
    from ppds_core.registry import get_registry

    cls = get_registry().get("fake-acc", "metric")
    monkeypatch.setattr(cls, "evaluate", lambda self, ctx: [Measurement(
        "fake-acc", 0.5, True, {"seconds": -1, "public": "x", "cell": "evil", "extra_cell": 2})])
    run_matrix(copy.deepcopy(MATRIX), tmp_path / "out")
    rows = [r for r in read_results(tmp_path / "out") if r["name"] == "fake-acc" and r["status"] == "ok"]
    assert rows and all(r["seconds"] >= 0 and r["cell"] != "evil" for r in rows)
    assert all(r["extra_seconds"] == -1 and r["extra_cell"] == "evil" and r["extra_extra_cell"] == 2
               for r in rows)


@pytest.mark.parametrize("name", ["../escape", "a/b", "/abs", "", "x" * 200])
def test_a_measurement_name_that_could_leave_the_run_folder_fails_the_measurement(monkeypatch, tmp_path, name):
    install(monkeypatch, tmp_path)
    from ppds_core import Measurement
    from ppds_core.registry import get_registry

    canary = tmp_path / "canary.txt"
    canary.write_text("keep")
    cls = get_registry().get("fake-acc", "metric")
    monkeypatch.setattr(cls, "evaluate", lambda self, ctx: [Measurement(name or " ", 0.5)])
    summary = run_matrix(copy.deepcopy(MATRIX), tmp_path / "out")
    assert summary.exit_code == 1 and canary.read_text() == "keep"
    bad = [f for f in summary.failed if f["name"] == "fake-acc"]
    assert bad and all("not allowed" in f["error"] for f in bad)


NOT_PYDANTIC = '''
from ppds_core import Metric, Measurement, hookimpl

class Loose(Metric):
    name = "loose-config"
    class Config:  # a plain class, not a pydantic model
        pass
    def evaluate(self, ctx):
        return [Measurement("loose-config", 1.0)]

@hookimpl
def register_plugins(register):
    register(Loose)
'''


def test_a_plugin_whose_config_is_not_pydantic_is_listed_as_broken(tmp_path, capsys):
    from ppds_core.testing import make_plugin_distribution, plugin_path

    dist = make_plugin_distribution(tmp_path / "d", "ppds-loose", {"loose_mod": NOT_PYDANTIC},
                                    {"loose": "loose_mod"})
    with plugin_path(dist):
        assert main(["plugins", "list"]) == 0
        assert "broken" in capsys.readouterr().out
        # the entry point is marked broken, with the reason, in one line
        err = _one_line_exit_2(capsys, ["plugins", "show", "loose"])
        assert "broken" in err and "PluginConfig subclass" in err


def test_non_finite_pixels_never_become_samples():
    import torch

    from ppds_core import ImageSet

    with pytest.raises(ValueError, match="NaN or infinite"):
        ImageSet(torch.full((2, 1, 4, 4), float("nan")), torch.zeros(2), ["a"], "nan-samples")


def test_a_board_that_cannot_be_written_makes_the_run_exit_1(monkeypatch, tmp_path):
    install(monkeypatch, tmp_path)
    import ppds_core.report.leaderboard as lb

    def broken(out):
        raise RuntimeError("renderer bug")

    monkeypatch.setattr(lb, "write_leaderboards", broken)
    summary = run_matrix(copy.deepcopy(MATRIX), tmp_path / "out")
    assert summary.exit_code == 1 and any(f["kind"] == "board" for f in summary.failed)
    assert read_results(tmp_path / "out")  # the rows are on disk all the same


def test_a_quoted_tilde_out_means_the_home_folder(monkeypatch, tmp_path):
    import yaml

    install(monkeypatch, tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "m.yaml"
    cfg.write_text(yaml.safe_dump(copy.deepcopy(MATRIX)))
    assert main(["run", str(cfg), "--out", "~/runs/x", "--quiet"]) == 0
    assert (tmp_path / "home" / "runs" / "x" / "results.jsonl").exists()
    assert not (tmp_path / "~").exists()
