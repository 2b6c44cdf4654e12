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
from ..atomic import NoFollowFileHandler, atomic_write_text
from ..budget import check_delta_for
from ..errors import ConfigError, PpdsError, RunStorageError, SkipMeasurement
from ..imageset import ImageSet, Splits
from ..interfaces import DatasetProvider, EvalContext, FitContext, Generator, Measurement
from ..safe_load import inside
from ._isolation import UnitError, isolation, run_isolated, stop_on_sigterm
from ._lock import RunLock
from ._workers import fit_in_workers, needs_worker_processes
from .cells import Cell, content_hash, expand_cells, in_shard, measurement_id, parse_shard
from .config import ResolvedMatrix, ResolvedPlugin, check_datasets_available, load_matrix
from .fit import FitOutcome, fit_and_save, load_fitted
from .results import RESULTS_FILE, append_rows, read_results
from .row import ResultRow

__all__ = ["run_matrix", "RunSummary", "unmet_need"]

log = logging.getLogger("ppds.matrix")

#: what a measurement may be called: it becomes a column name and part of plot file names
MEASUREMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9@%+._-]{0,99}")
#: row statuses that count as done: a re-run leaves them alone (failed ones are retried)
DONE = ("ok", "skipped")
#: images a shadow model fitted in worker processes draws (fit_and_save always samples; attacks draw their own)
SHADOW_SAMPLES = 64
_KNOWN_NEEDS = {"dp-sgd", "labels", "public", "shadow-models"}


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

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def unmet_need(needs: frozenset[str] | set[str], cell: Cell, outcome: FitOutcome | None,
               splits: Splits) -> str | None:
    """Why a measurement cannot apply to this cell (None if it can)."""
    gen_cls = cell.generator.cls if cell.generator else None
    for need in sorted(needs):
        if need == "dp-sgd":
            if gen_cls is None:
                return "needs DP-SGD parameters; the real-data reference has no generator"
            if not getattr(gen_cls, "trains_with_dp_sgd", False):
                return f"needs DP-SGD parameters; {gen_cls.name!r} does not train with the DP-SGD engine"
            if not cell.budget.is_private:
                return "needs DP-SGD parameters; this cell is the non-private (ε=∞) reference"
            if outcome is None or outcome.ledger.dp_sgd() is None:
                return "needs DP-SGD parameters; the generator's ledger lists no DP-SGD spend"
        elif need == "labels":
            if gen_cls is not None and not getattr(gen_cls, "class_conditional", True):
                return f"needs class-conditional samples; {gen_cls.name!r} is unconditional"
            if outcome is not None and outcome.samples.num_classes < 2:
                return "needs class-conditional samples; the samples carry a single class"
        elif need == "public":
            if splits.public is None:
                return "needs public data; give the dataset a `public:` set in the matrix"
        elif need == "shadow-models":
            pass  # real-data row: the release is the private split, a shadow release its own
            # training subset, so no fit is needed (ctx.generator None; ctx.fit_fresh skips)
        else:
            return f"needs {need!r}, which this version of ppds cannot provide (known: {sorted(_KNOWN_NEEDS)})"
    return None


#: errors of the run folder's storage: the run stops (resumably) instead of recording a failed row
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


def _reraise_storage(err: BaseException) -> None:
    """A full or read-only disk is not the plugin's failure: stop the run, keep what is done."""
    if isinstance(err, OSError) and err.errno in _STORAGE_ERRNOS:
        raise err


def _storage_message(out: Path, err: OSError) -> str:
    free = ""
    try:
        free = f", {shutil.disk_usage(out).free / 2**20:.1f} MiB free"
    except OSError:
        pass
    where = f" ({err.filename})" if err.filename else ""
    return (f"{out}: {err.strerror}{where}{free}; the run stopped with every finished cell and "
            "measurement kept: free space (or make the folder writable) and run the same command again")


def _no_shadow_fit(private: ImageSet, seed: int) -> Generator:
    """``fit_fresh`` of the real-data row: nothing to retrain (its shadows are the subsets)."""
    raise SkipMeasurement("the real-data reference has no generator to retrain; a shadow of "
                          "'release the private split' is its training subset itself")


