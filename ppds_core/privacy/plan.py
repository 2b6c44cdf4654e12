"""The DP-SGD plan: what a generator asks for, checked against N and the budget, σ calibrated.

Pure numbers — this module imports neither torch nor Lightning (a test holds
it to that), so a planner, a CLI or a test can resolve a plan without a
training stack.

The plan owns ε. Calibration returns (σ, ε) once
(:func:`~ppds_core.privacy.accounting.calibrate`); the schedule carries that ε
as ``planned_epsilon``, and :meth:`DPSGDSchedule.epsilon_at` gives it back for a
run that took exactly the planned T steps — the same spends, so the same ε bit
for bit — and asks the accountant only for a run that did not (stopped early,
or mid-run progress).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter

from ..budget import PrivacyBudget, check_delta_for, within_budget
from ..errors import BudgetError, ConfigError, did_you_mean
from .accounting import calibrate, check_ledger_accountant, epsilon_of, spends_to_history
from .ledger import DPSGDSpend, GaussianSpend
from .ledger import Spend as _LedgerSpend

__all__ = ["GRAD_SAMPLE_MODES", "DPSGDPlan", "DPSGDSchedule", "Spend", "plan_dp_sgd"]

#: hooks: Opacus' per-layer formulas; functorch: torch.func.vmap for every layer;
#: ghost: ghost clipping (norms without materialising per-sample gradients, two
#: backward passes); ew: torch's ExpandedWeights (fails on some models, e.g. diffusers' UNet);
#: bk: book-keeping (one backward, mixed ghost norms, clipped sums; ``_bookkeeping.py``);
#: auto (the default): the fastest exact mode that works on the module, chosen when the
#: engine attaches to it (``_grad_modes.resolve_grad_sample_mode``: bk, else hooks).
#: The plan checks the name, so the names live here; ``_grad_modes`` implements them.
GRAD_SAMPLE_MODES: tuple[str, ...] = ("hooks", "functorch", "ghost", "ew", "bk", "auto")

Spend = DPSGDSpend | GaussianSpend
_SPEND: TypeAdapter = TypeAdapter(_LedgerSpend)


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
    grad_sample_mode: str = "auto"
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

    def spends(self, steps: int) -> list[Spend]:
        """The ledger's spends after ``steps`` DP-SGD steps: the other spends, then DP-SGD."""
        return [*self.other_spends, self.dp_sgd_spend(steps)]

    def epsilon_at(self, steps: int, accountant: str | None = None) -> float:
        """ε of the other spends plus ``steps`` DP-SGD steps (∞ if non-private).

        The planned T is the plan's own ε (computed once, at calibration);
        any other count, or another ``accountant``, asks the accountant.
        """
        if not self.private:
            return math.inf
        accountant = accountant or self.accountant
        if steps == self.total_steps and accountant == self.accountant:
            return self.planned_epsilon
        return epsilon_of(self.spends(steps), self.delta, accountant)

    def fingerprint(self) -> dict[str, Any]:
        """What a checkpoint must agree on to be resumed under this schedule."""
        return {"private": self.private, "num_examples": self.num_examples,
                "sample_rate": self.sample_rate, "total_steps": self.total_steps,
                "noise_multiplier": self.noise_multiplier, "max_grad_norm": self.max_grad_norm,
                "accountant": self.accountant, "delta": self.delta}


def _check_sizes(plan: DPSGDPlan, n: int) -> tuple[int, int, int]:
    """(batch size, steps per epoch, total steps), or the BudgetError/ConfigError of a bad plan."""
    b = int(plan.batch_size)
    if n < 1:
        raise BudgetError("the private dataset is empty: DP-SGD needs at least one example")
    if plan.budget.is_private:
        check_delta_for(plan.budget.delta, n)
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
        return b, steps_per_epoch, int(plan.steps)
    if int(plan.epochs) != plan.epochs or plan.epochs < 1:
        raise BudgetError(f"epochs must be a whole number ≥ 1, got {plan.epochs}")
    return b, steps_per_epoch, int(plan.epochs) * steps_per_epoch


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
    n = int(num_examples)
    b, steps_per_epoch, total = _check_sizes(plan, n)
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
        spends = [*other, DPSGDSpend(noise_multiplier=sigma, sample_rate=q, steps=total,
                                     max_grad_norm=plan.max_grad_norm)]
        planned = epsilon_of(spends, budget.delta, accountant)
    else:
        sigma, planned = _calibrated(budget.epsilon, budget.delta, q, total, accountant,
                                     tuple(s.model_dump_json() for s in other))
    if not within_budget(planned, budget.epsilon):
        raise BudgetError(
            f"noise_multiplier={sigma:g} with q={q:.4g}, T={total} (plus {len(other)} other "
            f"spend(s)) costs epsilon={planned:.4g} > target {budget.epsilon:g} at "
            f"delta={budget.delta:g} ({accountant}); raise the noise multiplier, lower "
            "epochs or batch_size, or leave noise_multiplier unset to calibrate it"
        )
    return DPSGDSchedule(private=True, noise_multiplier=sigma, planned_epsilon=planned, **common)


@functools.lru_cache(maxsize=256)
def _calibrated(epsilon: float, delta: float, sample_rate: float, steps: int,
                accountant: str, other_json: tuple[str, ...]) -> tuple[float, float]:
    """(σ, ε) of :func:`~ppds_core.privacy.accounting.calibrate`. Calibration costs a
    handful of accountant evaluations (~1–5 s with PRV); shadow models and seeds of one
    matrix cell share their plan, so it is done once per process."""
    other = [_SPEND.validate_json(j) for j in other_json]
    sigma, eps = calibrate(epsilon, delta, sample_rate, steps, accountant=accountant,
                           other_spends=other)
    return sigma, eps
