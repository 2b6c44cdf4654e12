"""The runner: caching, failure isolation, sharding, smoke separation, the results schema."""

from __future__ import annotations

import copy
import json
import math

import pytest
import yaml
from matrix_fakes import MATRIX, counts, install

from ppds_core.cli import main
from ppds_core.matrix import REQUIRED_KEYS, read_results, run_matrix
from ppds_core.privacy import DPSGDSpend, epsilon_of
from ppds_core.privacy.ledger import Ledger


@pytest.fixture
def fakes(monkeypatch, tmp_path):
    return install(monkeypatch, tmp_path)


def _events(tmp_path, prefix):
    return [e for e in counts(tmp_path) if e.startswith(prefix)]


def _key(rows):
    return sorted((r["cell"], r["name"], r["status"], r["value"]) for r in rows)


def test_first_run_rerun_is_a_no_op_and_one_changed_metric_recomputes_alone(fakes, tmp_path):
    out = tmp_path / "out"
    first = run_matrix(copy.deepcopy(MATRIX), out)
    assert first.exit_code == 0 and first.failed == []
    # 3 ε cells fitted once each; fake-mia trains one shadow model per cell (seed 123)
    assert sorted(_events(tmp_path, "fit")) == sorted(
        ["fit 1.0 0 2", "fit 10.0 0 2", "fit inf 0 2", "fit 1.0 123 2", "fit 10.0 123 2", "fit inf 123 2"])
    rows = read_results(out)
    names = {(r["generator"], r["name"]) for r in rows}
    assert ("real-data", "fake-gap") in names and ("real-data", "fake-mia-auc") not in names
    # attacks run on the real-data row too; one that asks it for a shadow fit is skipped, saying why
    ref_mia = next(r for r in rows if r["generator"] == "real-data" and r["name"] == "fake-mia")
    assert ref_mia["status"] == "skipped" and "no generator to retrain" in ref_mia["error"]
    for r in rows:
        assert set(REQUIRED_KEYS) <= r.keys()
    for cell in {r["cell"] for r in rows if r["generator"] == "fake-gen"}:
        d = out / "cells" / cell
        assert (d / "model" / "fake.pt").exists() and (d / "samples.npz").exists()
        assert (d / "samples.png").exists()
        led = Ledger.read(d / "ledger.json")
        assert led.epsilon_spent <= led.target_epsilon or math.isinf(led.target_epsilon)
    n_events = len(counts(tmp_path))

    again = run_matrix(copy.deepcopy(MATRIX), out)
    assert again.fits == 0 and again.loaded == 0 and again.computed == 0
    assert again.cached == first.computed
    assert len(counts(tmp_path)) == n_events  # no fit, no load, no evaluation
    assert _key(read_results(out)) == _key(rows)

    changed = copy.deepcopy(MATRIX)
    changed["metrics"][0]["config"] = {"scale": 2.0}  # fake-gap only
    third = run_matrix(changed, out)
    new = counts(tmp_path)[n_events:]
    assert sorted(new) == sorted(["load"] * 3 + ["eval fake-gap 0"] * 4)  # 3 cells + real-data
    assert third.fits == 0 and third.loaded == 3 and third.computed == 4
    gaps = {r["cell"]: r["value"] for r in read_results(out) if r["name"] == "fake-gap"}
    old = {r["cell"]: r["value"] for r in rows if r["name"] == "fake-gap"}
    assert all(gaps[c] == pytest.approx(2 * old[c]) for c in old)
    # the board shows the current measurement once per cell, not an average of old and new
    board = json.loads((out / "leaderboard.json").read_text())
    by_eps = {r["epsilon"]: r["values"]["fake-gap"] for r in board["rows"] if r["generator"] == "fake-gen"}
    assert {e: v["n"] for e, v in by_eps.items()} == {1.0: 1, 10.0: 1, "inf": 1}
    assert by_eps[1.0]["mean"] == pytest.approx(2 * old[next(r["cell"] for r in rows if r["epsilon"] == 1.0)])