class _Progress:
    """Rich progress bars for cells and training steps (or nothing, with --quiet)."""

    def __init__(self, quiet: bool, total: int):
        self.bar = None
        if quiet:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        from ..cli._output import err_console

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=err_console, transient=False)
        self.bar.start()
        self.cells = self.bar.add_task("cells", total=total)
        self.train = self.bar.add_task("training", total=1, visible=False)

    def cell(self, label: str) -> None:
        if self.bar:
            self.bar.update(self.cells, description=f"cells · {label}")

    def cell_done(self) -> None:
        if self.bar:
            self.bar.advance(self.cells)

    def training(self, label: str) -> Callable[[int, int, dict[str, Any]], None] | None:
        if not self.bar:
            return None
        bar, task = self.bar, self.train
        bar.reset(task, total=1, visible=True, description=f"  training {label}")

        def report(step: int, total: int, info: dict[str, Any]) -> None:
            extra = f" ε={info['epsilon']:.3g}" if isinstance(info.get("epsilon"), int | float) else (
                f" ε≤{info['epsilon_rdp_upper']:.3g}" if isinstance(info.get("epsilon_rdp_upper"), int | float) else "")
            bar.update(task, completed=step, total=max(total, 1), description=f"  training {label}{extra}")

        return report

    def training_done(self) -> None:
        if self.bar:
            self.bar.update(self.train, visible=False)

    def stop(self) -> None:
        if self.bar:
            self.bar.stop()


class _RunLog:
    """Python logging of ``ppds`` (and first-party plugins) into ``DIR/run.log``."""

    NAMES = ("ppds", "ppds_plugins", "ppds_core")

    def __init__(self, out: Path):
        self.handler = NoFollowFileHandler(out / "run.log", encoding="utf-8")  # a link there: refused
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.saved: list[tuple[logging.Logger, int, bool]] = []

    def __enter__(self) -> _RunLog:
        for name in self.NAMES:
            lg = logging.getLogger(name)
            self.saved.append((lg, lg.level, lg.propagate))
            lg.addHandler(self.handler)
            if lg.level == logging.NOTSET or lg.level > logging.INFO:
                lg.setLevel(logging.INFO)
            # the terminal shows progress bars and the summary; INFO lines go to run.log only
            # (some libraries install a root handler that would echo them)
            lg.propagate = False
        return self

    def __exit__(self, *exc) -> None:
        for lg, level, propagate in self.saved:
            lg.removeHandler(self.handler)
            lg.setLevel(level)
            lg.propagate = propagate
        self.handler.close()


