"""``results.jsonl``: the one file a matrix writes its numbers into.

Write side: all rows of one measurement go out in **one** ``os.write`` on a
file opened with ``O_APPEND``, under an exclusive ``flock``, then ``fsync``.
A ``kill -9`` therefore lands either before the write (the row is missing and
the re-run computes it) or after it (the row is complete). Several processes
(``--shard i/n`` on one shared folder) append to the same file: ``O_APPEND``
makes each write land at the end, the lock keeps them from interleaving on
filesystems where appends alone are not atomic. The file is opened with
``O_NOFOLLOW``: a symlink planted at ``results.jsonl`` in a shared folder is
refused (:class:`~ppds_core.errors.UnsafeFileError`), never appended through
(nor read from).

Read side: a line that does not parse (a torn write after a power loss or a
full disk) is ignored with a warning, and the writer starts its next write on
a fresh line, so one bad line never spoils the rest. Rows of a measurement
share a ``measurement`` hash and a ``batch`` id; when a measurement was
written more than once (a failed one retried) the reader keeps its last batch.

Infinite ε is written as the string ``"inf"`` (JSON has no infinity), the same
convention as ``ledger.json``; :func:`read_rows` turns it back into ``math.inf``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..atomic import open_no_follow

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: O_APPEND alone
    fcntl = None  # type: ignore[assignment]

__all__ = ["RESULTS_FILE", "REQUIRED_KEYS", "append_rows", "read_rows", "read_results", "encode_row",
           "resolve_headlines"]

log = logging.getLogger("ppds.matrix")

RESULTS_FILE = "results.jsonl"
REQUIRED_KEYS = (
    "cell", "dataset", "generator", "epsilon", "epsilon_spent", "delta", "seed", "kind", "name",
    "value", "higher_is_better", "status", "error", "ppds_version",
)
_INF_KEYS = ("epsilon", "epsilon_spent")


def _encode_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        if math.isnan(v):
            return None
        return "inf" if v > 0 else "-inf"
    if isinstance(v, dict):
        return {k: _encode_value(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_encode_value(x) for x in v]
    if hasattr(v, "tolist") and callable(v.tolist):  # numpy / torch scalars and arrays
        return _encode_value(v.tolist())
    return v


def encode_row(row: dict[str, Any]) -> str:
    missing = [k for k in REQUIRED_KEYS if k not in row]
    if missing:
        raise ValueError(f"result row lacks required keys {missing}")
    return json.dumps(_encode_value(row), default=str, ensure_ascii=False)


def append_rows(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Append rows as JSON lines: one write, flushed and fsynced (see module doc)."""
    payload = "".join(encode_row(r) + "\n" for r in rows).encode()
    if not payload:
        return
    # O_NOFOLLOW: a symlink planted at the name would have these rows appended outside the run
    fd = open_no_follow(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            payload = b"\n" + payload  # a torn line before us stays alone on its line
        view = memoryview(payload)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    for key in _INF_KEYS:
        v = row.get(key)
        if v == "inf":
            row[key] = math.inf
        elif v == "-inf":
            row[key] = -math.inf
    return row


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Every complete row in file order; torn or partial lines are skipped."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return []
    with os.fdopen(open_no_follow(path, os.O_RDONLY), "rb") as fh:  # nor read rows from elsewhere
        data = fh.read()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    elif lines:  # no trailing newline: the last write did not finish
        log.warning("%s: ignoring a partial last line (%d bytes)", path, len(lines[-1]))
        lines.pop()
    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            log.warning("%s line %d: ignoring a line that is not valid JSON", path, n)
            continue
        if isinstance(row, dict):
            rows.append(_decode(row))
    return rows


def resolve_headlines(flags: Iterable[bool | None]) -> list[bool]:
    """The ``headline`` of each row of one measurement: as flagged, or — when none is
    flagged (a plugin that sets no flag, rows written before the flag existed) — the
    first row alone, so every evaluator keeps at least one number in a compact view."""
    out = [bool(f) for f in flags]
    return out if any(out) else [i == 0 for i in range(len(out))]


def latest_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Keep, for each measurement hash, only the rows of its last written batch."""
    last_batch: dict[str, str] = {}
    for r in rows:
        m = r.get("measurement")
        if m is not None:
            last_batch[m] = r.get("batch", "")
    return [r for r in rows if r.get("measurement") is None or last_batch[r["measurement"]] == r.get("batch", "")]


def read_results(directory: str | Path) -> list[dict[str, Any]]:
    """The current rows of a run folder (latest batch per measurement)."""
    return latest_rows(read_rows(Path(directory) / RESULTS_FILE))
