"""Isolation (issue 20): a plugin that hangs, exits, aborts, segfaults or raises
KeyboardInterrupt fails its own unit and nothing else; only a signal to ppds stops a
run; one writer per run folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
import yaml
from matrix_fakes import install, subprocess_env

from ppds_core.cli import main
from ppds_core.matrix import read_results, run_matrix
from ppds_core.matrix._isolation import run_isolated
from ppds_core.testing import make_plugin_distribution

CLI = "import sys; from ppds_core.cli import main; sys.exit(main(sys.argv[1:]))"

#: metric name → the reason its failed row must give
MISBEHAVING = {
    "fake-hang": "timed out after 0.02 min (timeout_min)",
    "fake-exit0": "the plugin exited the process with code 0",
    "fake-exit5": "the plugin exited the process with code 5",
    "fake-os-exit0": "the plugin exited the process with code 0",
    "fake-abort": "killed by SIGABRT",
    "fake-interrupt": "the plugin raised KeyboardInterrupt",
    "fake-segfault": "killed by SIGSEGV",
}


@pytest.fixture
def fakes(monkeypatch, tmp_path):
    return install(monkeypatch, tmp_path)


def _matrix(metrics, generators=None):
    return {"name": "iso", "seeds": [0], "samples": 20, "real_data": False,
            "datasets": [{"name": "tiny-set"}],
            "generators": generators or [{"name": "fake-gen", "epsilons": ["inf"], "config": {"steps": 1}}],
            "metrics": metrics}


def _unique(rows):
    per = Counter((r["cell"], r["name"]) for r in rows)
    return set(per.values()) == {1}


def test_a_misbehaving_metric_fails_its_own_row_and_the_matrix_completes(fakes, tmp_path, capsys):
    canary = tmp_path / "canary.txt"
    canary.write_text("beside the run folder")
    metrics = [{"name": "fake-gap"}]
    metrics += [{"name": name} | ({"timeout_min": 0.02} if name == "fake-hang" else {}) for name in MISBEHAVING]
    metrics += [{"name": "fake-acc"}]
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(_matrix(metrics)))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 1
    rows = read_results(out)
    by_name = {r["name"]: r for r in rows}
    for name, reason in MISBEHAVING.items():
        assert by_name[name]["status"] == "failed", name
        assert reason in by_name[name]["error"], (name, by_name[name]["error"])
    assert {by_name[n]["status"] for n in ("fake-gap", "fake-acc", "fake-acc-top2")} == {"ok"}
    assert _unique(rows) and len(rows) == len(MISBEHAVING) + 3
    assert canary.read_text() == "beside the run folder"
    assert (out / "leaderboard.json").exists()  # the run went on to its board
    err = capsys.readouterr().err
    assert f"{len(MISBEHAVING)} failed" in err and "Traceback" not in err
    # a re-run retries exactly the failed units (each fails again) and duplicates nothing
    again = run_matrix(_matrix(metrics), out)
    assert again.computed == len(MISBEHAVING) and again.cached == 2
    assert _unique(read_results(out))


@pytest.mark.parametrize("how, reason", [
    ("segfault", "killed by SIGSEGV"),
    ("exit0", "the plugin exited the process with code 0"),
    ("hang", "timed out after 0.02 min"),
])
def test_a_misbehaving_fit_fails_its_cell_and_the_other_cells_run(fakes, tmp_path, how, reason):
    generators = [{"name": "fake-bad-gen", "epsilons": ["inf"], "config": {"how": how}, "timeout_min": 0.02},
                  {"name": "fake-gen", "epsilons": ["inf"], "config": {"steps": 1}}]
    out = tmp_path / "out"
    summary = run_matrix(_matrix([{"name": "fake-gap"}], generators), out)
    assert summary.exit_code == 1 and summary.fits == 1
    rows = {r["generator"]: r for r in read_results(out)}
    assert rows["fake-bad-gen"]["status"] == "failed" and reason in rows["fake-bad-gen"]["error"]
    assert rows["fake-gen"]["status"] == "ok"
    assert [f["kind"] for f in summary.failed] == ["fit"]


def test_progress_and_the_result_come_back_and_the_overhead_is_small():
    seen = []
    result = run_isolated(lambda send: [send(i) for i in range(3)] and {"x": float("inf")},
                          on_progress=seen.append)
    assert result.ok and result.value == {"x": float("inf")} and seen == [0, 1, 2]
    # an OSError of the unit comes back as one (a full disk stops the run, as in-process)
    failed = run_isolated(lambda send: open("/nonexistent/folder/file"))
    assert not failed.ok and isinstance(failed.exception(), FileNotFoundError)
    assert "Traceback" in failed.traceback


@pytest.mark.parametrize("code", ["import sys\nsys.exit(0)\n", "raise KeyboardInterrupt\n",
                                  "import sys\nsys.exit('bye')\n"])
def test_a_plugin_that_exits_or_interrupts_at_import_is_listed_as_broken(monkeypatch, tmp_path, capsys,
                                                                          code):
    from ppds_core import reset_registry

    site = make_plugin_distribution(tmp_path / "site", "ppds-exits", {"ppds_exits": code},
                                    {"exits": "ppds_exits"}, version="0.1")
    monkeypatch.syspath_prepend(str(site))
    sys.modules.pop("ppds_exits", None)
    reset_registry()
    assert main(["plugins", "list"]) == 0
    out = capsys.readouterr().out
    assert "broken" in out and "ppds_exits" in out


def _run_cli(path, out, env, **kw):
    return subprocess.Popen([sys.executable, "-c", CLI, "run", str(path), "--out", str(out), "--quiet"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)


def _wait_for(path, proc, seconds=120):
    deadline = time.time() + seconds
    while not path.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert path.exists(), proc.stderr.read().decode() if proc.poll() is not None else "never started"


def test_a_second_run_on_the_folder_exits_2_naming_the_holder_and_rows_stay_unique(fakes, tmp_path,
                                                                                   capsys):
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(_matrix([{"name": "fake-gap"}, {"name": "fake-block"}])))
    out = tmp_path / "out"
    block = tmp_path / "block"
    block.write_text("hold")
    first = _run_cli(path, out, subprocess_env(fakes, tmp_path) | {"PPDS_FAKE_BLOCK": str(block)})
    try:
        _wait_for(tmp_path / "block.started", first)
        assert main(["run", str(path), "--out", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"pid {first.pid}" in err[0] and "another run" in err[0]
        holder = json.loads((out / ".ppds-run.lock").read_text())
        assert holder["pid"] == first.pid
        # distinct shards share a folder; an unsharded run excludes them
        assert main(["run", str(path), "--out", str(out), "--quiet", "--shard", "1/2"]) == 2
    finally:
        block.unlink()
        first.wait(timeout=120)
    assert first.returncode == 0, first.stderr.read().decode()
    rows = read_results(out)
    assert _unique(rows) and {r["status"] for r in rows} == {"ok"}
    # the holder is gone: its lock went with it, and the next run proceeds
    assert run_matrix(_matrix([{"name": "fake-gap"}, {"name": "fake-block"}]), out).exit_code == 0


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_ppds_stops_the_run_kills_the_unit_and_a_rerun_resumes(fakes, tmp_path, sig, code):
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(_matrix([{"name": "fake-gap"}, {"name": "fake-hang"},
                                            {"name": "fake-acc"}])))
    out = tmp_path / "out"
    pid_file = tmp_path / "unit.pid"
    proc = _run_cli(path, out, subprocess_env(fakes, tmp_path) | {"PPDS_FAKE_PID": str(pid_file)})
    _wait_for(pid_file, proc)
    unit = int(pid_file.read_text())
    proc.send_signal(sig)
    proc.wait(timeout=60)
    assert proc.returncode == code, proc.stderr.read().decode()
    deadline = time.time() + 30
    while _alive(unit) and time.time() < deadline:
        time.sleep(0.05)
    assert not _alive(unit)  # the hung unit went with the run
    assert [r["name"] for r in read_results(out)] == ["fake-gap"]  # the stopped unit wrote nothing
    again = run_matrix(_matrix([{"name": "fake-gap"}, {"name": "fake-hang", "timeout_min": 0.02},
                                {"name": "fake-acc"}]), out)
    assert again.cached == 1 and again.computed == 2
    assert _unique(read_results(out))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie of ours counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


PROBE = """
import torch
from ppds_core.matrix._isolation import child_threads, run_isolated
torch.set_num_threads(1)
a = torch.ones(512, 512)
a @ a
fresh = child_threads(2)  # the parent never ran OpenMP on several threads: units may
torch.set_num_threads(2)
a @ a  # now it has: a forked child would hang in its next multi-threaded op
poisoned = child_threads(2)
unit = run_isolated(lambda send: [torch.get_num_threads(), float((a @ a).sum())], threads=poisoned,
                    timeout_min=0.5)
print(fresh, poisoned, unit.ok, unit.value[0] if unit.ok else unit.error)
"""


def test_units_get_their_threads_unless_openmp_would_hang_in_the_fork():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, OMP_NUM_THREADS="2"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "1", "True", "1"]
