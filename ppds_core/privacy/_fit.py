"""``fit_private``: a DPSGDModule trained on private data under a plan, returning the ledger.

The entry point: data coercion (:func:`_as_dataset` — an ImageSet, a Dataset,
or a Poisson loader and nothing else), the plan resolved once
(:func:`~ppds_core.privacy.plan.plan_dp_sgd`), the run state, the Lightning
trainer and the engine's callback (:class:`_DPSGDCallback`: batch
bookkeeping, the exact stop at T, progress, checkpoints). Also
:func:`public_copy`, the hook-free twin for post-processing.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.exceptions import SIGTERMException
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ..errors import BudgetError
from ..imageset import ImageSet
from ..interfaces import FitContext
from ..safe_load import load_tensors
from ._checkpoint import PeriodicCheckpoint, engine_plan_key, resumable_checkpoint
from ._module import DPSGDModule
from ._opacus_lightning import build_trainer
from ._poisson import is_poisson_loader
from ._state import DPSGDState, _derived_seed, _secure_generator
from .checkpoint import Preemption, preemption
from .ledger import Ledger
from .plan import DPSGDPlan, plan_dp_sgd

log = logging.getLogger("ppds.privacy")

__all__ = ["fit_private", "public_copy"]


# --------------------------------------------------------------------------- the callback


class _DPSGDCallback(pl.Callback):
    """Engine-side Lightning hooks: batch bookkeeping, exact stop, progress, checkpoints."""

    state_key = "ppds_dp_sgd"

    def __init__(self, state: DPSGDState) -> None:
        self.st = state

    def on_fit_start(self, trainer, pl_module) -> None:
        st = self.st
        st.world_size, st.rank = trainer.world_size, trainer.global_rank
        st.sampler_generator = st.secure_generator or st.mechanism_generator(
            "poisson", st.rank, st.world_size)
        if st.pending_checkpoint is not None:
            st.load_state_dict(st.pending_checkpoint)
            st.pending_checkpoint = None
            log.info("DP-SGD resumed from a checkpoint at step %d of %d", st.steps_done,
                     st.total_steps)
        # each rank draws its own randomness (fake latents, diffusion noise) after the common
        # start; weights were broadcast from rank 0
        torch.manual_seed(_derived_seed(st.seed, "global", st.rank, st.steps_done))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        st = self.st
        if st.finished:
            trainer.should_stop = True
        st.stepped_this_batch = False
        if st.pending_rng is not None:  # a resumed run's first batch
            st.restore_global_rng()
        if st.grads is not None:
            st.grads.clear_stale()
        return None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        st = self.st
        if st.finished:
            trainer.should_stop = True
        if not st.is_global_zero or not st.stepped_this_batch:
            return
        if (st.progress is None and not trainer.loggers) or not (
                st.steps_done % st.progress_every == 0 or st.finished):
            return
        info = st.progress_info()
        if st.progress is not None:
            st.progress(st.steps_done, st.total_steps, info)
        metrics = {f"dp/{k}": float(v) for k, v in info.items() if isinstance(v, (int, float))}
        for lg in trainer.loggers:  # opt-in trackers (trainer: {logger: …}): ε spent per step
            lg.log_metrics(metrics, step=st.steps_done)

    def state_dict(self) -> dict[str, Any]:
        return self.st.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # applied in on_fit_start, once the generators exist
        self.st.pending_checkpoint = state_dict


# --------------------------------------------------------------------------- entry point


def _as_dataset(data: Dataset | ImageSet | DataLoader) -> tuple[Dataset, Any]:
    if isinstance(data, ImageSet):
        return TensorDataset(data.images, data.labels), None
    if isinstance(data, DataLoader):
        if not is_poisson_loader(data):
            raise BudgetError(
                f"the private data loader ({type(data).__name__} with "
                f"{type(getattr(data, 'batch_sampler', None)).__name__}) does not draw Poisson "
                "batches, and the accountant's epsilon holds only for Poisson sampling; pass the "
                "Dataset (or ImageSet) and let fit_private build the Poisson loader"
            )
        collate = getattr(data.collate_fn, "collate_fn", data.collate_fn)
        return data.dataset, collate
    if isinstance(data, Dataset) or hasattr(data, "__getitem__"):
        return data, None
    raise TypeError(f"private data must be an ImageSet, Dataset or DataLoader, got {type(data)}")


def fit_private(
    module: DPSGDModule,
    data: Dataset | ImageSet | DataLoader,
    plan: DPSGDPlan,
    ctx: FitContext | None = None,
    *,
    ckpt_path: str | Path | None = None,
    callbacks: Sequence[pl.Callback] = (),
    trainer_overrides: dict[str, Any] | None = None,
    resume_key: Any = None,
) -> Ledger:
    """Train ``module`` with DP-SGD on ``data`` under ``plan``; return the ledger.

    ``ctx`` supplies the seed, the trainer options, the working directory,
    the default accountant, the progress callback and the checkpoint folder.
    With ``ctx.checkpoint_dir`` the run writes its checkpoint there every
    ``ctx.checkpoint_every`` private steps and continues from one of the same
    plan (``resume_key``: what else the generator's plan depends on, e.g. its
    config; ``module.dp.resumed_from`` says from which step); SIGTERM/SIGUSR1
    then write a checkpoint at the end of the current step and raise
    :class:`~ppds_core.privacy.checkpoint.FitInterrupted`. ``ckpt_path``
    resumes a given checkpoint of the same plan (e.g. one written by a
    ``ModelCheckpoint`` passed in ``callbacks``). After the call the module is
    a plain module again (per-sample hooks removed) and ``module.dp`` still
    describes the run.
    """
    if not isinstance(module, DPSGDModule):
        raise TypeError("fit_private trains a DPSGDModule subclass")
    ctx = ctx or FitContext()
    dataset, collate = _as_dataset(data)
    schedule = plan_dp_sgd(plan, len(dataset), default_accountant=ctx.accountant)
    secure = _secure_generator() if schedule.secure_rng else None
    state = DPSGDState(
        schedule=schedule, seed=ctx.seed, progress=ctx.progress, secure_generator=secure,
        reproducible_noise=bool(ctx.reproducible_noise),
        progress_every=max(1, int(plan.progress_every or schedule.total_steps // 10)),
        dataset=dataset, collate_fn=collate, num_workers=plan.num_workers,
        max_physical_batch_size=plan.max_physical_batch_size,
    )
    state.noise_generator = secure or state.mechanism_generator("noise")
    object.__setattr__(module, "_dp_state", state)
    folder = ctx.checkpoint_dir if ckpt_path is None else None
    if ckpt_path is not None:  # a checkpoint is a pickle: refuse one holding code, in one line
        load_tensors(ckpt_path, "Lightning checkpoint")
    elif folder is not None:  # (read with the same safe loader there)
        state.plan_key = engine_plan_key(state, data, module, resume_key)
        ckpt_path = resumable_checkpoint(folder, state.plan_key)

    with _quiet_lightning(), preemption(folder is not None) as preempt:
        periodic = ([PeriodicCheckpoint(state, folder, ctx.checkpoint_every, preempt)]
                    if folder is not None else [])
        trainer = build_trainer(
            {**ctx.trainer, **(trainer_overrides or {})},
            # a margin epoch: a resumed mid-epoch run restarts Lightning's epoch iterator;
            # the callback stops at exactly T private steps either way
            max_epochs=-(-schedule.total_steps // schedule.steps_per_epoch) + 1,
            callbacks=[*callbacks, _DPSGDCallback(state), *periodic],
            default_root_dir=ctx.workdir,
        )
        _fit_trainer(trainer, module, state, ckpt_path, preempt)
    state.dataset = state.collate_fn = None  # keep no reference to the private data
    if state.steps_done < schedule.total_steps:
        state.notes.append(
            f"training ended after {state.steps_done} of {schedule.total_steps} planned steps"
        )
    return state.ledger()


def _fit_trainer(trainer: pl.Trainer, module: DPSGDModule, state: DPSGDState,
                 ckpt_path: str | Path | None, preempt: Preemption) -> None:
    """``trainer.fit`` from ``ckpt_path`` (already read with the safe loader), hooks removed after."""
    try:
        trainer.fit(module, ckpt_path=str(ckpt_path) if ckpt_path is not None else None,
                    weights_only=True)
    except SIGTERMException:  # Lightning's own stop on SIGTERM (our callback checkpoints first)
        if not preempt.requested:
            raise
        if not state.finished:  # (after the last step the fit is complete: it may be saved)
            raise preempt.interrupted(state.steps_done, state.total_steps, None) from None
    finally:
        if state.grads is not None:
            state.grads.remove()
            state.grads = None


# --------------------------------------------------------------------------- helpers


@contextmanager
def _quiet_lightning() -> Iterator[None]:
    """No 'GPU available' banners or tips in a matrix run's output; warnings stay."""
    loggers = [logging.getLogger(n) for n in ("pytorch_lightning", "lightning.pytorch",
                                               "lightning_fabric", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")
            # Opacus hooks on a first layer whose input needs no grad: expected, harmless
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            # mid-epoch resume: the engine restores the Poisson sampler's RNG itself
            warnings.filterwarnings("ignore", message=".*checkpoint that ended before the epoch")
            # frozen copies (EMA, pretrained priors) are in eval mode on purpose
            warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def public_copy(module: nn.Module) -> nn.Module:
    """A detached copy of a private module's current weights, with no DP hooks.

    Using the private module's released weights is post-processing; a copy
    keeps that use from touching the per-sample bookkeeping (DP-GAN's
    generator step against the discriminator).
    """
    twin = copy.deepcopy(module)
    for m in twin.modules():
        m._forward_hooks.clear()
        m._forward_pre_hooks.clear()
        m._backward_hooks.clear()
        if hasattr(m, "_backward_pre_hooks"):
            m._backward_pre_hooks.clear()
        for attr in ("autograd_grad_sample_hooks", "activations", "max_batch_len",
                     "ft_compute_sample_grad"):
            if attr in m.__dict__:
                del m.__dict__[attr]
        m.__dict__.pop("forward", None)
    for p in twin.parameters():
        for attr in ("grad_sample", "_forward_counter", "_current_grad_sample", "_norm_sample",
                     "summed_grad"):
            if hasattr(p, attr):
                delattr(p, attr)
        p.grad = None
    return twin
