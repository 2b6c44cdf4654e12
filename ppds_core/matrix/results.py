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

What a row holds, and how each value is written (±∞ and NaN as ``"inf"``,
``"-inf"``, ``"nan"``, the same convention as ``ledger.json``), is
:class:`~ppds_core.matrix.row.ResultRow`'s business; this module only moves
whole lines in and out of the file.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..atomic import open_no_follow
from .row import REQUIRED_KEYS, ResultRow, decode_record, resolve_headlines

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: O_APPEND alone
    fcntl = None  # type: ignore[assignment]

__all__ = ["RESULTS_FILE", "REQUIRED_KEYS", "append_rows", "read_rows", "read_results", "encode_row",
           "resolve_headlines"]

log = logging.getLogger("ppds.matrix")

RESULTS_FILE = "results.jsonl"


def encode_row(row: ResultRow | Mapping[str, Any]) -> str:
    """One JSON line (no newline) of a row; a mapping is validated as a :class:`ResultRow` first
    (``ValueError`` naming what is wrong, e.g. a missing required key)."""
    if not isinstance(row, ResultRow):
        missing = [k for k in REQUIRED_KEYS if k not in row]
        if missing:
            raise ValueError(f"result row lacks required keys {missing}")
        row = ResultRow.model_validate(row)
    return row.to_json()


def append_rows(path: str | Path, rows: Iterable[ResultRow | Mapping[str, Any]]) -> None:
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


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Every complete row in file order, as dicts with their floats decoded; torn or partial
    lines are skipped. Rows are not validated here: one of an older schema still reads, so the
    leaderboard can name the version that wrote it (``ResultRow.model_validate`` checks one)."""
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
            raw = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            log.warning("%s line %d: ignoring a line that is not valid JSON", path, n)
            continue
        if isinstance(raw, dict):
            rows.append(decode_record(raw))
    return rows


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
