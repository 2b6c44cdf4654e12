"""A run folder's ``provenance.json`` as one short footer line, read defensively.

The runner writes ``DIR/provenance.json`` (the matrix as given and resolved, the
versions of python, torch, opacus, lightning, diffusers, ppds and the plugins,
CUDA, the GPU, the git revision, the host, the time). The board shows a line of
it: which software on which machine made these numbers. A run folder may come
from someone else, so the file is optional and nothing in it is trusted: a
missing, linked-out, oversized, unparsable or oddly shaped file gives no line,
only plain strings and numbers are shown, each cut to a few dozen characters.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["PROVENANCE_FILE", "provenance_line"]

PROVENANCE_FILE = "provenance.json"
#: a provenance file is a few kB; a larger one is not what the runner wrote
_MAX_BYTES = 1 << 20
_MAX_FIELD = 40
_VERSIONS = ("ppds", "python", "torch", "opacus", "lightning", "diffusers")


def _text(x: Any) -> str | None:
    if isinstance(x, bool) or not isinstance(x, str | int | float):
        return None
    s = " ".join(str(x).split())  # no newlines or runs of spaces from the file
    if not s:
        return None
    return s if len(s) <= _MAX_FIELD else s[: _MAX_FIELD - 1] + "…"


def _read(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / PROVENANCE_FILE
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > _MAX_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # unreadable, not UTF-8, not JSON
        return None
    return data if isinstance(data, dict) else None


def provenance_line(run_dir: str | Path) -> str | None:
    """``host, created — ppds 0.1.0, python 3.11.9, torch 2.4.0 …; git 1c91d81; GPU …``, or None."""
    data = _read(Path(run_dir))
    if data is None:
        return None
    versions = data.get("versions") if isinstance(data.get("versions"), dict) else {}
    parts = [f"{k} {v}" for k in _VERSIONS if (v := _text(versions.get(k)))]
    plugins = versions.get("plugins")
    if isinstance(plugins, dict) and plugins:
        parts.append(f"{len(plugins)} plugin package{'s' if len(plugins) != 1 else ''}")
    fields = []
    if parts:
        fields.append(", ".join(parts))
    if git := _text(data.get("git_revision")):
        fields.append(f"git {git}")
    if cuda := _text(data.get("cuda")):
        fields.append(f"CUDA {cuda}")
    gpu = data.get("gpu")  # a list of names (``[]`` without one); a plain string is read too
    gpus = [g for x in (gpu if isinstance(gpu, list) else [gpu])[:8] if (g := _text(x))]
    if gpus:
        fields.append("GPU " + ", ".join(gpus))
    host = data.get("host")  # {node, machine, cpu_count}; a plain string is read too
    host = host.get("node") if isinstance(host, dict) else host
    where = ", ".join(v for v in (_text(host), _text(data.get("created"))) if v)
    if not fields and not where:
        return None
    return f"{Path(run_dir).name}: " + (f"{where} — " if where else "") + "; ".join(fields)
