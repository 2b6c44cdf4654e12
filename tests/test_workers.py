"""Workers (issue 17): N `ppds worker` processes share one run folder through claims with a lease.

- 3 worker processes on a smoke-sized matrix of 36 units: every unit done exactly once, no
  (cell, name) row twice, every worker busy until the queue is empty;
- a worker killed (-9) mid-fit: its lease expires, another worker resumes the fit from the
  checkpoint, and the ledger and rows equal an uninterrupted run's;
- claims: a stale claim is taken over by exactly one of several workers; status names who runs what.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from matrix_fakes import counts, install, subprocess_env

from ppds_core.cli import main
from ppds_core.matrix import read_results, run_matrix
from ppds_core.matrix._claims import Claims, claim_records
from ppds_core.matrix._launch import prepare_folder
from ppds_core.matrix._status import run_status

CLI = "import sys; from ppds_core.cli import main; sys.exit(main(sys.argv[1:]))"

#: 6 fits + 6 shadow fits (fake-mia names its one shadow ahead) + 8 cells × 3 measurements
BUSY = {
    "name": "workers", "seeds": [0, 1], "delta": 1e-5, "samples": 40,
    "datasets": [{"name": "tiny-set"}],
    "generators": [{"name": "fake-gen", "epsilons": [1, 10, "inf"], "config": {"steps": 2, "sleep_s": 0.25, "hold": True}}],
    "metrics": [{"name": "fake-gap"}, {"name": "fake-acc"}],
    "attacks": [{"name": "fake-mia"}],
}


@pytest.fixture
def fakes(monkeypatch, tmp_path):
    return install(monkeypatch, tmp_path)


def _worker(site, tmp_path, out, wid, *extra, env=None):
    return subprocess.Popen([sys.executable, "-c", CLI, "worker", str(out), "--id", wid, "--quiet", *extra],
                            env=env or subprocess_env(site, tmp_path), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def _records(out: Path) -> dict[str, list[dict]]:
    found = {}
    for p in sorted((out / "workers").glob("*.jsonl")):
        found[p.stem] = [json.loads(line) for line in p.read_text().splitlines()]
    return found


def _wait_for(predicate, what: str, timeout: float = 120.0, procs=()):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        for p in procs:
            assert p.poll() is None, f"a worker exited early: {p.stderr.read().decode()[-2000:]}"
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_three_worker_processes_share_one_folder_each_unit_once_all_busy_to_the_end(fakes, tmp_path):
    out = tmp_path / "out"
    prepare_folder(copy.deepcopy(BUSY), out)
    hold = tmp_path / "hold"  # every fit waits while it exists: the queue opens once all 3 are up
    hold.write_text("")
    env = subprocess_env(fakes, tmp_path) | {"PPDS_FAKE_BLOCK": str(hold)}
    procs = [_worker(fakes, tmp_path, out, f"w{i}", "--lease-s", "10", env=env) for i in range(3)]
    _wait_for(lambda: len(_records(out)) == 3, "three workers", procs=procs)
    t0 = time.time()
    hold.unlink()
    for p in procs:
        assert p.wait(timeout=240) == 0, p.stderr.read().decode()[-3000:]
    wall = time.time() - t0
    records = _records(out)
    assert sorted(records) == ["w0", "w1", "w2"]
    ran = {w: [e for e in ev if e["event"] == "unit"] for w, ev in records.items()}
    every = [e["unit"] for units in ran.values() for e in units]
    kinds = Counter(u.split("-", 1)[0] for u in every)
    # every unit exactly once: 6 fits, 6 shadow fits, 24 measurements (8 cells × 3)
    assert len(every) == len(set(every)) == 36 and kinds == {"fit": 6, "shadow": 6, "eval": 24}
    assert all(e["status"] == "ok" for units in ran.values() for e in units)
    # no (cell, name) row twice, and nothing fitted twice (shadows included: 'fit … 123' is a shadow)
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    per = Counter((r["cell"], r["name"]) for r in lines)
    assert set(per.values()) == {1} and len({r["measurement"] for r in lines}) == 24
    fits = Counter(e for e in counts(tmp_path) if e.startswith("fit "))
    eps = ("1.0", "10.0", "inf")
    assert fits == {**{f"fit {e} {s} 2": 1 for e in eps for s in (0, 1)},
                    **{f"fit {e} 123 2": 2 for e in eps}}  # a shadow (seed 123) per ε cell and seed
    assert {r["status"] for r in read_results(out)} <= {"ok", "skipped"}
    # busy to the end: each worker ran several units and left only once the last unit had ended
    last_end = max(e["end"] for units in ran.values() for e in units)
    for w, events in records.items():
        assert len(ran[w]) >= 4, f"{w} ran only {[e['unit'] for e in ran[w]]}"
        assert events[-1]["event"] == "exit" and events[-1]["at"] >= last_end - 0.01
    print(f"\n3 workers, 36 units in {wall:.1f}s: " + "; ".join(
        f"{w}: {len(u)} units ({Counter(x['kind'] for x in u)}), waited {records[w][-1]['waited_s']}s"
        for w, u in ran.items()))
    st = run_status(out)
    assert st["units"] == {"done": 36, "running": 0, "stale": 0, "failed": 0, "pending": 0}
    assert st["done"] == 8 and (out / "leaderboard.md").exists()  # the last worker wrote the board
    assert not list((out / "claims").glob("*.claim"))


@pytest.mark.slow
def test_a_worker_killed_mid_fit_is_resumed_from_its_checkpoint_by_another(fakes, tmp_path):
    matrix = {"name": "kill", "seeds": [0], "samples": 30, "real_data": False, "checkpoint_every": 1,
              "datasets": [{"name": "tiny-set"}],
              "generators": [{"name": "fake-ckpt-gen", "epsilons": [10],
                              "config": {"steps": 10, "step_s": 0.3, "hold_at": 4}}],
              "metrics": [{"name": "fake-gap"}, {"name": "fake-acc"}]}
    ref = tmp_path / "ref"
    assert run_matrix(copy.deepcopy(matrix), ref).exit_code == 0  # the uninterrupted run
    n_ref = len(counts(tmp_path))
    out = tmp_path / "out"
    prepare_folder(copy.deepcopy(matrix), out)

    def steps(pid=None):
        return [e for e in counts(tmp_path)[n_ref:] if e.startswith("ckpt-step")
                and (pid is None or e.endswith(f"pid {pid}"))]

    hold = tmp_path / "hold"  # the fit waits before its step 4 while this file exists
    hold.write_text("")
    env = subprocess_env(fakes, tmp_path) | {"PPDS_FAKE_BLOCK": str(hold)}
    procs = {w: _worker(fakes, tmp_path, out, w, "--lease-s", "2", env=env) for w in ("a", "b")}
    _wait_for(lambda: all(any(e["event"] == "start" for e in _records(out).get(w, [])) for w in procs)
              and Path(f"{hold}.started").exists(), "both workers, and the fit at step 4",
              procs=procs.values())
    held = claim_records(out)
    assert len(held) == 1  # the other waits: the measurements need the fit
    victim = next(iter(held.values()))["worker"]
    heir = "b" if victim == "a" else "a"
    os.kill(procs[victim].pid, signal.SIGKILL)  # its unit dies with it (PR_SET_PDEATHSIG)
    procs[victim].wait(timeout=30)
    hold.unlink()  # (before the lease expires: the heir does not wait at step 4)
    assert procs[heir].wait(timeout=120) == 0, procs[heir].stderr.read().decode()[-3000:]

    starts = [e for e in counts(tmp_path)[n_ref:] if e.startswith("ckpt-start")]
    assert len(starts) == 2 and starts[0].startswith("ckpt-start 0 ")
    resumed_at = int(starts[1].split()[1])
    heir_pid = starts[1].split()[-1]
    assert resumed_at == 4  # the heir's fit started from the victim's checkpoint, not from zero
    assert [int(e.split()[1]) for e in steps(heir_pid)] == list(range(resumed_at, 10))
    assert set(range(resumed_at)) <= {int(e.split()[1]) for e in steps() if not e.endswith(f"pid {heir_pid}")}
    heir_units = [e for e in _records(out)[heir] if e["event"] == "unit"]
    assert [u["kind"] for u in heir_units] == ["fit", "eval", "eval"]
    assert all(u["status"] == "ok" for u in heir_units)
    assert {e["event"] for e in _records(out)[victim]} == {"start"}  # it never finished a unit

    cell = next((out / "cells").iterdir()).name
    assert (ref / "cells" / cell).is_dir()  # the same cell, so its ledger and rows compare
    assert json.loads((out / "cells" / cell / "ledger.json").read_text()) == \
        json.loads((ref / "cells" / cell / "ledger.json").read_text())
    key = sorted((r["cell"], r["name"], r["status"], r["value"]) for r in read_results(out))
    assert key == sorted((r["cell"], r["name"], r["status"], r["value"]) for r in read_results(ref))
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert len(lines) == len(read_results(ref))  # no row twice
    assert not (out / "cells" / cell / "checkpoint").exists()  # a finished fit drops its checkpoint
    assert not list((out / "claims").glob("*.claim"))


def test_a_stale_claim_is_taken_over_by_exactly_one_worker_and_a_live_one_by_none(tmp_path):
    owner = Claims(tmp_path, "dead", lease_s=1.0)
    claim = owner.try_claim("fit-x", "fit x")
    assert claim is not None and Claims(tmp_path, "b", 1.0).try_claim("fit-x") is None  # live
    owner._stop(claim)  # the owner dies: no more heartbeats
    old = time.time() - 5
    os.utime(claim.path, (old, old))
    rivals = [Claims(tmp_path, f"r{i}", lease_s=1.0) for i in range(4)]
    won = [c for c in (r.try_claim("fit-x") for r in rivals) if c is not None]
    assert len(won) == 1 and json.loads(won[0].path.read_text())["worker"] == won[0].claims.worker
    time.sleep(0.6)  # the winner's heartbeat keeps it fresh
    assert all(r.try_claim("fit-x") is None for r in rivals)
    claim.release()  # the dead owner's late release must not delete the winner's claim
    assert won[0].path.exists()
    won[0].release()
    assert not won[0].path.exists() and not list(tmp_path.glob("claims/*stale*"))


def test_status_names_the_worker_running_a_unit_and_the_failed_ones(fakes, tmp_path, capsys):
    out = tmp_path / "out"
    small = copy.deepcopy(BUSY) | {"seeds": [0], "attacks": []}
    prepare_folder(small, out)
    st = run_status(out)
    fit = next(u for u in st["cells"][0]["units"] if u["kind"] == "fit")
    assert st["units"]["pending"] == len([u for c in st["cells"] for u in c["units"]])
    claims = Claims(out, "gpu-node-7", lease_s=30)
    claim = claims.try_claim(fit["unit"], fit["label"])
    claims.mark_failed(st["cells"][1]["units"][0]["unit"], "RuntimeError: out of memory\nmore")
    try:
        st = run_status(out)
        running = next(u for u in st["cells"][0]["units"] if u["kind"] == "fit")
        assert running["state"] == "running" and running["worker"] == "gpu-node-7" and running["since"]
        failed = st["cells"][1]["units"][0]
        assert failed["state"] == "failed" and failed["error"] == "RuntimeError: out of memory"
        assert st["units"]["running"] == 1 and st["units"]["failed"] == 1 and st["workers"] == ["gpu-node-7"]
        assert main(["status", str(out)]) == 0
        printed = capsys.readouterr().out
        assert "running: " in printed and "worker gpu-node-7" in printed and "1 running" in printed
    finally:
        claim.release()
    # a sequential run holds the folder alone: it retries failed units and drops dead claims
    dead = Claims(out, "dead", lease_s=30).try_claim(fit["unit"], fit["label"])
    dead.claims._stop(dead)
    assert run_matrix(copy.deepcopy(small), out).exit_code == 0
    assert not list((out / "claims").iterdir())
    assert run_status(out)["units"]["done"] == len([u for c in st["cells"] for u in c["units"]])


def test_lira_names_ahead_exactly_the_shadow_fits_it_asks_for(tmp_path):
    from ppds_plugins.attacks.lira import LiRA
    from test_attacks_lira import make_ctx

    from ppds_core.matrix._fitting import shadow_key

    ctx = make_ctx(tmp_path, {"noise": 0.02}, n_syn=100)
    ctx.seed = 2
    asked, fit_fresh = [], ctx.fit_fresh

    def recording(private, seed):
        asked.append(shadow_key(private, seed))
        return fit_fresh(private, seed)

    ctx.fit_fresh = recording
    lira = LiRA(shadow_models=4, population=40, synthetic_samples=100)
    lira.evaluate(ctx)
    planned = [shadow_key(private, seed) for private, seed in lira.shadow_plan(ctx.splits, ctx.seed)]
    assert planned == asked and len(set(asked)) == 4  # so a worker's shadow units are the cache it reads


def test_failed_units_are_recorded_once_and_the_worker_exits_1(fakes, tmp_path, capsys):
    matrix = {"name": "fails", "seeds": [0], "samples": 30,
              "datasets": [{"name": "tiny-set"}],
              "generators": [{"name": "fake-gen", "epsilons": [10], "config": {"fail": True}},
                             {"name": "fake-gen", "epsilons": [1], "config": {"steps": 2}}],
              "metrics": [{"name": "fake-gap"}, {"name": "boom"}]}
    path, out = tmp_path / "m.yaml", tmp_path / "out"
    path.write_text(json.dumps(matrix))
    assert main(["worker", str(tmp_path / "nowhere")]) == 2  # no folder: one line
    assert main(["run", str(path), "--out", str(out), "--worker", "--lease-s", "5", "--quiet"]) == 1
    rows = read_results(out)
    failed = {(r["generator"], r["epsilon"], r["name"]) for r in rows if r["status"] == "failed"}
    # the failed fit fails its cell's measurements (never measured); boom fails everywhere
    assert ("fake-gen", 10.0, "fake-gap") in failed and ("fake-gen", 10.0, "boom") in failed
    assert ("fake-gen", 1.0, "boom") in failed and ("real-data", float("inf"), "boom") in failed
    assert len(rows) == len({(r["cell"], r["name"]) for r in rows})
    events = [e for e in counts(tmp_path) if e.startswith("fit ") or e == "eval boom"]
    assert Counter(events) == {"fit 10.0 0 3": 1, "fit 1.0 0 2": 1, "eval boom": 2}  # nothing retried
    st = run_status(out)
    # the fit, the 2 measurements it failed, boom on the other 2 cells
    assert st["units"]["failed"] == 5 and st["units"]["pending"] == 0
    # a second worker finds nothing to do (failures are not retried by workers) ...
    n = len(counts(tmp_path))
    assert main(["worker", str(out), "--quiet"]) == 0
    assert len(counts(tmp_path)) == n  # no fit, no load, no evaluation
    # ... until asked to; a sequential run would retry them too
    assert main(["worker", str(out), "--retry-failed", "--quiet"]) == 1
    assert Counter(e for e in counts(tmp_path) if e == "eval boom") == {"eval boom": 4}


def test_sigterm_to_a_worker_lets_its_fit_checkpoint_and_frees_the_unit_at_once(fakes, tmp_path):
    matrix = {"name": "term", "seeds": [0], "samples": 30, "real_data": False, "checkpoint_every": 100,
              "datasets": [{"name": "tiny-set"}],
              "generators": [{"name": "fake-ckpt-gen", "epsilons": [10],
                              "config": {"steps": 10, "step_s": 0.3, "on_term": True}}],
              "metrics": [{"name": "fake-gap"}]}
    out = tmp_path / "out"
    prepare_folder(copy.deepcopy(matrix), out)
    worker = _worker(fakes, tmp_path, out, "t", "--lease-s", "60")
    _wait_for(lambda: sum(e.startswith("ckpt-step") for e in counts(tmp_path)) >= 3, "three steps",
              procs=[worker])
    worker.send_signal(signal.SIGTERM)  # a scheduler stopping the job
    assert worker.wait(timeout=60) == 143
    # the unit got SIGTERM first: the fit wrote its checkpoint (none was due before step 100)
    stopped = [e for e in counts(tmp_path) if e.startswith("ckpt-stopped")]
    assert len(stopped) == 1 and int(stopped[0].split()[1]) >= 3
    assert not list((out / "claims").glob("*.claim"))  # released: no need to wait 60 s for the lease
    assert main(["worker", str(out), "--quiet"]) == 0
    starts = [e for e in counts(tmp_path) if e.startswith("ckpt-start")]
    assert int(starts[-1].split()[1]) == int(stopped[0].split()[1])  # resumed where it stopped
    assert [r["status"] for r in read_results(out)] == ["ok"]
