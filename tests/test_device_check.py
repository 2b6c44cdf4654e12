"""benchmarks/device_check.py: its --tiny CPU run reports every section, and the
--write-configs yaml edit changes exactly the one number (no GPU needed for either)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "device_check.py"

#: the sections a --tiny run writes; a skip is allowed only with its documented reason
SECTIONS = ["env", "ddp", "attack/reconstruction", "attack/dpsgd-audit"] + [
    f"{kind}/{gen}" for kind in ("step", "maxbatch", "fit")
    for gen in ("dp-gan", "dp-diffusion", "privimage")]
DOCUMENTED_SKIPS = {"maxbatch/": "no CUDA", "ddp": "--tiny: DDP on 2 CPU processes"}


def _load_script():
    spec = importlib.util.spec_from_file_location("device_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_tiny_run_reports_every_section(tmp_path):
    out = tmp_path / "report"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((out / "device-check.json").read_text())
    assert report["tiny"] is True
    sections = report["sections"]
    assert sorted(sections) == sorted(SECTIONS)
    for name, s in sections.items():
        skip = next((why for prefix, why in DOCUMENTED_SKIPS.items() if name.startswith(prefix)), None)
        if s["status"] == "skipped" and skip is not None:
            assert s["reason"].startswith(skip), (name, s)
        else:
            assert s["status"] == "ok", (name, s)
    for gen in ("dp-gan", "dp-diffusion", "privimage"):
        step = sections[f"step/{gen}"]
        assert {"non-private", "auto"} <= set(step["variants"])
        assert step["variants"]["auto"]["ratio_to_non_private"] > 0
        assert step["estimated_paper_hours_auto"] > 0
        check = sections[f"fit/{gen}"]["privacy_check"]
        assert check["sigma_equal"] and check["epsilon_equal"]
    assert sections["fit/privimage"]["privacy_check"]["other_spends"] == 1  # the query's spend
    md = (out / "device-check.md").read_text()
    assert md.startswith("# Device check") and "step/dp-diffusion" in md


def test_write_configs_edits_only_the_physical_batch(tmp_path):
    dc = _load_script()
    for name in ("mnist-dpdm.yaml", "cifar10-privimage.yaml"):
        copy = tmp_path / name
        shutil.copy(REPO / "examples" / "paper" / name, copy)
        before = copy.read_text()
        after = dc.set_physical_batch(before, 96, "largest fitting batch measured on GPU X, 2026-01-01")
        copy.write_text(after)
        old, new = yaml.safe_load(before), yaml.safe_load(after)
        assert new["generators"][0]["config"]["max_physical_batch_size"] == 96
        new["generators"][0]["config"]["max_physical_batch_size"] = \
            old["generators"][0]["config"]["max_physical_batch_size"]
        assert new == old  # nothing else changed
        changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b]
        assert len(changed) == 1 and "GPU X, 2026-01-01" in changed[0][1]
        assert changed[0][1].startswith(changed[0][0].split("max_physical_batch_size")[0])
        assert dc.set_physical_batch(after, 96, "again") == after.replace(
            "largest fitting batch measured on GPU X, 2026-01-01", "again")
    with pytest.raises(ValueError, match="one max_physical_batch_size"):
        dc.set_physical_batch("a: 1\n", 8, "x")
    with pytest.raises(ValueError, match="found 2"):
        dc.set_physical_batch("max_physical_batch_size: 1\nmax_physical_batch_size: 2\n", 8, "x")