class _Runner:
    def __init__(self, matrix: ResolvedMatrix, out: Path, progress: _Progress, summary: RunSummary,
                 retry_skipped: bool = False):
        self.matrix = matrix
        self.out = out
        self.progress = progress
        self.summary = summary
        self.results = out / RESULTS_FILE
        self.cache_dir = out / "cache"
        self.cache_dir.mkdir(exist_ok=True)
        inside(self.cache_dir, out, "the cache folder")  # a planted link must not move the caches
        final = ("ok",) if retry_skipped else DONE
        self.done = {r["measurement"]: r["status"] for r in read_results(out)
                     if r.get("measurement") and r.get("status") in final}
        self._data: dict[int, tuple[Splits, str]] = {}
        #: torch threads of each unit's child process (run_matrix sets it; see _isolation)
        self.threads: int | None = None

    # ------------------------------------------------------------------ data

    def data(self, cell: Cell) -> tuple[Splits, str]:
        if cell.dataset_index not in self._data:
            d = cell.dataset
            public = None
            if d.public is not None:
                pub = d.public.cls(d.public.config)
                assert isinstance(pub, DatasetProvider)
                public = pub.load()[0]
            provider = d.plugin.cls(d.plugin.config)
            assert isinstance(provider, DatasetProvider)
            splits = provider.splits(public=public)
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
        evaluators = [e for e in self.matrix.evaluators if e.selects(cell.generator_name, cell.epsilon)]
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
        pending = [(e, measurement_id(cell_id, e, cell.smoke)) for e in evaluators]
        fitted = cell.is_reference_data or (cell_dir / "fit.json").exists()
        if fitted:  # a refit (its folder deleted, or never finished) recomputes every measurement
            pending = [(e, mid) for e, mid in pending if mid not in self.done]
        self.summary.cached += len(evaluators) - len(pending)
        if not pending and fitted:
            log.info("%s: cached (%s), nothing to do", label, cell_id)
            return
        cell_dir.mkdir(parents=True, exist_ok=True)
        inside(cell_dir, self.out, "the cell folder")  # a planted link must not move the cell's writes
        self._write_cell_json(cell, cell_id, cell_dir, fingerprint)

        outcome: FitOutcome | None = None
        if cell.is_reference_data:
            synthetic = splits.private
        else:
            try:
                if cell.budget.is_private:
                    check_delta_for(cell.delta, len(splits.private))
                outcome = self._fit(cell, cell_dir, splits, label)
            except Exception as err:
                _reraise_storage(err)
                self._fail_cell(cell, cell_id, [e for e, _ in pending], "generator fit failed", err)
                return
            synthetic = outcome.samples
        for ev, mid in pending:
            self._evaluate(cell, cell_id, cell_dir, ev, mid, splits, outcome, synthetic, label)

    def _fit(self, cell: Cell, cell_dir: Path, splits: Splits, label: str) -> FitOutcome:
        gen = cell.generator
        assert gen is not None
        gen_cls: type[Generator] = gen.cls  # type: ignore[assignment]
        outcome = None
        if (cell_dir / "fit.json").exists():
            try:
                outcome = load_fitted(gen_cls, cell_dir)
                self.summary.loaded += 1
                log.info("%s: loaded the fitted model from %s", label, cell_dir)
            except Exception:
                log.exception("%s: could not load the saved model; fitting again", label)
                outcome = None
        if outcome is None:
            trainer = dict(self.matrix.config.trainer)
            ctx = FitContext(seed=cell.seed, public=splits.public, trainer=trainer,
                             workdir=cell_dir / "work", accountant=cell.accountant,
                             reproducible_noise=self.matrix.config.reproducible_noise)
            if needs_worker_processes(trainer):
                log.info("%s: fitting %s in its own DDP process group (log: %s)", label, gen.name,
                         cell_dir / "work" / "fit-workers.log")
                outcome = fit_in_workers(gen_cls, gen.config, splits.private, cell.budget, ctx, cell_dir,
                                         cell.samples, cell.seed)
            else:
                log.info("%s: fitting %s", label, gen.name)
                report = self.progress.training(label)

                def fit(send: Callable[[Any], None]) -> None:  # in the unit's child process
                    ctx.progress = (lambda step, total, info: send([step, total, info])) if report else None
                    fit_and_save(gen_cls, gen.config, splits.private, cell.budget, ctx, cell_dir,
                                 cell.samples, cell.seed)

                try:  # the child writes the cell folder; this process loads what it wrote
                    result = run_isolated(fit, timeout_min=gen.timeout_min, threads=self.threads,
                                          on_progress=(lambda m: report(*m)) if report else None)
                finally:
                    self.progress.training_done()
                if not result.ok:
                    log.error("%s: the %s fit failed: %s\n%s", label, gen.name, result.error, result.traceback)
                    raise result.exception()
                outcome = load_fitted(gen_cls, cell_dir)
                if outcome is None:
                    raise RuntimeError(f"the {gen.name} fit finished but left no {cell_dir / 'fit.json'}")
            self.summary.fits += 1
            log.info("%s: fitted in %.1fs, ε spent %s", label, outcome.seconds, outcome.ledger.epsilon_spent)
        return outcome

    def _fit_fresh(self, cell: Cell, splits: Splits, cell_dir: Path) -> Callable[[ImageSet, int], Generator]:
        """Shadow fits for attacks, cached like cells: ``cell_dir/shadows/<key>/`` holds what
        :func:`fit_and_save` writes, keyed by the shadow's seed and its training subset, and
        a re-run loads it instead of refitting (an interrupted LiRA resumes)."""
        gen = cell.generator
        assert gen is not None
        gen_cls: type[Generator] = gen.cls  # type: ignore[assignment]
        trainer = dict(self.matrix.config.trainer)

        def fit_fresh(private: ImageSet, seed: int) -> Generator:
            key = content_hash({"seed": seed, "train": private.fingerprint(), "n": len(private)})
            shadow_dir = cell_dir / "shadows" / key
            if (shadow_dir / "fit.json").exists():
                try:
                    outcome = load_fitted(gen_cls, shadow_dir)
                    if outcome is not None:
                        self.summary.shadows_loaded += 1
                        return outcome.generator
                except Exception:
                    log.exception("%s: could not load shadow %s; fitting again", cell.label(), key)
            shadow_dir.mkdir(parents=True, exist_ok=True)
            inside(shadow_dir, self.out, "the shadow folder")
            ctx = FitContext(seed=seed, public=splits.public, trainer=trainer,
                             workdir=shadow_dir / "work", accountant=cell.accountant,
                             reproducible_noise=self.matrix.config.reproducible_noise)
            if needs_worker_processes(trainer):  # a shadow model trains like the cell's own
                outcome = fit_in_workers(gen_cls, gen.config, private, cell.budget, ctx, shadow_dir,
                                         SHADOW_SAMPLES, seed)
            else:
                outcome = fit_and_save(gen_cls, gen.config, private, cell.budget, ctx, shadow_dir,
                                       SHADOW_SAMPLES, seed)
                assert outcome is not None, "a single-process fit always writes"
            self.summary.shadow_fits += 1
            log.info("%s: fitted shadow %s (seed %d, %d images) in %.1fs", cell.label(), key, seed,
                     len(private), outcome.seconds)
            return outcome.generator

        return fit_fresh

    def _evaluate(self, cell, cell_id, cell_dir, ev: ResolvedPlugin, mid: str, splits: Splits,
                  outcome: FitOutcome | None, synthetic: ImageSet, label: str) -> None:
        workdir = cell_dir / "eval" / f"{ev.kind}-{ev.name}"
        inside(workdir, cell_dir, "the measurement's workdir")  # nor point the rmtree outside
        if workdir.exists():
            shutil.rmtree(workdir)
        workdir.mkdir(parents=True)
        batch = uuid.uuid4().hex[:12]
        reason = unmet_need(getattr(ev.cls, "needs", frozenset()), cell, outcome, splits)
        if reason:
            self._record([self._row(cell, cell_id, ev, mid, batch, outcome, status="skipped", error=reason)], label)
            self.summary.computed += 1
            return
        ctx = EvalContext(
            splits=splits, synthetic=synthetic,
            generator=outcome.generator if outcome else None,
            budget=cell.budget, ledger=outcome.ledger if outcome else None, seed=cell.seed,
            cache_dir=self.cache_dir, workdir=workdir, trainer=dict(self.matrix.config.trainer),
            fit_fresh=self._fit_fresh(cell, splits, cell_dir) if outcome else _no_shadow_fit,
        )
        summary = self.summary

        def evaluate(send: Callable[[Any], None]) -> dict[str, Any]:  # in the unit's child process
            shadows = (summary.shadow_fits, summary.shadows_loaded)
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

        def count_shadows(message: list[int]) -> None:
            summary.shadow_fits += message[0]
            summary.shadows_loaded += message[1]

        t0 = time.perf_counter()
        result = run_isolated(evaluate, timeout_min=ev.timeout_min, threads=self.threads,
                              on_progress=count_shadows)
        seconds = time.perf_counter() - t0
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


