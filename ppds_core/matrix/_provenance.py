"""``provenance.json``: what made a run folder — its matrix, the software, the machine.

Written atomically at the start of every run into the folder (a resume refreshes
it and keeps the first ``created``), so a board can say which code, versions and
hardware produced its numbers. Keys (docs/matrix.md, "Run folder layout"):
``matrix_given``, ``matrix_resolved``, ``versions``, ``cuda``, ``gpu``,
``git_revision``, ``host``, ``created``.

Nothing here may initialise CUDA in the runner (its units are forked:
``_isolation``): the GPU names are read in a forked unit of their own.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from .._version import __version__
from ..atomic import atomic_write_text
from .cells import _canon
from .config import ResolvedMatrix, ResolvedPlugin

__all__ = ["PROVENANCE_FILE", "provenance", "write_provenance", "git_revision", "resolved_matrix"]

PROVENANCE_FILE = "provenance.json"
log = logging.getLogger("ppds.matrix")

#: versions recorded besides Python's and ppds': key → distribution names to try
_LIBRARIES = {"torch": ("torch",), "opacus": ("opacus",),
              "lightning": ("pytorch-lightning", "lightning"), "diffusers": ("diffusers",)}


def _version(names: tuple[str, ...]) -> str | None:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def versions() -> dict[str, Any]:
    """Python, the libraries the numbers depend on, ppds, and each plugin entry point's
    distribution (``{entry point: {"distribution": name, "version": version}}``)."""
    from ..registry import ENTRY_POINT_GROUP, entry_point_distribution

    plugins = {}
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        name, version = entry_point_distribution(ep)
        plugins[ep.name] = {"distribution": name, "version": version}
    return {"python": platform.python_version(),
            **{key: _version(names) for key, names in _LIBRARIES.items()},
            "ppds": __version__, "plugins": plugins}


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _read_head(git_dir: Path) -> str | None:
    """HEAD's commit read from the files of a plain ``.git`` folder; None when not that simple."""
    try:
        head = (git_dir / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head if len(head) == 40 else None
        ref = head[5:]
        loose = git_dir / ref
        if loose.is_file():
            return loose.read_text().strip() or None
        for line in (git_dir / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except OSError:
        return None
    return None


def git_revision(root: Path | None = None) -> str | None:
    """The commit of the ppds checkout, ``-dirty`` appended when tracked files differ
    from it; None when ppds is not a git checkout (an installed wheel)."""
    root = root or Path(__file__).resolve().parents[2]
    dot_git = root / ".git"
    if not dot_git.exists():
        return None
    sha = (_read_head(dot_git) if dot_git.is_dir() else None) or _git(root, "rev-parse", "HEAD")
    if not sha:
        return None
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return f"{sha}-dirty" if status else sha  # None: git not runnable, cleanliness unknown


def _gpus() -> list[str]:
    """Names of the GPUs torch sees, read in a forked unit (CUDA stays uninitialised here)."""
    import torch

    if not torch.cuda.is_available():  # NVML-based in a run (_isolation): no CUDA init
        return []
    from ._isolation import run_isolated

    def names(_send) -> list[str]:
        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]

    result = run_isolated(names, timeout_min=1.0)
    if not result.ok:
        log.warning("could not read the GPU names for provenance.json: %s", result.error)
        return []
    return list(result.value)


def _plugin(p: ResolvedPlugin) -> dict[str, Any]:
    return {"name": p.name, "version": p.version, "config": p.config_dict()}


def resolved_matrix(matrix: ResolvedMatrix) -> dict[str, Any]:
    """The matrix after defaults, validation and ``--smoke``: every plugin's full config."""
    cfg = matrix.config.model_dump(mode="python", exclude={"datasets", "generators", "metrics", "attacks"})
    evaluators = [{**_plugin(e), "kind": e.kind, "generators": e.generators, "epsilons": e.epsilons,
                   "timeout_min": e.timeout_min} for e in matrix.evaluators]
    return _canon({
        **cfg, "smoke": matrix.smoke, "samples": matrix.samples,
        "datasets": [{**_plugin(d.plugin), "public": _plugin(d.public) if d.public else None}
                     for d in matrix.datasets],
        "generators": [{**_plugin(g.plugin), "epsilons": g.epsilons, "timeout_min": g.plugin.timeout_min}
                       for g in matrix.generators],
        "metrics": [e for e in evaluators if e["kind"] == "metric"],
        "attacks": [e for e in evaluators if e["kind"] == "attack"],
    })


def provenance(matrix: ResolvedMatrix, given: str | dict[str, Any]) -> dict[str, Any]:
    """The record (``created`` now); ``given`` is the matrix as the user gave it."""
    import torch

    return {
        "matrix_given": given if isinstance(given, str) else _canon(given),
        "matrix_resolved": resolved_matrix(matrix),
        "versions": versions(),
        "cuda": torch.version.cuda,
        "gpu": _gpus(),
        "git_revision": git_revision(),
        "host": {"node": platform.node(), "machine": platform.machine(), "cpu_count": os.cpu_count()},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_provenance(out: Path, matrix: ResolvedMatrix, given: str | dict[str, Any]) -> dict[str, Any]:
    """Write ``out/provenance.json`` (atomically, never through a planted link), keeping the
    ``created`` of an earlier run into the same folder."""
    record = provenance(matrix, given)
    path = out / PROVENANCE_FILE
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(old, dict) and isinstance(old.get("created"), str):
            record["created"] = old["created"]
    except (OSError, ValueError):
        pass  # the first run here, or an unreadable file: rewritten
    atomic_write_text(path, json.dumps(record, indent=2, default=str) + "\n")
    return record
