"""The engine's periodic checkpoints: a Lightning checkpoint every N private steps, resumed by plan.

``fit_private`` with ``FitContext.checkpoint_dir`` set adds
:class:`_PeriodicCheckpoint`: every ``checkpoint_every`` private steps (and at
the end of the step in which SIGTERM/SIGUSR1 arrived) the whole Lightning
checkpoint — module weights (EMA included: a submodule), every optimizer,
LR schedulers, Lightning's loop counters, the engine's state (step count,
accountant history, the plan key, the non-mechanism RNG states; see
``DPSGDState.state_dict``) — is written atomically to
``<checkpoint_dir>/dp_sgd.ckpt``. At the start of the next ``fit_private`` of
the same plan, :func:`resumable_checkpoint` finds it (read with the safe loader
only) and the fit continues from it through Lightning's ``ckpt_path``, the
resume path the engine already checks (schedule fingerprint, history).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from torch.utils.data import TensorDataset

from ..imageset import ImageSet
from ..safe_load import load_tensors
from ._state import DPSGDState
from .checkpoint import (
    Preemption,
    data_fingerprint,
    plan_key,
    remove_partial_writes,
    save_tensors_atomic,
)

__all__ = ["ENGINE_CHECKPOINT", "engine_plan_key", "resumable_checkpoint", "PeriodicCheckpoint"]

log = logging.getLogger("ppds.privacy")

#: the engine's checkpoint file in ``FitContext.checkpoint_dir``
ENGINE_CHECKPOINT = "dp_sgd.ckpt"
#: the engine callback's key in a Lightning checkpoint (``_DPSGDCallback.state_key``)
_STATE_KEY = "ppds_dp_sgd"


def _data_identity(data: Any) -> str:
    """A fingerprint of the private data when its tensors are at hand, else its length."""
    if isinstance(data, ImageSet):
        return data_fingerprint(data.images, data.labels)
    if isinstance(data, TensorDataset):
        return data_fingerprint(*data.tensors)
    try:
        return f"len={len(data)}"
    except TypeError:
        return "unknown"


def engine_plan_key(state: DPSGDState, data: Any, module: Any, resume_key: Any) -> str:
    """What must agree for a checkpoint to be resumed: the schedule (N, q, T, σ, C, accountant,
    δ), the target ε, the other spends, the seed and noise mode, the data, the module's class
    and whatever the generator adds (``resume_key``: its config, a release's fingerprint)."""
    sch = state.schedule
    return plan_key("dp-sgd", sch.fingerprint(), sch.target_epsilon, list(sch.other_spends),
                    sch.secure_rng, sch.grad_sample_mode, state.seed, state.reproducible_noise,
                    _data_identity(data), f"{type(module).__module__}.{type(module).__qualname__}",
                    resume_key)


def resumable_checkpoint(folder: Path | None, key: str) -> Path | None:
    """The engine checkpoint in ``folder`` when it was written under ``key``, else None.

    The file is read with the safe loader first: one holding pickled code is
    refused (``UnsafeFileError``, one line) before Lightning sees it. A checkpoint
    of another plan is logged and left to be overwritten by the fresh fit.
    """
    if folder is None:
        return None
    remove_partial_writes(folder)
    path = Path(folder) / ENGINE_CHECKPOINT
    if not path.is_file():
        return None
    ckpt = load_tensors(path, "Lightning checkpoint")
    saved = ckpt.get("callbacks", {}).get(_STATE_KEY, {}) if isinstance(ckpt, dict) else {}
    if not isinstance(saved, dict) or saved.get("plan_key") != key:
        log.warning("%s: a checkpoint of a different plan (other config, data, budget or seed); "
                    "not resumed, training from scratch (it will be overwritten)", path)
        return None
    return path


class PeriodicCheckpoint(pl.Callback):
    """Every ``every`` private steps, and when a preemption signal arrived, write the checkpoint;
    after a signal, raise :class:`~ppds_core.privacy.checkpoint.FitInterrupted`."""

    def __init__(self, state: DPSGDState, folder: Path, every: int, preempt: Preemption) -> None:
        self.st, self.folder, self.every, self.preempt = state, Path(folder), max(1, int(every)), preempt

    @property
    def path(self) -> Path:
        return self.folder / ENGINE_CHECKPOINT

    def on_train_start(self, trainer, pl_module) -> None:
        # Lightning has just put its SIGTERM handler in (it raises SIGTERMException at the
        # next batch or epoch end, maybe before our checkpoint); ours alone decides during
        # training, and Lightning restores ours when training ends
        self.preempt.reinstall()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        st = self.st
        if st.finished:  # the model is about to be saved; nothing left to resume
            return
        due = st.stepped_this_batch and st.steps_done % self.every == 0
        stop = self._stop_requested(trainer)
        if due or stop:
            self.save(trainer)
        if stop:
            raise self.preempt.interrupted(st.steps_done, st.total_steps, self.path)

    def _stop_requested(self, trainer: pl.Trainer) -> bool:
        """Whether to stop after this step; under DDP rank 0 decides for all (ranks that got
        the signal a step apart would otherwise wait for each other for ever)."""
        if trainer.world_size == 1:
            return self.preempt.requested
        import torch

        flag = torch.tensor([1 if self.preempt.requested else 0], device=trainer.strategy.root_device)
        torch.distributed.broadcast(flag, src=0)
        return bool(flag.item())

    def save(self, trainer: pl.Trainer) -> None:
        """The Lightning checkpoint, written by rank 0 atomically (temp name, fsync, rename)."""
        # the full checkpoint: optimizers, LR schedulers and callbacks too (a dump, not a load)
        checkpoint = trainer._checkpoint_connector.dump_checkpoint(False)
        if trainer.is_global_zero:
            save_tensors_atomic(self.path, checkpoint)
            log.debug("checkpoint at step %d of %d: %s", self.st.steps_done, self.st.total_steps,
                      self.path)
        trainer.strategy.barrier("ppds checkpoint")
