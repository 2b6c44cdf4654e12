"""The units of a matrix run — a cell's fit, one measurement — and the rows they leave.

:class:`UnitRunner` holds what a run needs across units (the loaded datasets, the
measurements already done, the fits) and runs one unit at a time, each isolated
in a child process (``_isolation``). The sequential run (:mod:`.runner`) walks
cells in order through :meth:`UnitRunner.run_cell`; a worker (:mod:`._worker`)
claims single units and calls :meth:`UnitRunner.open_cell`,
:meth:`UnitRunner.fit_cell` and :meth:`UnitRunner.evaluate` — the same code.
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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..atomic import atomic_write_text
from ..budget import check_delta_for
from ..errors import SkipMeasurement
from ..imageset import ImageSet, Splits
from ..interfaces import EvalContext, Measurement
from ..safe_load import inside
from ._console import Progress
from ._data import load_splits
from ._fitting import CellFits, no_shadow_fit
from ._isolation import UnitError, run_isolated
from ._needs import unmet_need
from ._pending import done_measurements, evaluators_of, pending
from .cells import Cell, measurement_id
from .config import ResolvedMatrix, ResolvedPlugin
from .fit import FitOutcome, real_data_grid
from .results import RESULTS_FILE, append_rows
from .row import ResultRow

if TYPE_CHECKING:
    from .runner import RunSummary

__all__ = ["UnitRunner", "OpenCell", "STORAGE_ERRNOS", "MEASUREMENT_NAME", "reraise_storage"]

log = logging.getLogger("ppds.matrix")

#: what a measurement may be called: it becomes a column name and part of plot file names
MEASUREMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9@%+._-]{0,99}")


@dataclass
class OpenCell:
    """A cell with its data loaded: its folder, its evaluators and what is left of them."""

    cell: Cell
    splits: Splits
    fingerprint: str
    cell_id: str
    cell_dir: Path
    evaluators: list[ResolvedPlugin]
    fitted: bool
    todo: list[tuple[ResolvedPlugin, str]]


#: errors of the run folder's storage: the run stops (resumably) instead of recording a failed row
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def reraise_storage(err: BaseException) -> None:
    """A full or read-only disk is not the plugin's failure: stop the run, keep what is done."""
    if isinstance(err, OSError) and err.errno in STORAGE_ERRNOS:
        raise err


class UnitRunner:
    """The units of a run (a cell's fit, one measurement) over one run folder: the sequential
    run (:meth:`run_cell`) and a worker (``_worker``) call the same methods."""

    def __init__(self, matrix: ResolvedMatrix, out: Path, progress: Progress, summary: RunSummary,
                 retry_skipped: bool = False, threads: int | None = None, device: str = "cpu"):
        self.matrix = matrix
        self.out = out
        self.progress = progress
        self.summary = summary
        self.results = out / RESULTS_FILE
        self.cache_dir = out / "cache"
        self.cache_dir.mkdir(exist_ok=True)
        inside(self.cache_dir.absolute(), out, "the cache folder")  # a planted link must not move the caches
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

    def open_cell(self, cell: Cell) -> OpenCell | None:
        """Load the cell's data, name its folder and say what is left; None when the dataset
        failed to load (its rows are then recorded failed, under the cell's own key)."""
        evaluators = evaluators_of(self.matrix, cell)
        try:
            splits, fingerprint = self.data(cell)
        except Exception as err:
            reraise_storage(err)
            # the dataset's failure is this cell's: keyed by the cell, so every cell keeps its row
            self._fail_cell(cell, f"unloaded-{cell.key[:16]}", evaluators,
                            f"loading dataset {cell.dataset_name!r} failed", err)
            return None
        cell_id = cell.cell_id(fingerprint)
        cell_dir = self.out / "cells" / cell_id
        fitted, todo = pending(cell, cell_id, evaluators, self.done, cell_dir)
        return OpenCell(cell, splits, fingerprint, cell_id, cell_dir, evaluators, fitted, todo)

    def enter_cell(self, oc: OpenCell) -> None:
        """Make the cell's folder (never through a planted link) and its ``cell.json``."""
        oc.cell_dir.mkdir(parents=True, exist_ok=True)
        inside(oc.cell_dir.absolute(), self.out, "the cell folder")  # a planted link must not move the cell's writes
        self._write_cell_json(oc.cell, oc.cell_id, oc.cell_dir, oc.fingerprint)

    def fit_cell(self, oc: OpenCell, failing: list[ResolvedPlugin]) -> tuple[FitOutcome | None, ImageSet] | None:
        """(outcome, the samples to measure): the cell's fit (loaded when on disk) or, for the
        real-data row, its private split; None when the fit failed (``failing``'s rows recorded)."""
        cell, splits = oc.cell, oc.splits
        if cell.is_reference_data:
            real_data_grid(cell.dataset_name, cell.label(), oc.cell_dir, splits.private)
            return None, splits.private
        try:
            if cell.budget.is_private:
                check_delta_for(cell.delta, len(splits.private))
            outcome = self.fits.fit(cell, oc.cell_dir, splits, cell.label())
        except Exception as err:
            reraise_storage(err)
            self._fail_cell(cell, oc.cell_id, failing, "generator fit failed", err)
            return None
        return outcome, outcome.samples

    def run_cell(self, cell: Cell) -> None:
        """The sequential run's unit order: the cell's fit, then each pending measurement."""
        label = cell.label()
        self.progress.cell(label)
        oc = self.open_cell(cell)
        if oc is None:
            return
        self.summary.cached += len(oc.evaluators) - len(oc.todo)
        self.progress.keep_evaluators([("eval", ev.name) for ev, _ in oc.todo])
        if not oc.todo and oc.fitted:
            log.info("%s: cached (%s), nothing to do", label, oc.cell_id)
            return
        self.enter_cell(oc)
        fitted = self.fit_cell(oc, [e for e, _ in oc.todo])
        if fitted is None:
            return
        outcome, synthetic = fitted
        for ev, mid in oc.todo:
            self.evaluate(oc, ev, mid, outcome, synthetic)

    def evaluate(self, oc: OpenCell, ev: ResolvedPlugin, mid: str, outcome: FitOutcome | None,
                 synthetic: ImageSet) -> list[dict[str, Any]]:
        """One measurement of an open cell (a unit): its rows, recorded."""
        return self._evaluate(oc.cell, oc.cell_id, oc.cell_dir, ev, mid, oc.splits, outcome, synthetic,
                              oc.cell.label())

    def _evaluate(self, cell, cell_id, cell_dir, ev: ResolvedPlugin, mid: str, splits: Splits,
                  outcome: FitOutcome | None, synthetic: ImageSet, label: str) -> list[dict[str, Any]]:
        workdir = cell_dir / "eval" / f"{ev.kind}-{ev.name}"
        inside(workdir.absolute(), cell_dir, "the measurement's workdir")  # nor point the rmtree outside
        if workdir.exists():
            shutil.rmtree(workdir)
        workdir.mkdir(parents=True)
        batch = uuid.uuid4().hex[:12]
        reason = unmet_need(getattr(ev.cls, "needs", frozenset()), cell, outcome, splits)
        unit = ("eval", ev.name)
        if reason:
            self.progress.unit_done(unit, None)  # nothing ran: no duration to learn from
            rows = [self._row(cell, cell_id, ev, mid, batch, outcome, status="skipped", error=reason)]
            self._record(rows, label)
            self.summary.computed += 1
            return rows
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
            reraise_storage(err)
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
        return rows

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