def test_results_schema_capabilities_and_references(fakes, tmp_path):
    out = tmp_path / "out"
    run_matrix(copy.deepcopy(MATRIX) | {"trainer": {"accelerator": "cpu", "devices": 1}}, out)
    assert 'trainer {"accelerator": "cpu", "devices": 1}' in counts(tmp_path)  # passed through to fit
    raw = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    inf_rows = [r for r in raw if r["generator"] == "fake-gen" and r["epsilon"] == "inf"]
    assert inf_rows and all(r["epsilon_spent"] == "inf" and r["reference"] for r in inf_rows)
    rows = read_results(out)
    by = {(r["generator"], r["epsilon"], r["name"]): r for r in rows}
    # fake-rero needs DP-SGD: measured at ε=1 and 10, skipped with a reason at ε=∞ and for real data
    assert by[("fake-gen", 1.0, "fake-rero")]["status"] == "ok"
    skipped = by[("fake-gen", math.inf, "fake-rero")]
    assert skipped["status"] == "skipped" and "non-private" in skipped["error"] and skipped["value"] is None
    assert by[("real-data", math.inf, "fake-rero")]["status"] == "skipped"
    acc = by[("fake-gen", 10.0, "fake-acc")]
    assert acc["value"] == pytest.approx(10 / 11) and acc["higher_is_better"] is True
    assert acc["ci_low"] == pytest.approx(10 / 11 - 0.1) and acc["seconds"] >= 0
    assert by[("fake-gen", 10.0, "fake-acc-top2")]["status"] == "ok"
    # fake-acc flags no headline: its first row is, so a compact leaderboard shows one number of it
    assert acc["headline"] is True and by[("fake-gen", 10.0, "fake-acc-top2")]["headline"] is False
    assert skipped["headline"] is True
    assert by[("fake-gen", 1.0, "fake-gap")]["higher_is_better"] is False
    # the core's ε: recomputed from the fake's spend (σ = 5, q = 0.1, T = 2)
    spend = DPSGDSpend(noise_multiplier=5.0, sample_rate=0.1, steps=2, max_grad_norm=1.0)
    assert by[("fake-gen", 1.0, "fake-gap")]["epsilon_spent"] == pytest.approx(epsilon_of([spend], 1e-5))
    mia = by[("fake-gen", 1.0, "fake-mia-auc")]
    assert mia["kind"] == "attack" and (out / mia["scores"]).exists()
    assert (out / "plots").is_dir() and list((out / "plots").glob("roc_*.png"))
    assert list((out / "plots").glob("privacy-utility_*.png"))
    assert list((out / "plots").glob("samples_*.png"))
    # the real data's grid beside the generators', and an SVG beside every curve plot
    assert list((out / "plots").glob("samples_*_real-data_seed0.png"))
    assert all(p.with_suffix(".svg").exists() for p in (out / "plots").glob("roc_*.png"))
    for fmt in ("md", "html", "csv", "json"):
        assert (out / f"leaderboard.{fmt}").exists()
    assert (out / "leaderboard-full.md").exists() and (out / "leaderboard-full.html").exists()
    assert "fake-gen" in (out / "run.log").read_text()


def test_a_failing_metric_and_a_failing_fit_are_recorded_and_the_rest_completes(fakes, tmp_path, capsys):
    m = copy.deepcopy(MATRIX)
    m["metrics"] = [{"name": "boom"}, {"name": "fake-gap"}, {"name": "picky"}]
    m["attacks"] = []
    m["generators"].append({"name": "fake-gen", "epsilons": [5], "config": {"fail": True}})
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(m))
    code = main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert "kaboom" in err and "fake generator exploded" in err
    rows = read_results(tmp_path / "out")
    boom = [r for r in rows if r["name"] == "boom"]
    assert boom and all(r["status"] == "failed" for r in boom)
    assert all("kaboom" in r["error"] for r in boom if r["epsilon"] != 5)
    gap = {(r["generator"], r["epsilon"]): r for r in rows if r["name"] == "fake-gap"}
    assert all(gap[("fake-gen", e)]["status"] == "ok" for e in (1.0, 10.0, math.inf))
    assert gap[("fake-gen", 5.0)]["status"] == "failed" and "generator fit failed" in gap[("fake-gen", 5.0)]["error"]
    picky = [r for r in rows if r["name"] == "picky" and r["epsilon"] == 1.0]
    assert picky[0]["status"] == "skipped" and "weights not found" in picky[0]["error"]

    def n(event):
        return counts(tmp_path).count(event)

    assert (n("eval picky"), n("eval boom")) == (4, 4)  # 3 fitted cells + real-data; not the failed fit
    # a re-run retries what failed (the fit and boom) but leaves skipped rows alone…
    again = run_matrix(path, tmp_path / "out")
    assert again.exit_code == 1 and again.fits == 0 and again.loaded == 3
    assert len([e for e in counts(tmp_path) if e.startswith("fit 5.0")]) == 2  # the failing fit, retried
    assert (n("eval picky"), n("eval boom")) == (4, 8)
    # …unless asked to retry skipped ones too (after installing missing weights)
    run_matrix(path, tmp_path / "out", retry_skipped=True)
    assert (n("eval picky"), n("eval boom")) == (8, 12)
    assert len([r for r in read_results(tmp_path / "out") if r["name"] == "picky"]) == 5
    log = (tmp_path / "out" / "run.log").read_text()
    assert "Traceback" in log and "RuntimeError: kaboom" in log
    board = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "failed" in board and "kaboom" in board
    # two configs of one generator are two leaderboard rows, labelled by their recipe hash
    gens = {r["generator"] for r in json.loads((tmp_path / "out" / "leaderboard.json").read_text())["rows"]}
    assert len({g for g in gens if g.startswith("fake-gen [")}) == 2 and "real-data" in gens


