"""A cell's generator and the shadow models attacks ask for: loaded when on disk, else fitted.

The runner decides *which* fits a run needs; this module does one. Every fit
runs isolated (``_isolation``: a unit in a forked child, or, for a trainer that
needs several processes, DDP worker processes, ``_workers``) and goes through
:func:`~ppds_core.matrix.fit.fit_and_save`, the one fit path, so a cell's
model and a shadow model are the same kind of artifact. The counts land in the
run's :class:`~ppds_core.matrix.runner.RunSummary`.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import SkipMeasurement
from ..imageset import ImageSet, Splits
from ..interfaces import EvalContext, FitContext, Generator
from ..safe_load import inside
from ._console import Progress
from ._isolation import run_isolated
from ._workers import fit_in_workers, needs_worker_processes
from .cells import Cell, content_hash
from .config import ResolvedMatrix
from .fit import FitOutcome, fit_and_save, load_fitted

if TYPE_CHECKING:
    from .runner import RunSummary

__all__ = ["CellFits", "no_shadow_fit", "shadow_key"]

log = logging.getLogger("ppds.matrix")


def no_shadow_fit(private: ImageSet, seed: int) -> Generator:
    """``fit_fresh`` of the real-data row: nothing to retrain (its shadows are the subsets)."""
    raise SkipMeasurement("the real-data reference has no generator to retrain; a shadow of "
                          "'release the private split' is its training subset itself")


def shadow_key(private: ImageSet, seed: int) -> str:
    """The folder name of a shadow fit under ``cells/<cell>/shadows/``: its seed and training set."""
    return content_hash({"seed": seed, "train": private.fingerprint(), "n": len(private)})


def _drop_checkpoint(out_dir: Path) -> None:
    """A finished fit's checkpoint is spent: kept, a deliberate refit (``fit.json`` deleted)
    would resume it instead of drawing new noise, and it holds a model's worth of disk."""
    shutil.rmtree(out_dir / "checkpoint", ignore_errors=True)


class CellFits:
    """The fits of one run: :meth:`fit` for a cell, :meth:`shadow_fitter` for an attack's shadows."""

    def __init__(self, matrix: ResolvedMatrix, out: Path, progress: Progress, summary: RunSummary,
                 threads: int | None, device: str):
        self.matrix = matrix
        self.out = out
        self.progress = progress
        self.summary = summary
        #: torch threads of each unit's child process (see _isolation)
        self.threads = threads
        #: the run's device (ppds_core.device.resolve_device), handed to every FitContext
        self.device = device
        #: inside an evaluator's child process: the channel to the runner (shadow-fit notes)
        #: and the shadow-fit count when the unit started
        self.unit_send: Callable[[Any], None] | None = None
        self.unit_shadows0 = 0

    def _context(self, seed: int, splits: Splits, out_dir: Path, accountant: str) -> FitContext:
        """A fit's context; its checkpoints go to ``out_dir/checkpoint`` (a cell's or a shadow's
        folder), which outlives the fit's process: a killed fit resumes there (issue 17)."""
        return FitContext(seed=seed, public=splits.public, trainer=dict(self.matrix.config.trainer),
                          workdir=out_dir / "work", accountant=accountant,
                          reproducible_noise=self.matrix.config.reproducible_noise, device=self.device,
                          checkpoint_dir=out_dir / "checkpoint",
                          checkpoint_every=self.matrix.config.checkpoint_every)

    def fit(self, cell: Cell, cell_dir: Path, splits: Splits, label: str) -> FitOutcome:
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
        if outcome is not None:
            self.progress.skip_fit()
        else:
            unit = ("fit", gen.name, cell.budget.is_private)
            self.progress.unit_start(unit, f"fit {gen.name} {cell.budget.label()}")
            trainer = dict(self.matrix.config.trainer)
            ctx = self._context(cell.seed, splits, cell_dir, cell.accountant)
            if needs_worker_processes(trainer):
                log.info("%s: fitting %s in its own DDP process group (log: %s)", label, gen.name,
                         cell_dir / "work" / "fit-workers.log")
                outcome = fit_in_workers(gen_cls, gen.config, splits.private, cell.budget, ctx, cell_dir,
                                         cell.samples, cell.seed, timeout_min=gen.timeout_min)
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
            _drop_checkpoint(cell_dir)
            self.summary.fits += 1
            self.progress.unit_done(unit, outcome.seconds)
            log.info("%s: fitted in %.1fs, ε spent %s", label, outcome.seconds, outcome.ledger.epsilon_spent)
        return outcome

    def shadow_fitter(self, cell: Cell, splits: Splits, cell_dir: Path,
                      ev_ctx: EvalContext) -> Callable[[ImageSet, int], Generator]:
        """``ev_ctx.fit_fresh``: shadow fits for attacks, cached like cells: ``cell_dir/shadows/<key>/``
        holds what :func:`fit_and_save` writes (``ev_ctx.shadow_samples`` images with the model),
        keyed by the shadow's seed and its training subset, and a re-run loads it instead of
        refitting (an interrupted LiRA resumes)."""
        gen = cell.generator
        assert gen is not None
        gen_cls: type[Generator] = gen.cls  # type: ignore[assignment]
        trainer = dict(self.matrix.config.trainer)

        def fit_fresh(private: ImageSet, seed: int) -> Generator:
            key = shadow_key(private, seed)
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
            inside(shadow_dir.absolute(), self.out, "the shadow folder")
            ctx = self._context(seed, splits, shadow_dir, cell.accountant)
            if needs_worker_processes(trainer):  # a shadow model trains like the cell's own
                outcome = fit_in_workers(gen_cls, gen.config, private, cell.budget, ctx, shadow_dir,
                                         ev_ctx.shadow_samples, seed)
            else:
                outcome = fit_and_save(gen_cls, gen.config, private, cell.budget, ctx, shadow_dir,
                                       ev_ctx.shadow_samples, seed)
                assert outcome is not None, "a single-process fit always writes"
            _drop_checkpoint(shadow_dir)
            self.summary.shadow_fits += 1
            if self.unit_send is not None:  # the runner's unit line: "shadow k fitted"
                done = self.summary.shadow_fits - self.unit_shadows0
                self.unit_send({"note": f"{done} shadow fit{'s' if done > 1 else ''} done, "
                                        f"last {outcome.seconds:.0f}s"})
            log.info("%s: fitted shadow %s (seed %d, %d images) in %.1fs", cell.label(), key, seed,
                     len(private), outcome.seconds)
            return outcome.generator

        return fit_fresh

