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
import re
import shutil
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._version import __version__
from ..atomic import atomic_write_text
from ..budget import check_delta_for
from ..device import resolve_device
from ..errors import ConfigError, RunStorageError, SkipMeasurement
from ..imageset import ImageSet, Splits
from ..interfaces import EvalContext, Measurement
from ..safe_load import inside
from ._boards import write_boards
from ._console import Progress, RunLog, log_names
from ._data import check_datasets_available, check_deltas, load_splits
from ._fitting import CellFits, no_shadow_fit
from ._isolation import UnitError, isolation, run_isolated, stop_on_sigterm
from ._lock import RunLock
from ._needs import unmet_need
from ._pending import DONE, check_cells, done_measurements, evaluators_of, pending  # noqa: F401
from ._provenance import write_provenance
from ._yaml import read_config_text
from .cells import Cell, expand_cells, in_shard, measurement_id, parse_shard
from .config import ResolvedMatrix, ResolvedPlugin, load_matrix
from .fit import FitOutcome, real_data_grid
from .results import RESULTS_FILE, append_rows
from .row import ResultRow

__all__ = ["run_matrix", "RunSummary", "unmet_need"]

log = logging.getLogger("ppds.matrix")

#: what a measurement may be called: it becomes a column name and part of plot file names
MEASUREMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9@%+._-]{0,99}")


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


#: errors of the run folder's storage: the run stops (resumably) instead of recording a failed row
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def _reraise_storage(err: BaseException) -> None:
    """A full or read-only disk is not the plugin's failure: stop the run, keep what is done."""
    if isinstance(err, OSError) and err.errno in _STORAGE_ERRNOS:
        raise err


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


