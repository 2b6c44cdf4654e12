"""DP-SGD on PyTorch Lightning + Opacus: the one engine every private generator trains with.

A generator says *which module* trains privately, *with which optimizer*,
*on which private data*, at *which batch size and length*, under *which
budget* (and which spends were already made); the engine does the rest —
Poisson sampling, per-sample clipping, calibrated Gaussian noise, the
accountant, the exact step count, checkpoints, DDP — and returns the
:class:`~ppds_core.privacy.ledger.Ledger`.

Usage (a generator's ``fit``)::

    from ppds_core.privacy.engine import DPSGDModule, DPSGDPlan, fit_private, public_copy

    class Disc(DPSGDModule):                     # a LightningModule, manual optimisation
        def __init__(self):
            super().__init__()
            self.net, self.gen = make_discriminator(), make_generator()
        def private_module(self):                # ONE nn.Module (group several in a ModuleDict)
            return self.net
        def configure_private_optimizer(self):   # over private_module()'s parameters only
            return torch.optim.Adam(self.net.parameters(), lr=2e-4)
        def configure_public_optimizers(self):   # optional: steps that touch no private data
            return [torch.optim.Adam(self.gen.parameters(), lr=2e-4)]
        def training_step(self, batch, batch_idx):
            x, y = batch                         # one Poisson batch (size varies, may be 0)
            losses = per_example_loss(self.net, x, y)   # shape (B,): loss_i depends on example i only
            self.private_step(losses)            # clip → sum → noise → /E → step → accountant
            if self.dp.steps_done % 5 == 0:      # post-processing: free
                d = public_copy(self.net)
                self.public_step(self.optimizers()[1].optimizer, gen_loss(self.gen, d))

    plan = DPSGDPlan(budget=budget, batch_size=cfg.batch_size, epochs=cfg.epochs,
                     max_grad_norm=cfg.max_grad_norm, other_spends=(query_spend,))
    ledger = fit_private(Disc(), private_imageset, plan, ctx)   # ctx: FitContext (seed, trainer, …)

Contract:

- ``private_step(per_sample_losses)`` is called at most once per batch; row
  *i* must depend on batch example *i* only, and so must the per-sample
  gradient the private module holds for it. Sensitivity is then one example
  and clipping bounds it by C. A module that runs K rows per example through
  the network (DPDM's noise multiplicity) passes ``rows_per_example=K``; the
  engine sums each example's K row gradients before clipping and refuses any
  per-sample gradient whose row count is not examples × K (docs/dp-sgd-engine.md).
- Poisson sampling with q = batch_size / N (refused if batch_size > N); an
  epoch is ⌈N / batch_size⌉ steps; T = epochs · ⌈N/B⌉ or ``steps``. Training
  stops after exactly T private steps (Lightning's epochs are not trusted
  for this); ``self.dp`` tells the module where it stands.
- σ is calibrated with :func:`~ppds_core.privacy.accounting.calibrate_noise_multiplier`
  so that the DP-SGD run composed with ``other_spends`` meets (ε, δ), unless
  ``noise_multiplier`` is fixed (then the plan is refused if it overspends).
  The Opacus accountant is stepped on every private step; ``epsilon_spent``
  on the ledger is :func:`~ppds_core.privacy.accounting.epsilon_of` of all
  spends and never exceeds the target.
- ε = ∞: the identical recipe (same Poisson sampler, same seed ⇒ same
  batches, same optimizer) without clipping or noise: the gradient is the
  sum of the unclipped per-sample gradients over the (global) batch divided
  by the expected batch size q·N, as in the private step. The ledger has
  target ∞, ε_spent ∞ and no DP-SGD spend.
- Grad-sample modes (``grad_sample_mode``): ``hooks`` (default), ``functorch``,
  ``ghost`` (ghost clipping: two backward passes, no per-sample gradients
  materialised), ``ew`` (ExpandedWeights) and ``bk`` (book-keeping: one backward,
  per-layer ghost or instantiated norms, clipped sums; ``_bookkeeping.py``).
  All attach to the module in place.
- Checkpoints (``ckpt_path=`` to resume) carry the accountant history, the
  step count and the RNG states; a resumed run continues the ledger.
- ``ctx.trainer`` is passed to Lightning (accelerator, devices, strategy,
  num_nodes, precision, …); CPU and quiet by default. ``strategy: ddp``
  runs Opacus' DistributedDPOptimizer (noise once, on rank 0) over a
  Poisson sampler sharded by rank, with the global sample rate.
- Whatever cannot be honoured raises :class:`~ppds_core.errors.BudgetError`
  (or :class:`~ppds_core.errors.ConfigError` for a bad option) before any training.

Full documentation: ``docs/dp-sgd-engine.md``.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pydantic import TypeAdapter
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ..budget import PrivacyBudget, check_delta_for
from ..errors import BudgetError, ConfigError, did_you_mean
from ..imageset import ImageSet
from ..interfaces import FitContext
from ..safe_load import load_tensors
from ._grad_modes import GRAD_SAMPLE_MODES, PerSampleGradients, make_dp_optimizer
from ._opacus_lightning import DPDDPStrategy, build_trainer
from ._poisson import PoissonDataLoader, is_poisson_loader
from .accounting import (
    calibrate_noise_multiplier,
    check_ledger_accountant,
    epsilon_of,
    epsilon_of_history,
    make_opacus_accountant,
    spends_to_history,
)
from .ledger import DPSGDSpend, GaussianSpend, Ledger
from .ledger import Spend as _LedgerSpend
from .randomness import SEEDED_NOISE_NOTE, derived_seed, mechanism_generator

__all__ = [
    "GRAD_SAMPLE_MODES",
    "DPSGDPlan",
    "DPSGDSchedule",
    "DPSGDModule",
    "DPSGDState",
    "plan_dp_sgd",
    "fit_private",
    "public_copy",
    "DPDDPStrategy",
    # the low-level pieces, for code that takes single privatized steps (audits, benchmarks)
    "PerSampleGradients",
    "make_dp_optimizer",
]

Spend = DPSGDSpend | GaussianSpend
_SPEND: TypeAdapter = TypeAdapter(_LedgerSpend)


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class DPSGDPlan:
    """What a generator asks for. Exactly one of ``epochs`` / ``steps``.

    ``accountant=None`` takes the run's (``FitContext.accountant``).
    ``noise_multiplier`` fixes σ instead of calibrating it (audits,
    benchmarks); the plan is refused if the result would exceed the target.
    ``secure_rng`` turns on Opacus' secure mode (needs ``torchcsprng``).
    """

    budget: PrivacyBudget
    batch_size: int
    epochs: int | None = None
    steps: int | None = None
    max_grad_norm: float = 1.0
    accountant: str | None = None
    other_spends: tuple[Spend, ...] = ()
    grad_sample_mode: str = "hooks"
    secure_rng: bool = False
    noise_multiplier: float | None = None
    num_workers: int = 0
    #: report progress (and ε so far) every this many steps; None → about 10 reports
    progress_every: int | None = None
    #: :meth:`DPSGDModule.private_step_in_chunks` runs forward/backward on at most this many
    #: examples at a time (memory), with one clip-sum-noise step per Poisson batch (privacy)
    max_physical_batch_size: int | None = None


@dataclass(frozen=True)
class DPSGDSchedule:
    """The resolved plan: every number the accountant and the trainer use."""

    private: bool
    num_examples: int
    batch_size: int
    sample_rate: float
    steps_per_epoch: int
    total_steps: int
    noise_multiplier: float
    max_grad_norm: float
    accountant: str
    delta: float
    target_epsilon: float
    planned_epsilon: float
    other_spends: tuple[Spend, ...]
    grad_sample_mode: str
    secure_rng: bool

    def dp_sgd_spend(self, steps: int) -> DPSGDSpend:
        return DPSGDSpend(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate,
                          steps=steps, max_grad_norm=self.max_grad_norm)

    def fingerprint(self) -> dict[str, Any]:
        """What a checkpoint must agree on to be resumed under this schedule."""
        return {"private": self.private, "num_examples": self.num_examples,
                "sample_rate": self.sample_rate, "total_steps": self.total_steps,
                "noise_multiplier": self.noise_multiplier, "max_grad_norm": self.max_grad_norm,
                "accountant": self.accountant, "delta": self.delta}


def plan_dp_sgd(plan: DPSGDPlan, num_examples: int, default_accountant: str = "prv") -> DPSGDSchedule:
    """Check the plan against N and the budget; calibrate σ. Refuses with BudgetError."""
    budget = plan.budget
    accountant = check_ledger_accountant(plan.accountant or default_accountant)
    if plan.grad_sample_mode not in GRAD_SAMPLE_MODES:
        raise ConfigError(
            f"grad_sample_mode: unknown mode {plan.grad_sample_mode!r}"
            f"{did_you_mean(plan.grad_sample_mode, GRAD_SAMPLE_MODES)} "
            f"(choose one of {', '.join(GRAD_SAMPLE_MODES)})"
        )
    n, b = int(num_examples), int(plan.batch_size)
    if n < 1:
        raise BudgetError("the private dataset is empty: DP-SGD needs at least one example")
    if budget.is_private:
        check_delta_for(budget.delta, n)
    if b < 1 or b != plan.batch_size:
        raise BudgetError(f"batch_size must be a whole number ≥ 1, got {plan.batch_size}")
    if b > n:
        raise BudgetError(
            f"batch_size={b} exceeds the {n} private examples: the Poisson sample rate "
            f"q = batch_size/N would be {b / n:.3g} > 1; use batch_size ≤ {n}"
        )
    if (plan.epochs is None) == (plan.steps is None):
        raise ConfigError("DP-SGD plan: give exactly one of epochs or steps")
    physical = plan.max_physical_batch_size
    if physical is not None and (int(physical) != physical or physical < 1):
        raise ConfigError(f"max_physical_batch_size must be a whole number ≥ 1 (or unset), got {physical}")
    if physical is not None and plan.grad_sample_mode == "ghost":
        raise ConfigError("max_physical_batch_size is not supported with grad_sample_mode 'ghost' (its "
                          "clipped sums cannot be carried across slices here); use 'hooks' or 'functorch'")
    steps_per_epoch = -(-n // b)  # ⌈N/B⌉, the number of Poisson batches in an epoch
    if plan.steps is not None:
        if int(plan.steps) != plan.steps or plan.steps < 1:
            raise BudgetError(f"steps must be a whole number ≥ 1, got {plan.steps}")
        total = int(plan.steps)
    else:
        if int(plan.epochs) != plan.epochs or plan.epochs < 1:
            raise BudgetError(f"epochs must be a whole number ≥ 1, got {plan.epochs}")
        total = int(plan.epochs) * steps_per_epoch
    if not (plan.max_grad_norm > 0 and math.isfinite(plan.max_grad_norm)):
        raise BudgetError(f"max_grad_norm must be finite and > 0, got {plan.max_grad_norm}")
    q = b / n
    other = tuple(plan.other_spends)
    spends_to_history(other)  # validates them
    common = dict(num_examples=n, batch_size=b, sample_rate=q, steps_per_epoch=steps_per_epoch,
                  total_steps=total, max_grad_norm=float(plan.max_grad_norm),
                  accountant=accountant, delta=budget.delta, target_epsilon=budget.epsilon,
                  other_spends=other, grad_sample_mode=plan.grad_sample_mode,
                  secure_rng=plan.secure_rng)
    if not budget.is_private:
        return DPSGDSchedule(private=False, noise_multiplier=0.0, planned_epsilon=math.inf,
                             **common)
    if plan.noise_multiplier is not None:
        sigma = float(plan.noise_multiplier)
        if not sigma > 0:
            raise BudgetError(f"noise_multiplier must be > 0 for a finite epsilon, got {sigma}")
    else:
        sigma = _calibrated_sigma(budget.epsilon, budget.delta, q, total, accountant,
                                  tuple(s.model_dump_json() for s in other))
    spends = [*other, DPSGDSpend(noise_multiplier=sigma, sample_rate=q, steps=total,
                                 max_grad_norm=plan.max_grad_norm)]
    planned = epsilon_of(spends, budget.delta, accountant)
    if planned > budget.epsilon:
        raise BudgetError(
            f"noise_multiplier={sigma:g} with q={q:.4g}, T={total} (plus {len(other)} other "
            f"spend(s)) costs epsilon={planned:.4g} > target {budget.epsilon:g} at "
            f"delta={budget.delta:g} ({accountant}); raise the noise multiplier, lower "
            "epochs or batch_size, or leave noise_multiplier unset to calibrate it"
        )
    return DPSGDSchedule(private=True, noise_multiplier=sigma, planned_epsilon=planned, **common)


@functools.lru_cache(maxsize=256)
def _calibrated_sigma(epsilon: float, delta: float, sample_rate: float, steps: int,
                      accountant: str, other_json: tuple[str, ...]) -> float:
    """Calibration costs a handful of accountant evaluations (~1–5 s with PRV);
    shadow models and seeds of one matrix cell share their plan, so it is done once."""
    other = [_SPEND.validate_json(j) for j in other_json]
    return calibrate_noise_multiplier(epsilon, delta, sample_rate, steps,
                                      accountant=accountant, other_spends=other)


# --------------------------------------------------------------------------- run-time state


_derived_seed = derived_seed  # the seeds of what is *not* a privacy mechanism


def _secure_generator() -> Any:
    try:
        import torchcsprng as csprng  # type: ignore[import-not-found]
    except ImportError:
        raise BudgetError(
            "secure_rng: true needs the 'torchcsprng' package (a cryptographically secure "
            "generator for Poisson sampling and noise), which is not installed; install it or "
            "set secure_rng: false"
        ) from None
    return csprng.create_random_device_generator("/dev/urandom")


@dataclass
class DPSGDState:
    """Where a private training stands; ``module.dp`` during and after ``fit_private``."""

    schedule: DPSGDSchedule
    seed: int = 0
    steps_done: int = 0
    accountant: Any = None
    optimizer: Any = None  # the Opacus DP optimizer (or the plain one when ε = ∞)
    grads: PerSampleGradients | None = None
    sampler_generator: Any = None
    noise_generator: Any = None
    world_size: int = 1
    rank: int = 0
    progress: Callable[[int, int, dict[str, Any]], None] | None = None
    last_loss: float = math.nan
    stepped_this_batch: bool = False
    pending_checkpoint: dict[str, Any] | None = None
    progress_every: int = 1
    notes: list[str] = field(default_factory=list)
    # the private data, turned into a Poisson loader once the rank is known
    dataset: Any = None
    collate_fn: Any = None
    num_workers: int = 0
    secure_generator: Any = None
    max_physical_batch_size: int | None = None
    #: noise and Poisson batches derived from the (public) seed instead of OS entropy
    reproducible_noise: bool = False

    def mechanism_generator(self, *tags: object, device: Any = "cpu") -> Any:
        """The generator of a privacy mechanism (noise, Poisson sampler): OS entropy
        unless the run asked for reproducible noise (ppds_core.privacy.randomness)."""
        return mechanism_generator(self.seed, *tags, reproducible=self.reproducible_noise,
                                   device=device)

    @property
    def total_steps(self) -> int:
        return self.schedule.total_steps

    @property
    def noise_multiplier(self) -> float:
        return self.schedule.noise_multiplier

    @property
    def sample_rate(self) -> float:
        return self.schedule.sample_rate

    @property
    def is_global_zero(self) -> bool:
        return self.rank == 0

    @property
    def finished(self) -> bool:
        return self.steps_done >= self.schedule.total_steps

    def history(self) -> list[tuple[float, float, int]]:
        """The accountant's (σ, q, count) history of the DP-SGD steps taken so far."""
        if self.accountant is None:
            return []
        return [(float(s), float(q), int(t)) for s, q, t in self.accountant.history]

    def epsilon(self) -> float:
        """ε spent so far (other spends + the DP-SGD steps taken), ∞ if non-private."""
        sch = self.schedule
        if not sch.private:
            return math.inf
        hist = spends_to_history(sch.other_spends) + self.history()
        return epsilon_of_history(hist, sch.delta, sch.accountant)

    def progress_info(self) -> dict[str, Any]:
        """What a progress report says about privacy so far, honestly labelled.

        The run's own accountant gives ``epsilon`` where that is cheap (RDP,
        memoized per (q, σ); GDP, closed form) and at the last step (the
        ledger's value, memoized). Mid-run PRV evaluations cost ~0.1–0.5 s
        each, so there the report carries ``epsilon_rdp_upper`` instead: the
        RDP accountant's ε, an upper bound on the PRV ε of the same steps.
        """
        sch = self.schedule
        info: dict[str, Any] = {"loss": self.last_loss}
        if not sch.private or sch.accountant != "prv" or self.finished:
            info["epsilon"] = self.epsilon()
        else:
            hist = spends_to_history(sch.other_spends) + self.history()
            info["epsilon_rdp_upper"] = epsilon_of_history(hist, sch.delta, "rdp")
        return info

    def ledger(self) -> Ledger:
        """The ledger of the steps taken so far."""
        sch = self.schedule
        if not sch.private:
            return Ledger(target_epsilon=math.inf, delta=sch.delta, accountant=sch.accountant,
                          epsilon_spent=math.inf, spends=list(sch.other_spends),
                          secure_rng=sch.secure_rng, notes=list(self.notes))
        seeded = self.reproducible_noise and not sch.secure_rng
        notes = [*self.notes, *([SEEDED_NOISE_NOTE] if seeded else [])]
        counted = sum(t for _, _, t in self.history())
        if counted != self.steps_done:  # pragma: no cover - guarded by private_step
            raise RuntimeError(f"accountant counted {counted} steps, engine {self.steps_done}")
        spends = [*sch.other_spends, sch.dp_sgd_spend(self.steps_done)]
        eps = epsilon_of(spends, sch.delta, sch.accountant)
        if eps > sch.target_epsilon:  # pragma: no cover - T is never exceeded
            raise BudgetError(f"epsilon_spent={eps:.4g} exceeds the target {sch.target_epsilon:g}")
        return Ledger(target_epsilon=sch.target_epsilon, delta=sch.delta,
                      accountant=sch.accountant, epsilon_spent=eps, spends=spends,
                      secure_rng=sch.secure_rng, reproducible_noise=seeded, notes=notes)

    # -- checkpoint ------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "schedule": self.schedule.fingerprint(),
            "steps_done": self.steps_done,
            "history": [list(h) for h in self.history()],
        }
        # the mechanisms' generator states only when they are seeded anyway: a state drawn
        # from OS entropy, written to disk, would let a reader of the checkpoint predict
        # the noise of the rest of the run (a resumed run draws fresh entropy instead)
        if self.reproducible_noise:
            if isinstance(self.sampler_generator, torch.Generator):
                state["sampler_rng"] = self.sampler_generator.get_state()
            if isinstance(self.noise_generator, torch.Generator):
                state["noise_rng"] = self.noise_generator.get_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        mine, theirs = self.schedule.fingerprint(), state.get("schedule", {})
        if mine != theirs:
            diff = {k: (theirs.get(k), v) for k, v in mine.items() if theirs.get(k) != v}
            raise BudgetError(
                "the checkpoint was trained under a different DP-SGD schedule "
                + ", ".join(f"{k}: {a!r} (checkpoint) vs {b!r} (now)" for k, (a, b) in diff.items())
                + "; resume with the same config, or start a fresh run"
            )
        self.steps_done = int(state["steps_done"])
        if self.accountant is not None:
            self.accountant.history = [(float(s), float(q), int(t)) for s, q, t in state["history"]]
        if not self.reproducible_noise:
            return
        if "sampler_rng" in state and isinstance(self.sampler_generator, torch.Generator):
            self.sampler_generator.set_state(state["sampler_rng"])
        if "noise_rng" in state and isinstance(self.noise_generator, torch.Generator):
            self.noise_generator.set_state(state["noise_rng"])


