"""The LightningModule base of private training, and its optimizer attachment.

:class:`DPSGDModule` is what a generator subclasses: it names the private
module and optimizer, calls :meth:`~DPSGDModule.private_step` once per Poisson
batch, and may step public optimizers on post-processed weights. :func:`_attach`
puts the per-sample gradient machinery (``_grad_modes``) and the Opacus DP
optimizer on it, or — at ε = ∞ — the plain optimizer with
:func:`_sum_over_expected_batch` as the identical step without clipping or noise.
Each private step adds one to ``dp.steps_done``, which is the run's privacy record.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..errors import ConfigError
from ._grad_modes import PerSampleGradients, make_dp_optimizer
from ._opacus_lightning import DPDDPStrategy
from ._poisson import PoissonDataLoader
from ._state import DPSGDState, _derived_seed

log = logging.getLogger("ppds.privacy")

__all__ = ["DPSGDModule"]


class DPSGDModule(pl.LightningModule):
    """Base LightningModule of a generator part that trains with DP-SGD.

    Implement :meth:`private_module`, :meth:`configure_private_optimizer`,
    ``training_step`` (calling :meth:`private_step` once per batch) and,
    optionally, :meth:`configure_public_optimizers`. Do not override
    ``configure_optimizers``; train it with :func:`fit_private` only.
    """

    def __init__(self) -> None:
        super().__init__()
        # manual optimisation: the engine owns the private step (ghost clipping needs
        # two backward passes; public steps need their own gradient averaging)
        self.automatic_optimization = False
        object.__setattr__(self, "_dp_state", None)

    def __getstate__(self) -> dict[str, Any]:
        # a copy or a pickle of the module is not being trained: leave the engine's
        # run-time state (generators, optimizer, data) behind
        state = dict(super().__getstate__())
        state["_dp_state"] = None
        return state

    # -- to implement ------------------------------------------------------------------

    def private_module(self) -> nn.Module:
        """The (one) module whose parameters train with DP-SGD."""
        raise NotImplementedError(f"{type(self).__name__} must implement private_module()")

    def configure_private_optimizer(self) -> torch.optim.Optimizer:
        """A plain torch optimizer over ``private_module()``'s parameters."""
        raise NotImplementedError(f"{type(self).__name__} must implement configure_private_optimizer()")

    def configure_public_optimizers(self) -> Sequence[torch.optim.Optimizer]:
        """Optimizers of parameters that never see private data (e.g. a GAN's generator)."""
        return ()

    # -- provided ------------------------------------------------------------------------

    @property
    def dp(self) -> DPSGDState:
        state = self.__dict__.get("_dp_state")
        if state is None:
            raise RuntimeError(f"{type(self).__name__} is not being trained by fit_private()")
        return state

    def configure_optimizers(self):
        st = self.dp
        private = self.private_module()
        opt = self.configure_private_optimizer()
        private_params = {id(p) for p in private.parameters()}
        for group in opt.param_groups:
            for p in group["params"]:
                if id(p) not in private_params:
                    raise ValueError(
                        "configure_private_optimizer() holds a parameter outside private_module(); "
                        "its per-sample gradient would not be clipped"
                    )
        publics = list(self.configure_public_optimizers() or ())
        for pub in publics:
            for group in pub.param_groups:
                if any(id(p) in private_params for p in group["params"]):
                    raise ValueError(
                        "a public optimizer updates a parameter of private_module(); "
                        "that would step on private data without clipping or noise"
                    )
        _attach(st, self.trainer, private, opt)
        if st.schedule.private:  # Opacus calls it after noise and 1/E, before the inner step
            st.optimizer.attach_step_hook(lambda dp_optimizer: self.on_private_release(dp_optimizer))
        return [st.optimizer, *publics]

    def on_private_release(self, dp_optimizer) -> None:
        """Observation hook: called once per private step (not per physical slice) after
        clipping, summing, noise and the division by E[B], right before the inner
        optimizer steps; ``p.grad`` of each private parameter is what the step releases.
        For audits (``dpsgd-audit``); it must not modify anything. Under DDP it runs on
        each rank before the all-reduce (rank 0's ``p.grad`` holds the noise)."""

    def private_step(self, per_sample_losses: torch.Tensor, rows_per_example: int = 1,
                     _keep_running_sum: bool = False) -> None:
        """One DP-SGD step on this batch's per-example losses (shape (B,)).

        ``rows_per_example``: K when the private module sees K rows per example
        (e.g. DPDM's noise multiplicity) and each loss already averages its K rows;
        the engine then sums each example's K row gradients before clipping, so
        the sensitivity stays one clipped gradient per example.
        """
        st = self.dp
        self._check_losses(per_sample_losses)
        if st.stepped_this_batch:
            raise RuntimeError(
                "private_step was called twice on one Poisson batch; the accountant counts "
                "one step per sampled batch"
            )
        if st.finished:  # e.g. resumed from a checkpoint taken at T: nothing left to spend
            self.trainer.should_stop = True
            return
        lopt = self._lightning_optimizer(st.optimizer)
        if not _keep_running_sum:  # (private_step_in_chunks has summed earlier slices already)
            st.optimizer.zero_grad(set_to_none=True)
        st.stepped_this_batch = True
        if st.schedule.private:
            if per_sample_losses.shape[0] == 0:
                st.grads.empty_batch()
            else:
                st.grads.backward(per_sample_losses, st.optimizer, rows_per_example)
            lopt.step()
        else:
            per_sample_losses.sum().backward()
            _sum_over_expected_batch(st)
            lopt.step()
        st.steps_done += 1  # the privacy record: (σ, q) are the schedule's, T is this count
        st.last_loss = float(per_sample_losses.detach().mean()) if per_sample_losses.numel() else math.nan

    def private_step_in_chunks(self, batch: Sequence[torch.Tensor],
                               per_example_losses: Callable[..., torch.Tensor],
                               rows_per_example: int = 1) -> None:
        """:meth:`private_step` for a Poisson batch too large for one forward/backward.

        ``per_example_losses(*chunk)`` maps a slice of ``batch`` (every tensor cut
        along dim 0) to its per-example losses. Each slice of at most
        ``plan.max_physical_batch_size`` examples runs forward and backward on its
        own; its per-example gradients are clipped and added to the running sum
        (Opacus' skipped steps keep the sum), and only the last slice adds the noise
        and steps, once. So the update, the noise and the ledger are exactly those
        of one :meth:`private_step` on the whole batch, while memory holds one slice.
        With no limit set, or a batch that fits, this *is* one :meth:`private_step`.
        """
        st = self.dp
        n = int(batch[0].shape[0])
        size = st.max_physical_batch_size
        if size is None or n <= size or st.finished or st.stepped_this_batch:
            self.private_step(per_example_losses(*batch), rows_per_example)
            return
        private = st.schedule.private  # (plan_dp_sgd refused 'ghost' with a physical size;
        # 'bk' leaves each slice's clipped sum in p.grad, which the skipped step accumulates)
        starts = range(0, n, size)
        st.optimizer.zero_grad(set_to_none=True)
        for start in starts[:-1]:  # sum these rows' (clipped) gradients; no noise, no step yet
            losses = per_example_losses(*(t[start:start + size] for t in batch))
            self._check_losses(losses)
            if not private:  # ε = ∞: plain gradients accumulate in p.grad
                losses.sum().backward()
                continue
            st.grads.backward(losses, st.optimizer, rows_per_example)
            st.optimizer.signal_skip_step(do_skip=True)
            st.optimizer.step()
            st.optimizer.zero_grad(set_to_none=True)  # drops grad_sample, keeps the running sum
        last = starts[-1]
        self.private_step(per_example_losses(*(t[last:] for t in batch)), rows_per_example,
                          _keep_running_sum=True)

    @staticmethod
    def _check_losses(per_sample_losses: torch.Tensor) -> None:
        if per_sample_losses.ndim != 1:
            raise ValueError(
                f"private_step needs one loss per example, shape (B,), got "
                f"{tuple(per_sample_losses.shape)}; reduce other dimensions per example first"
            )

    def public_step(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        """A non-private step (post-processing of private weights, public data only).

        Gradients are averaged over DDP ranks so replicas stay identical; the
        private module's per-sample bookkeeping is switched off meanwhile.
        """
        st = self.dp
        lopt = self._lightning_optimizer(optimizer)
        optimizer.zero_grad(set_to_none=True)
        with self.per_sample_hooks_disabled():
            loss.backward()
        if st.world_size > 1:
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        torch.distributed.all_reduce(p.grad)
                        p.grad /= st.world_size
        lopt.step()

    @contextmanager
    def per_sample_hooks_disabled(self) -> Iterator[None]:
        """Use the private module (e.g. for a public loss) without per-sample bookkeeping."""
        st = self.__dict__.get("_dp_state")
        if st is None or st.grads is None:
            yield
        else:
            with st.grads.disabled():
                yield

    def train_dataloader(self) -> DataLoader:
        """The Poisson loader over the private data (sharded by rank under DDP)."""
        st = self.dp
        sch = st.schedule
        return PoissonDataLoader(
            st.dataset, sample_rate=sch.sample_rate, steps_per_epoch=sch.steps_per_epoch,
            generator=st.sampler_generator, distributed=st.world_size > 1,
            shuffle_seed=_derived_seed(st.seed, "shards") % (2**31), collate_fn=st.collate_fn,
            num_workers=st.num_workers,
        )

    def on_train_batch_start(self, batch, batch_idx):
        """Skip the rest of the epoch once T steps are done (override? call super())."""
        st = self.__dict__.get("_dp_state")
        if st is not None and st.finished:
            return -1
        return None

    def _lightning_optimizer(self, optimizer):
        opts = self.optimizers()
        for lopt in opts if isinstance(opts, list) else [opts]:
            if lopt.optimizer is optimizer or lopt is optimizer:
                return lopt
        raise ValueError("that optimizer was not returned by configure_*_optimizer(s)")


def _sum_over_expected_batch(st: DPSGDState) -> None:
    """ε = ∞: Σ_i ∇loss_i over the global batch, divided by E = q·N — Opacus'
    normalisation of the private step, without the clipping and the noise.

    (Dividing by E rather than by the rows of this batch keeps the step size
    identical to the private run's even when rows are not examples: DP-GAN's
    fake rows, or an empty batch.)
    """
    for group in st.optimizer.param_groups:
        for p in group["params"]:
            if p.grad is None:
                continue
            if st.world_size > 1:
                torch.distributed.all_reduce(p.grad)
            p.grad /= st.schedule.batch_size


def _attach(st: DPSGDState, trainer: pl.Trainer, private: nn.Module, opt) -> None:
    """Per-sample gradients + the Opacus optimizer (or the plain one when ε = ∞)."""
    if not isinstance(trainer.strategy, DPDDPStrategy | pl.strategies.SingleDeviceStrategy):
        raise ConfigError(
            f"trainer strategy {type(trainer.strategy).__name__} cannot run DP-SGD; "
            "pass the trainer options to fit_private and let it choose"
        )
    st.world_size, st.rank = trainer.world_size, trainer.global_rank
    sch = st.schedule
    if st.grads is not None:
        st.grads.remove()
        st.grads = None
    if not sch.private:
        st.optimizer = opt
        return
    st.grads = PerSampleGradients(private, sch.grad_sample_mode, sch.max_grad_norm)
    if st.grad_sample_mode != st.grads.mode:  # (once: a DDP re-attach keeps the choice)
        log.info("DP-SGD on %s: grad_sample_mode %s → %s (%s)", type(private).__name__,
                 sch.grad_sample_mode, st.grads.mode, st.grads.reason)
    st.grad_sample_mode = st.grads.mode
    device = next(private.parameters()).device
    if st.secure_generator is None and st.noise_generator.device != device:
        # Opacus draws the noise on the parameters' device, with a generator of that device
        st.noise_generator = st.mechanism_generator("noise", device=device)
    st.optimizer = make_dp_optimizer(
        opt, mode=st.grads.mode, noise_multiplier=sch.noise_multiplier,
        max_grad_norm=sch.max_grad_norm,
        expected_batch_size=sch.batch_size / st.world_size,
        distributed=st.world_size > 1, generator=st.noise_generator,
        secure_mode=sch.secure_rng,
    )
