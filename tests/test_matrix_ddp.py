"""`ppds run` with a DDP trainer: each multi-process fit runs in its own process group.

Two DDP cells in one run is the case that used to go wrong: Lightning
re-executes the calling command per extra rank (so every rank re-ran the whole
matrix) and leaves LOCAL_RANK set in the caller (so a second DDP cell spawned
no ranks and waited for ever). Checked on 2 CPU processes (gloo): the run
finishes, each cell is fitted once by 2 ranks and recorded once, its ledger
equals the single-process run's, and a re-run is a no-op.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from ppds_core.matrix.results import RESULTS_FILE, read_rows
from ppds_core.privacy.ledger import Ledger

BASE = {
    "name": "ddp-check", "seeds": [0], "samples": 60, "threads": 1,
    "datasets": [{"name": "digits"}],
    "generators": [{"name": "dp-gan", "epsilons": [1, 10]}],
    "metrics": [{"name": "mse"}],
}


def _run(tmp_path: Path, name: str, trainer: dict) -> tuple[subprocess.CompletedProcess, Path]:
    config = tmp_path / f"{name}.yaml"
    config.write_text(yaml.safe_dump({**BASE, "trainer": trainer}))
    out = tmp_path / name
    done = subprocess.run([sys.executable, "-m", "ppds_core", "run", str(config), "--out", str(out), "--smoke"],
                          capture_output=True, text=True, timeout=400)
    return done, out


def _ledgers(out: Path) -> dict[float, Ledger]:
    ledgers = [Ledger.read(p) for p in sorted((out / "cells").glob("*/ledger.json"))]
    return {led.target_epsilon: led for led in ledgers}


def test_ddp_cells_under_ppds_run_fit_once_each_and_match_one_process(tmp_path):
    ddp, ddp_out = _run(tmp_path, "ddp", {"accelerator": "cpu", "strategy": "ddp", "devices": 2})
    assert ddp.returncode == 0, ddp.stdout[-2000:] + ddp.stderr[-2000:]
    single, single_out = _run(tmp_path, "single", {"accelerator": "cpu", "devices": 1})
    assert single.returncode == 0, single.stderr[-2000:]

    rows = read_rows(ddp_out / RESULTS_FILE)
    keys = [(r["cell"], r["measurement"], r["name"]) for r in rows]
    assert len(keys) == len(set(keys)) == 3  # 2 DP cells + the real-data row, recorded once each
    assert all(r["status"] == "ok" for r in rows)

    logs = sorted((ddp_out / "cells").glob("*/work/fit-workers.log"))
    assert len(logs) == 2  # both DDP cells ran in their own workers...
    for log in logs:
        text = log.read_text()
        assert "rank 0 of 2 done" in text and "rank 1 of 2 done" in text  # ...with two ranks each
    assert not list((single_out / "cells").glob("*/work/fit-workers.log"))

    got, want = _ledgers(ddp_out), _ledgers(single_out)
    assert set(got) == set(want) == {1.0, 10.0}
    for eps, led in got.items():
        assert led.epsilon_spent <= eps * (1 + 1e-3)
        assert [s.model_dump() for s in led.spends] == [s.model_dump() for s in want[eps].spends]

    again, _ = _run(tmp_path, "ddp", {"accelerator": "cpu", "strategy": "ddp", "devices": 2})
    assert again.returncode == 0
    assert len(read_rows(ddp_out / RESULTS_FILE)) == len(rows)  # nothing refitted, nothing recorded twice
    assert json.loads((ddp_out / "cells" / logs[0].parts[-3] / "fit.json").read_text())["generator"] == "dp-gan"