# --------------------------------------------------------------------------- the module


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
            st.accountant.step(noise_multiplier=st.schedule.noise_multiplier,
                               sample_rate=st.schedule.sample_rate)
        else:
            per_sample_losses.sum().backward()
            _sum_over_expected_batch(st)
            lopt.step()
        st.steps_done += 1
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
    device = next(private.parameters()).device
    if st.secure_generator is None and st.noise_generator.device != device:
        # Opacus draws the noise on the parameters' device, with a generator of that device
        st.noise_generator = st.mechanism_generator("noise", device=device)
    st.optimizer = make_dp_optimizer(
        opt, mode=sch.grad_sample_mode, noise_multiplier=sch.noise_multiplier,
        max_grad_norm=sch.max_grad_norm,
        expected_batch_size=sch.batch_size / st.world_size,
        distributed=st.world_size > 1, generator=st.noise_generator,
        secure_mode=sch.secure_rng,
    )


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
        # each rank draws its own randomness (fake latents, diffusion noise) after the common
        # start; weights were broadcast from rank 0
        torch.manual_seed(_derived_seed(st.seed, "global", st.rank, st.steps_done))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        st = self.st
        if st.finished:
            trainer.should_stop = True
        st.stepped_this_batch = False
        if st.grads is not None:
            st.grads.clear_stale()
        return None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        st = self.st
        if st.finished:
            trainer.should_stop = True
        if st.progress is None or not st.is_global_zero or not st.stepped_this_batch:
            return
        if st.steps_done % st.progress_every == 0 or st.finished:
            st.progress(st.steps_done, st.total_steps, st.progress_info())

    def state_dict(self) -> dict[str, Any]:
        return self.st.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # applied in on_fit_start, once the accountant and generators exist
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
) -> Ledger:
    """Train ``module`` with DP-SGD on ``data`` under ``plan``; return the ledger.

    ``ctx`` supplies the seed, the trainer options, the working directory,
    the default accountant and the progress callback. ``ckpt_path`` resumes a
    checkpoint written by a previous ``fit_private`` of the same plan (e.g.
    by a ``ModelCheckpoint`` passed in ``callbacks``). After the call the
    module is a plain module again (per-sample hooks removed) and
    ``module.dp`` still describes the run.
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
    if schedule.private:
        state.accountant = make_opacus_accountant(schedule.accountant)
    object.__setattr__(module, "_dp_state", state)

    with _quiet_lightning():
        trainer = build_trainer(
            {**ctx.trainer, **(trainer_overrides or {})},
            # a margin epoch: a resumed mid-epoch run restarts Lightning's epoch iterator;
            # the callback stops at exactly T private steps either way
            max_epochs=-(-schedule.total_steps // schedule.steps_per_epoch) + 1,
            callbacks=[*callbacks, _DPSGDCallback(state)],
            default_root_dir=ctx.workdir,
        )
    if ckpt_path is not None:  # a checkpoint is a pickle: refuse one holding code, in one line
        load_tensors(ckpt_path, "Lightning checkpoint")
    try:
        with _quiet_lightning():
            trainer.fit(module, ckpt_path=str(ckpt_path) if ckpt_path is not None else None,
                        weights_only=True)
    finally:
        if state.grads is not None:
            state.grads.remove()
            state.grads = None
    state.dataset = state.collate_fn = None  # keep no reference to the private data
    if state.steps_done < schedule.total_steps:
        state.notes.append(
            f"training ended after {state.steps_done} of {schedule.total_steps} planned steps"
        )
    return state.ledger()


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
