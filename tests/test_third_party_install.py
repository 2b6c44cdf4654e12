"""A real third-party package, pip-installed into a folder, shows up with no change to ppds."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ppds_core import EvalContext, ImageSet, PrivacyBudget, Splits
from ppds_core.testing import check_plugin, plugin_path

TEMPLATE = Path(__file__).resolve().parents[1] / "examples" / "plugin-template"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("src") / "plugin-template"  # builds write beside the source
    shutil.copytree(TEMPLATE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    if proc.returncode != 0:
        pytest.fail(f"pip could not install the template plugin:\n{proc.stderr[-2000:]}")
    return target


def test_installed_plugin_is_listed_by_the_cli(installed):
    env = dict(os.environ, PYTHONPATH=str(installed))
    out = subprocess.run([sys.executable, "-m", "ppds_core", "plugins", "list", "--json"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    row = rows["mean-intensity-gap"]
    assert (row["status"], row["kind"], row["distribution"]) == ("ok", "metric", "ppds-example-metric")


def test_installed_plugin_passes_the_conformance_kit(installed, tmp_path):
    with plugin_path(installed):
        from ppds_core import get_plugin

        cls = get_plugin("mean-intensity-gap", "metric")
        real = ImageSet(torch.full((4, 1, 2, 2), 0.5), [0, 1, 0, 1], ["a", "b"])
        synth = ImageSet(torch.full((4, 1, 2, 2), 0.75), [0, 1, 0, 1], ["a", "b"])
        ctx = EvalContext(Splits(real, real, real), synth, None, PrivacyBudget(epsilon=1), None, 0,
                          tmp_path, tmp_path)
        rows = check_plugin(cls, ctx=ctx)
        assert rows[0].value == pytest.approx(0.25)