def _boards_current(out: Path, summary: RunSummary) -> bool:
    """True when this run wrote nothing and the boards are newer than the results."""
    if summary.fits or summary.computed or summary.failed:
        return False
    results = out / RESULTS_FILE
    boards = [out / "leaderboard.json", out / "leaderboard-smoke.json"]
    existing = [b for b in boards if b.exists()]
    if not results.exists() or not existing:
        return not results.exists()
    if not all(b.with_name(f"{b.stem}-full.md").exists() for b in existing):
        return False  # boards written before the compact / full split: write both now
    return all(b.stat().st_mtime >= results.stat().st_mtime for b in existing)


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
        return RunSummary(out=Path(out) if out else None, cells=cells, check_only=True)
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
        run_log = _RunLog(out)
    except OSError as err:
        lock.release()
        raise ConfigError(f"--out {out}: cannot write the run log there ({err.strerror}); "
                          "pass a folder you can write to") from None
    progress = _Progress(quiet, len(cells))
    with lock, run_log, isolation(matrix.config.threads) as unit_threads, stop_on_sigterm():
        log.info("ppds %s: matrix %r from %s, %d cells%s%s", __version__, matrix.config.name, matrix.source,
                 len(cells), f", shard {shard_t[0]}/{shard_t[1]}" if shard_t else "", ", smoke" if smoke else "")
        runner = _Runner(matrix, out, progress, summary, retry_skipped=retry_skipped)
        runner.threads = unit_threads
        try:
            for cell in cells:
                runner.run_cell(cell)
                progress.cell_done()
        except OSError as err:
            if err.errno in _STORAGE_ERRNOS | {errno.EACCES}:
                log.error("stopped: %s", err)
                raise RunStorageError(_storage_message(out, err)) from None
            raise
        finally:
            progress.cell("done")
            progress.stop()
        summary.seconds = time.perf_counter() - t0
        try:
            from ..report.leaderboard import write_leaderboards

            if _boards_current(out, summary):
                log.info("nothing new: the leaderboard in %s is current", out)
            else:
                summary.outputs = write_leaderboards(out)
        except PpdsError:
            raise
        except Exception as err:  # the numbers are on disk; a rendering bug must not hide them
            log.exception("writing the leaderboard of %s failed", out)
            summary.failed.append({"cell": "-", "label": "leaderboard", "name": "leaderboard",
                                   "kind": "board", "error": f"{type(err).__name__}: {err}"})
        log.info("done in %.1fs: %d fits, %d loaded, %d measurements computed, %d cached, %d failed",
                 summary.seconds, summary.fits, summary.loaded, summary.computed, summary.cached,
                 len(summary.failed))
    return summary