def test_two_shards_fill_one_folder_like_one_unsharded_run(fakes, tmp_path):
    m = copy.deepcopy(MATRIX)
    m["seeds"] = [0, 1]
    m["attacks"] = []
    whole = run_matrix(copy.deepcopy(m), tmp_path / "whole")
    a = run_matrix(copy.deepcopy(m), tmp_path / "sharded", shard="1/2")
    b = run_matrix(copy.deepcopy(m), tmp_path / "sharded", shard="2/2")
    keys_a = {c.key for c in a.cells}
    keys_b = {c.key for c in b.cells}
    assert keys_a.isdisjoint(keys_b) and keys_a | keys_b == {c.key for c in whole.cells}
    assert len(whole.cells) == 8  # 3 ε × 2 seeds + 2 real-data references
    assert _key(read_results(tmp_path / "sharded")) == _key(read_results(tmp_path / "whole"))
    lines = (tmp_path / "sharded" / "results.jsonl").read_text().splitlines()
    assert len(lines) == len(read_results(tmp_path / "whole"))  # no duplicates


def test_smoke_rows_are_marked_and_get_their_own_leaderboard(fakes, tmp_path):
    out = tmp_path / "out"
    m = copy.deepcopy(MATRIX)
    m["attacks"] = []
    run_matrix(copy.deepcopy(m), out, smoke=True)
    assert "fit 1.0 0 1" in counts(tmp_path)  # smoke_config cut steps 2 → 1
    rows = read_results(out)
    assert rows and all(r["smoke"] is True for r in rows)
    assert "SMOKE RUN" in (out / "leaderboard-smoke.md").read_text()
    assert "SMOKE RUN" in (out / "leaderboard-smoke.html").read_text()
    assert not list(out.glob("leaderboard.*")) and not list(out.glob("leaderboard-full.*"))
    run_matrix(copy.deepcopy(m), out)  # the real run into the same folder: new cells, own board
    rows = read_results(out)
    assert {r["smoke"] for r in rows} == {True, False}
    real = (out / "leaderboard.md").read_text()
    assert "SMOKE" not in real
    assert json.loads((out / "leaderboard.json").read_text())["smoke"] is False
    assert json.loads((out / "leaderboard-smoke.json").read_text())["smoke"] is True


def test_an_empty_shard_is_valid_and_does_nothing(fakes, tmp_path):
    from ppds_core.matrix import expand_cells, in_shard, load_matrix

    keys = expand_cells(load_matrix(copy.deepcopy(MATRIX)))
    empty = next(i for i in range(1, 51) if not any(in_shard(c, (i, 50)) for c in keys))
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(MATRIX))
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--shard", f"{empty}/50", "--quiet"]) == 0
    assert counts(tmp_path) == [] and not (tmp_path / "out" / "results.jsonl").exists()


def test_an_attack_filtered_to_some_cells_runs_there_only(fakes, tmp_path):
    out = tmp_path / "out"
    m = copy.deepcopy(MATRIX)
    m["attacks"] = [{"name": "fake-mia", "generators": ["fake-gen", "real-data"], "epsilons": [10, "inf"]}]
    assert run_matrix(m, out).exit_code == 0
    mia = {(r["generator"], r["epsilon"]) for r in read_results(out) if r["kind"] == "attack"}
    assert mia == {("fake-gen", 10.0), ("fake-gen", math.inf), ("real-data", math.inf)}
    assert sorted(_events(tmp_path, "fit")) == sorted(  # no shadow at ε = 1
        ["fit 1.0 0 2", "fit 10.0 0 2", "fit inf 0 2", "fit 10.0 123 2", "fit inf 123 2"])
    board = json.loads((out / "leaderboard.json").read_text())
    eps1 = next(r for r in board["rows"] if r["epsilon"] == 1.0)
    assert eps1["values"]["fake-mia-auc"]["status"] == "missing"  # no row: "—", not "skipped"
    assert not any("ε=1 /" in n and "fake-mia" in n for n in board["notes"])
    m["attacks"][0]["generators"] = ["fake-gen"]  # real-data not listed: no reference row for it
    assert run_matrix(m, tmp_path / "out2").exit_code == 0
    assert not any(r["generator"] == "real-data" and r["kind"] == "attack"
                   for r in read_results(tmp_path / "out2"))


def test_shadow_fits_are_cached_beside_the_cell_and_loaded_on_a_rerun(fakes, tmp_path):
    out = tmp_path / "out"
    m = copy.deepcopy(MATRIX)
    m["metrics"] = []
    m["attacks"] = [{"name": "fake-mia", "generators": ["fake-gen"], "epsilons": [10]}]
    first = run_matrix(copy.deepcopy(m), out)
    assert first.shadow_fits == 1 and _events(tmp_path, "fit 10.0 123") == ["fit 10.0 123 2"]
    cell = next(r["cell"] for r in read_results(out) if r["name"] == "fake-mia-auc")
    shadows = list((out / "cells" / cell / "shadows").glob("*/fit.json"))
    assert len(shadows) == 1 and (shadows[0].parent / "ledger.json").exists()
    (out / "results.jsonl").unlink()  # as if the attack was interrupted after its shadow fit
    again = run_matrix(copy.deepcopy(m), out)
    assert again.shadow_fits == 0 and again.shadows_loaded == 1
    assert _events(tmp_path, "fit 10.0 123") == ["fit 10.0 123 2"]  # not refitted
    auc = [r["value"] for r in read_results(out) if r["name"] == "fake-mia-auc"]
    assert len(auc) == 1 and auc[0] is not None
