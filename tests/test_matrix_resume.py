"""Crash safety: kill -9 mid-cell then resume; torn lines; the shared fit code path."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
import yaml
from matrix_fakes import counts, install, subprocess_env

from ppds_core.cli import main
from ppds_core.errors import LedgerError
from ppds_core.imageset import ImageSet
from ppds_core.matrix import append_rows, fit_generator, read_results, read_rows, run_matrix
from ppds_core.privacy import DPSGDSpend, epsilon_of
from ppds_core.privacy.ledger import Ledger

CLI = "import sys; from ppds_core.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.fixture
def fakes(monkeypatch, tmp_path):
    return install(monkeypatch, tmp_path)


def test_kill_9_mid_cell_then_resume_gives_exactly_one_row_per_measurement(fakes, tmp_path, monkeypatch):
    matrix = {
        "name": "crash", "seeds": [0], "samples": 30,
        "datasets": [{"name": "tiny-set"}],
        "generators": [{"name": "fake-gen", "epsilons": [1, 10]}],
        "metrics": [{"name": "fake-gap"}, {"name": "fake-block"}, {"name": "fake-acc"}],
    }
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(matrix))
    out = tmp_path / "out"
    block = tmp_path / "block"
    block.write_text("hold")
    env = subprocess_env(fakes, tmp_path) | {"PPDS_FAKE_BLOCK": str(block)}
    proc = subprocess.Popen([sys.executable, "-c", CLI, "run", str(path), "--out", str(out), "--quiet"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    started = tmp_path / "block.started"
    deadline = time.time() + 120
    while not started.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert started.exists(), proc.stderr.read().decode() if proc.poll() is not None else "never blocked"
    os.kill(proc.pid, signal.SIGKILL)  # mid-cell: fake-gap of the first cell is written, fake-block is not
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    before = read_rows(out / "results.jsonl")
    assert [r["name"] for r in before] == ["fake-gap"]
    assert _fits(tmp_path) == 1

    block.unlink()
    summary = run_matrix(path, out)
    assert summary.exit_code == 0
    assert summary.loaded == 1 and summary.fits == 1  # the killed cell's model is reused, not refitted
    assert _fits(tmp_path) == 2
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    per = Counter((r["cell"], r["name"]) for r in lines)
    assert set(per.values()) == {1}
    cells = {r["cell"] for r in lines}
    assert len(cells) == 3  # two ε cells + the real-data reference
    assert len(per) == 3 * 4  # fake-gap, fake-block, fake-acc, fake-acc-top2 for each


def _fits(tmp_path):
    return sum(1 for e in counts(tmp_path) if e.startswith("fit "))


def test_reader_skips_torn_lines_and_the_writer_starts_a_fresh_line(tmp_path):
    path = tmp_path / "results.jsonl"
    base = {"cell": "c", "dataset": "d", "generator": "g", "epsilon": math.inf, "epsilon_spent": math.inf,
            "delta": 1e-5, "seed": 0, "kind": "metric", "name": "m", "value": 0.5, "higher_is_better": True,
            "status": "ok", "error": None, "ppds_version": "0", "measurement": "m1", "batch": "b1"}
    append_rows(path, [base])
    with open(path, "a") as f:
        f.write('{"cell": "c", "name": "half')  # what a torn write would leave
    assert len(read_rows(path)) == 1  # a partial last line is ignored
    append_rows(path, [base | {"measurement": "m2", "batch": "b2", "value": 0.25}])
    rows = read_rows(path)
    assert [r["value"] for r in rows] == [0.5, 0.25]
    assert rows[0]["epsilon"] == math.inf and '"epsilon": "inf"' in path.read_text()
    # a retried measurement: the reader keeps only its last batch
    append_rows(path, [base | {"batch": "b3", "value": 0.75}])
    assert sorted(r["value"] for r in read_results(tmp_path)) == [0.25, 0.75]
    with pytest.raises(ValueError, match="required keys"):
        append_rows(path, [{"cell": "c"}])


def test_fit_generator_python_and_cli_leave_the_cell_artifacts(fakes, tmp_path, capsys):
    outcome = fit_generator("fake-gen", "tiny-set", 3, tmp_path / "py", config={"steps": 1}, samples=12,
                            public="tiny-public")
    spend = DPSGDSpend(noise_multiplier=5.0, sample_rate=0.1, steps=1, max_grad_norm=1.0)
    assert outcome.ledger.target_epsilon == 3
    assert outcome.ledger.epsilon_spent == pytest.approx(epsilon_of([spend], 1e-5))
    assert len(outcome.samples) == 12
    code = main(["fit", "fake-gen", "--dataset", "tiny-set", "--epsilon", "inf", "--config", '{"steps": 1}',
                 "--samples", "10", "--out", str(tmp_path / "cli"), "--quiet"])
    assert code == 0
    for d in (tmp_path / "py", tmp_path / "cli"):
        for name in ("model/fake.pt", "ledger.json", "samples.npz", "samples.png", "fit.json"):
            assert (d / name).exists(), d / name
    assert math.isinf(Ledger.read(tmp_path / "cli" / "ledger.json").epsilon_spent)
    assert len(ImageSet.load_npz(tmp_path / "cli" / "samples.npz")) == 10
    assert main(["fit", "fake-gen", "--dataset", "tiny-set", "--epsilon", "0", "--out", str(tmp_path / "x"),
                 "--quiet"]) == 2
    assert "epsilon must be > 0" in capsys.readouterr().err
    assert main(["fit", "fake-gen", "--dataset", "tiny-set", "--epsilon", "1", "--config", '{"stepz": 1}',
                 "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "stepz" in capsys.readouterr().err
    # a generator that spends more than its target fails the fit; its ledger stays visible
    with pytest.raises(LedgerError, match="over its target"):
        fit_generator("fake-gen", "tiny-set", 2, tmp_path / "over", config={"overspend": True}, samples=8)
    assert Ledger.read(tmp_path / "over" / "ledger.json").epsilon_spent > 2
    assert not (tmp_path / "over" / "fit.json").exists()