class _Runner:
    def __init__(self, matrix: ResolvedMatrix, out: Path, progress: Progress, summary: RunSummary,
                 retry_skipped: bool = False, threads: int | None = None, device: str = "cpu"):
        self.matrix = matrix
        self.out = out
        self.progress = progress
        self.summary = summary
        self.results = out / RESULTS_FILE
        self.cache_dir = out / "cache"
        self.cache_dir.mkdir(exist_ok=True)
        inside(self.cache_dir, out, "the cache folder")  # a planted link must not move the caches
        self.done = done_measurements(out, retry_skipped)
        self._data: dict[int, tuple[Splits, str]] = {}
        #: torch threads of each unit's child process (see _isolation)
        self.threads = threads
        #: the run's device, resolved once (ppds_core.device) and handed to every context
        self.device = device
        self.fits = CellFits(matrix, out, progress, summary, threads, device)

    # ------------------------------------------------------------------ data

    def data(self, cell: Cell) -> tuple[Splits, str]:
        if cell.dataset_index not in self._data:
            splits = load_splits(cell.dataset)
            self._data[cell.dataset_index] = (splits, splits.fingerprint())
        return self._data[cell.dataset_index]

    # ------------------------------------------------------------------ rows

    def _row(self, cell: Cell, cell_id: str, ev: ResolvedPlugin, mid: str, batch: str,
             outcome: FitOutcome | None, **fields: Any) -> dict[str, Any]:
        return ResultRow.for_cell(cell, cell_id, ev, mid, batch, outcome, self.matrix.config.name,
                                  **fields).to_record()

    def _measurement_rows(self, cell, cell_id, ev, mid, outcome, measurements: list[Measurement],
                          seconds: float, workdir: Path) -> list[dict[str, Any]]:
        batch = uuid.uuid4().hex[:12]
        scores = workdir / "scores.npz"
        for m in measurements:
            if not isinstance(m, Measurement):
                raise TypeError(f"{ev.name}.evaluate() must return Measurement objects, got {type(m).__name__}")
        for m in measurements:
            if not MEASUREMENT_NAME.fullmatch(str(m.name or ev.name)):
                raise ValueError(f"{ev.name}: measurement name {m.name!r} is not allowed; use letters, "
                                 "digits and - _ . @ % + (no path separators), at most 100 characters")
        rows = ResultRow.from_measurements(
            cell, cell_id, ev, mid, batch, outcome, self.matrix.config.name, measurements,
            seconds=round(seconds, 3), scores=str(scores.relative_to(self.out)) if scores.exists() else None)
        return [r.to_record() for r in rows]

    def _record(self, rows: list[dict[str, Any]], label: str) -> None:
        append_rows(self.results, rows)
        for r in rows:
            if r["status"] == "failed":
                self.summary.failed.append({"cell": r["cell"], "label": label, "name": r["name"],
                                            "kind": r["kind"], "error": r["error"]})
            elif r["status"] == "skipped":
                self.summary.skipped += 1

    # ------------------------------------------------------------------ one cell

    def run_cell(self, cell: Cell) -> None:
        label = cell.label()
        self.progress.cell(label)
        # an evaluator's generators / epsilons filter leaves no row at all in the cells it skips
        evaluators = evaluators_of(self.matrix, cell)
        try:
            splits, fingerprint = self.data(cell)
        except Exception as err:
            _reraise_storage(err)
            # the dataset's failure is this cell's: keyed by the cell, so every cell keeps its row
            self._fail_cell(cell, f"unloaded-{cell.key[:16]}", evaluators,
                            f"loading dataset {cell.dataset_name!r} failed", err)
            return
        cell_id = cell.cell_id(fingerprint)
        cell_dir = self.out / "cells" / cell_id
        fitted, todo = pending(cell, cell_id, evaluators, self.done, cell_dir)
        self.summary.cached += len(evaluators) - len(todo)
        self.progress.keep_evaluators([("eval", ev.name) for ev, _ in todo])
        if not todo and fitted:
            log.info("%s: cached (%s), nothing to do", label, cell_id)
            return
        cell_dir.mkdir(parents=True, exist_ok=True)
        inside(cell_dir, self.out, "the cell folder")  # a planted link must not move the cell's writes
        self._write_cell_json(cell, cell_id, cell_dir, fingerprint)

        outcome: FitOutcome | None = None
        if cell.is_reference_data:
            synthetic = splits.private
            real_data_grid(cell.dataset_name, cell.label(), cell_dir, splits.private)
        else:
            try:
                if cell.budget.is_private:
                    check_delta_for(cell.delta, len(splits.private))
                outcome = self.fits.fit(cell, cell_dir, splits, label)
            except Exception as err:
                _reraise_storage(err)
                self._fail_cell(cell, cell_id, [e for e, _ in todo], "generator fit failed", err)
                return
            synthetic = outcome.samples
        for ev, mid in todo:
            self._evaluate(cell, cell_id, cell_dir, ev, mid, splits, outcome, synthetic, label)

    def _evaluate(self, cell, cell_id, cell_dir, ev: ResolvedPlugin, mid: str, splits: Splits,
                  outcome: FitOutcome | None, synthetic: ImageSet, label: str) -> None:
        workdir = cell_dir / "eval" / f"{ev.kind}-{ev.name}"
        inside(workdir, cell_dir, "the measurement's workdir")  # nor point the rmtree outside
        if workdir.exists():
            shutil.rmtree(workdir)
        workdir.mkdir(parents=True)
        batch = uuid.uuid4().hex[:12]
        reason = unmet_need(getattr(ev.cls, "needs", frozenset()), cell, outcome, splits)
        unit = ("eval", ev.name)
        if reason:
            self.progress.unit_done(unit, None)  # nothing ran: no duration to learn from
            self._record([self._row(cell, cell_id, ev, mid, batch, outcome, status="skipped", error=reason)], label)
            self.summary.computed += 1
            return
        ctx = EvalContext(
            splits=splits, synthetic=synthetic,
            generator=outcome.generator if outcome else None,
            budget=cell.budget, ledger=outcome.ledger if outcome else None, seed=cell.seed,
            cache_dir=self.cache_dir, workdir=workdir, trainer=dict(self.matrix.config.trainer),
            device=self.device,
        )
        ctx.fit_fresh = self.fits.shadow_fitter(cell, splits, cell_dir, ctx) if outcome else no_shadow_fit
        summary = self.summary

        fits = self.fits

        def evaluate(send: Callable[[Any], None]) -> dict[str, Any]:  # in the unit's child process
            shadows = (summary.shadow_fits, summary.shadows_loaded)
            fits.unit_send, fits.unit_shadows0 = send, summary.shadow_fits
            try:
                found = ev.cls(ev.config).evaluate(ctx)  # type: ignore[attr-defined]
                if not found:
                    raise ValueError(f"{ev.name}.evaluate() returned no measurement")
                for m in found:
                    if not isinstance(m, Measurement):
                        raise TypeError(f"{ev.name}.evaluate() must return Measurement objects, "
                                        f"got {type(m).__name__}")
                return {"measurements": [{"name": m.name, "value": m.value, "headline": m.headline,
                                          "higher_is_better": m.higher_is_better, "extra": m.extra,
                                          "role": m.role}
                                         for m in found]}
            except SkipMeasurement as skip:
                return {"skipped": str(skip) or "skipped"}
            finally:  # the shadow models it fitted or loaded count in the parent's summary
                send([summary.shadow_fits - shadows[0], summary.shadows_loaded - shadows[1]])

        self.progress.unit_start(unit, f"{ev.kind} {ev.name}")
        t0 = time.perf_counter()
        result = run_isolated(evaluate, timeout_min=ev.timeout_min, threads=self.threads,
                              on_progress=self._unit_message)
        seconds = time.perf_counter() - t0
        self.progress.unit_done(unit, seconds if result.ok else None)
        try:
            if not result.ok:
                raise result.exception()
            if "skipped" in result.value:
                rows = [self._row(cell, cell_id, ev, mid, batch, outcome, status="skipped",
                                  error=result.value["skipped"], seconds=round(seconds, 3))]
            else:
                rows = self._measurement_rows(cell, cell_id, ev, mid, outcome,
                                              [Measurement(**m) for m in result.value["measurements"]],
                                              seconds, workdir)
        except Exception as err:
            _reraise_storage(err)
            log.error("%s: %s %s failed: %s\n%s", label, ev.kind, ev.name, err,
                      result.traceback or traceback.format_exc())
            error = str(err) if isinstance(err, UnitError) else f"{type(err).__name__}: {err}"
            rows = [self._row(cell, cell_id, ev, mid, batch, outcome, status="failed",
                              error=error, seconds=round(seconds, 3))]
        self._record(rows, label)
        log.info("%s: %s %s → %s", label, ev.kind, ev.name,
                 ", ".join(f"{r['name']}={r['value']:.4g}" if r["status"] == "ok" else f"{r['name']} {r['status']}"
                           for r in rows))
        self.summary.computed += 1

    def _unit_message(self, message: list[int] | dict[str, str]) -> None:
        """From an evaluator's child: a note for the unit line (a shadow fit finished), or at
        its end the shadow models it fitted and loaded, for the run's summary."""
        if isinstance(message, dict):
            self.progress.unit_note(str(message.get("note", "")))
            return
        self.summary.shadow_fits += message[0]
        self.summary.shadows_loaded += message[1]

    def _fail_cell(self, cell: Cell, cell_id: str, evaluators: list[ResolvedPlugin], what: str,
                   err: BaseException) -> None:
        log.error("%s: %s:\n%s", cell.label(), what, traceback.format_exc())
        message = f"{what}: {err}" if isinstance(err, UnitError) else f"{what}: {type(err).__name__}: {err}"
        self.summary.failed.append({"cell": cell_id, "label": cell.label(), "name": cell.generator_name,
                                    "kind": "fit", "error": message})
        batch = uuid.uuid4().hex[:12]
        rows = [self._row(cell, cell_id, e, measurement_id(cell_id, e, cell.smoke), batch, None,
                          status="failed", error=message) for e in evaluators]
        append_rows(self.results, rows)

    def _write_cell_json(self, cell: Cell, cell_id: str, cell_dir: Path, fingerprint: str) -> None:
        import json

        path = cell_dir / "cell.json"
        if not path.exists():
            from .cells import _canon

            info = {"cell": cell_id, "key": cell.key, "label": cell.label(), "data_fingerprint": fingerprint,
                    "spec": cell.spec()}
            atomic_write_text(path, json.dumps(_canon(info), indent=2, default=str))  # never a planted link


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
        log.info("ppds %s: matrix %r from %s, %d cells%s%s", __version__, matrix.config.name, matrix.source,
                 len(cells), f", shard {shard_t[0]}/{shard_t[1]}" if shard_t else "", ", smoke" if smoke else "")
        runner = _Runner(matrix, out, progress, summary, retry_skipped=retry_skipped, threads=unit_threads,
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
            if err.errno in _STORAGE_ERRNOS | {errno.EACCES}:
                log.error("stopped: %s", err)
                raise RunStorageError(_storage_message(out, err)) from None
            raise
        log.info("done in %.1fs: %d fits, %d loaded, %d measurements computed, %d cached, %d failed",
                 summary.seconds, summary.fits, summary.loaded, summary.computed, summary.cached,
                 len(summary.failed))
    return summary
