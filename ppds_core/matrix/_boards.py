"""The run's leaderboards, written at its end unless they are already current.

A rendering bug must not hide numbers that are on disk: it becomes the run's
``board`` failure (exit 1), and the results stay. A full or read-only folder
is not a rendering bug: it stops the run in one line like a full disk inside
a cell, and the re-run writes the boards. A run that wrote nothing new
leaves current boards alone (a re-run of a finished matrix is free).
"""

from __future__ import annotations

import errno
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import PpdsError
from .results import RESULTS_FILE

if TYPE_CHECKING:
    from .runner import RunSummary

__all__ = ["write_boards"]

log = logging.getLogger("ppds.matrix")

#: a full, over-quota, read-only or foreign folder: the runner stops in one line (resumably)
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES}


def _boards_current(out: Path, summary: RunSummary) -> bool:
    """True when this run wrote nothing and the boards are newer than the results."""
    if summary.fits or summary.computed or summary.failed:
        return False
    results = out / RESULTS_FILE
    boards = [out / "leaderboard.json", out / "leaderboard-smoke.json"]
    existing = [b for b in boards if b.exists()]
    if not results.exists() or not existing:
        return not results.exists()
    if not all(b.with_name(f"{b.stem}-full.md").exists() and b.with_suffix(".tex").exists() for b in existing):
        return False  # boards written before the compact / full split or before leaderboard.tex: write them now
    return all(b.stat().st_mtime >= results.stat().st_mtime for b in existing)


def write_boards(out: Path, summary: RunSummary) -> None:
    """Write ``out``'s leaderboards into ``summary.outputs``, or record why they could not be."""
    try:
        from ..report.leaderboard import write_leaderboards

        if _boards_current(out, summary):
            log.info("nothing new: the leaderboard in %s is current", out)
        else:
            summary.outputs = write_leaderboards(out)
    except PpdsError:
        raise
    except OSError as err:
        if err.errno in _STORAGE_ERRNOS:  # the folder's fault, not the board's: the run stops
            raise
        _record(summary, err)
    except Exception as err:  # the numbers are on disk; a rendering bug must not hide them
        _record(summary, err)


def _record(summary: RunSummary, err: Exception) -> None:
    log.exception("writing the leaderboard of %s failed", summary.out)
    summary.failed.append({"cell": "-", "label": "leaderboard", "name": "leaderboard",
                           "kind": "board", "error": f"{type(err).__name__}: {err}"})
