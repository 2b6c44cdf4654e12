"""Run a matrix: cells in order, each fitted once, measured, recorded, resumable.

The runner's promises (docs/matrix.md):

- *cached*: a measurement whose hash already has an ``ok`` or ``skipped`` row
  is not recomputed; a cell whose measurements are all cached is not even
  loaded; a fitted model (``fit.json`` present) is loaded, not refitted.
- *isolated*: every fit and every measurement runs in a child process
  (``_isolation``): an exception, a crash (a signal), an exit (``sys.exit``,
  ``os._exit``), a ``KeyboardInterrupt`` raised by the plugin or a timeout
  (``timeout_min``) becomes that unit's ``failed`` row with the reason (traceback
  in ``run.log``) and the run goes on; exit code 1 at the end. Only Ctrl-C or
  SIGTERM to ppds itself stops the run (exit 130 / 143), resumably.
- *one writer*: the run holds ``DIR/.ppds-run.lock`` (``_lock``); a second run
  on the folder exits 2 naming the holder (distinct shards share the folder).
- *shardable*: ``--shard i/n`` keeps the cells whose config hash is ``i-1``
  modulo ``n``; all shards may append to one folder.
"""

from __future__ import annotations

import errno
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._version import __version__
from ..device import resolve_device
from ..errors import ConfigError, RunStorageError
from ._boards import write_boards
from ._claims import clear_failed
from ._console import Progress, RunLog, log_names
from ._data import check_datasets_available, check_deltas
from ._isolation import isolation, stop_on_sigterm
from ._lock import RunLock
from ._needs import unmet_need
from ._pending import DONE, check_cells, done_measurements, evaluators_of, pending  # noqa: F401
from ._provenance import write_provenance
from ._units import MEASUREMENT_NAME, STORAGE_ERRNOS, UnitRunner  # noqa: F401
from ._yaml import read_config_text
from .cells import Cell, expand_cells, in_shard, parse_shard
from .config import load_matrix

__all__ = ["run_matrix", "RunSummary", "unmet_need"]

log = logging.getLogger("ppds.matrix")

@dataclass
class RunSummary:
    """What one ``run_matrix`` call did (the CLI prints it; tests count on it)."""

    out: Path | None
    cells: list[Cell]
    check_only: bool = False
    fits: int = 0
    loaded: int = 0
    #: shadow models that attacks trained (LiRA) or found in the shadow cache
    shadow_fits: int = 0
    shadows_loaded: int = 0
    computed: int = 0
    cached: int = 0
    skipped: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    #: ``--check --out DIR``: per cell, what a run into DIR would do ("done", "would run", …)
    states: list[str] | None = None
    folders: list[str | None] | None = None  #: ``--check``: each cell's folder under cells/

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def _storage_message(out: Path, err: OSError) -> str:
    free, fix = "", "make the folder writable"  # read-only (EROFS) or not ours (EACCES)
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free space"
        try:
            free = f", {shutil.disk_usage(out).free / 2**20:.1f} MiB free"
        except OSError:
            pass
    where = f" ({err.filename})" if err.filename else ""
    return (f"{out}: {err.strerror}{where}{free}; the run stopped with every finished cell and "
            f"measurement kept: {fix} and run the same command again")



#: the per-unit code (its old name here: tests patch its methods)
_Runner = UnitRunner


# --------------------------------------------------------------------------- entry point


def run_matrix(
    config: str | Path | dict[str, Any],
    out: str | Path | None = None,
    shard: str | tuple[int, int] | None = None,
    smoke: bool = False,
    check: bool = False,
    quiet: bool = True,
    retry_skipped: bool = False,
) -> RunSummary:
    """Validate ``config``, then (unless ``check``) run its cells into ``out``.

    Returns a :class:`RunSummary`; ``summary.exit_code`` is 1 when anything
    failed. ``retry_skipped`` recomputes ``skipped`` measurements too (after
    installing the weights a metric was missing). A user mistake raises a :class:`~ppds_core.errors.PpdsError`
    before any work starts.
    """
    t0 = time.perf_counter()
    matrix = load_matrix(config, smoke=smoke)
    shard_t = parse_shard(shard) if isinstance(shard, str) or shard is None else shard
    cells = [c for c in expand_cells(matrix) if in_shard(c, shard_t)]
    check_datasets_available(matrix)
    if check:
        at = Path(out) if out else None
        states, folders = check_cells(matrix, cells, at, retry_skipped)
        return RunSummary(out=at, cells=cells, check_only=True, states=states, folders=folders)
    if out is None:
        raise ConfigError("no output folder: pass --out DIR (or --check to only validate)")
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"--out {out}: cannot create the output folder ({err.strerror})") from None
    summary = RunSummary(out=out, cells=cells)
    lock = RunLock(out, shard_t)
    try:  # one writer per folder (distinct shards share it): a second run exits 2 naming the holder
        lock.acquire()
        run_log = RunLog(out, log_names(matrix.plugin_classes()))
    except OSError as err:
        lock.release()
        raise ConfigError(f"--out {out}: cannot write the run log there ({err.strerror}); "
                          "pass a folder you can write to") from None
    progress = Progress(quiet, len(cells))
    progress.durations.seed_from(out)  # what an earlier run in this folder took: the first ETA
    progress.plan([(None if c.is_reference_data else ("fit", c.generator_name, c.budget.is_private),
                    [("eval", e.name) for e in evaluators_of(matrix, c)]) for c in cells])
    with lock, run_log, isolation(matrix.config.threads) as unit_threads, stop_on_sigterm():
        if shard_t is None:  # alone on the folder: retry what workers recorded as failed, as rows
            clear_failed(out, claims_too=True)  # are; a claim left now is a dead worker's
        log.info("ppds %s: matrix %r from %s, %d cells%s%s", __version__, matrix.config.name, matrix.source,
                 len(cells), f", shard {shard_t[0]}/{shard_t[1]}" if shard_t else "", ", smoke" if smoke else "")
        runner = UnitRunner(matrix, out, progress, summary, retry_skipped=retry_skipped, threads=unit_threads,
                         device=resolve_device(matrix.config.trainer))  # after isolation(): no CUDA init
        check_deltas(matrix, cells, lambda c: runner.data(c)[0])  # (loads inside isolation())
        try:
            write_provenance(out, matrix, config if isinstance(config, dict) else read_config_text(Path(config)))
            try:
                for cell in cells:
                    runner.run_cell(cell)
                    progress.cell_done()
            finally:
                progress.cell("done")
                progress.stop()
            summary.seconds = time.perf_counter() - t0
            write_boards(out, summary)  # a full disk here stops the run like one in a cell
        except OSError as err:
            if err.errno in STORAGE_ERRNOS | {errno.EACCES}:
                log.error("stopped: %s", err)
                raise RunStorageError(_storage_message(out, err)) from None
            raise
        log.info("done in %.1fs: %d fits, %d loaded, %d measurements computed, %d cached, %d failed",
                 summary.seconds, summary.fits, summary.loaded, summary.computed, summary.cached,
                 len(summary.failed))
    return summary
