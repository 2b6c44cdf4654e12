"""Noise calibration: the smallest σ whose run stays within a target ε, and that ε.

Accountant evaluations are what cost (PRV: 0.1–0.5 s each), so: σ ↦ ε is
monotone and nearly linear in log-log; a feasible σ comes from a closed-form
upper bound (integer-order RDP), a Newton/secant step from there finds an
infeasible one, Brent's method closes the bracket, and the answer is the
smallest σ the requested accountant *verified* feasible, with an infeasible σ
within ``rtol`` below it — 4–6 evaluations in all.

"Feasible" is ε ≤ target exactly, not within ``budget.EPSILON_RTOL``: the σ
calibrated here is the one ppds has always chosen, and a run at it is within
the budget's tolerance a fortiori.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

from ...errors import BudgetError
from ..ledger import DPSGDSpend, GaussianSpend
from ._common import History, check_delta
from ._compose import check_ledger_accountant, epsilon_of_history, spends_to_history
from ._rdp import RDP_INT_ORDERS, rdp_epsilon_at

__all__ = ["Calibration", "calibrate", "calibrate_noise_multiplier"]


class Calibration(NamedTuple):
    """A calibrated σ and the accountant's ε of the run at that σ (other spends included)."""

    noise_multiplier: float
    epsilon: float


class _Probe:
    """ε(σ) of the DP-SGD run composed with the other spends, and every log σ tried."""

    def __init__(self, other: History, target: float, delta: float, sample_rate: float,
                 steps: int, accountant: str) -> None:
        self.other, self.target, self.delta = other, target, delta
        self.sample_rate, self.steps, self.accountant = sample_rate, steps, accountant
        self.seen: dict[float, float] = {}  # log σ → gap, every accountant evaluation

    def eps(self, sigma: float) -> float:  # memoized by epsilon_of_history's caches (PRV, RDP)
        return epsilon_of_history(self.other + [(sigma, self.sample_rate, self.steps)],
                                  self.delta, self.accountant)

    def eps_or_inf(self, sigma: float) -> float:
        try:
            return self.eps(sigma)
        except BudgetError:
            # PRV fails only where ε is enormous (tiny σ): certainly over budget
            return math.inf

    def feasible(self, sigma: float) -> bool:
        return self.eps_or_inf(sigma) <= self.target

    def gap(self, log_sigma: float) -> float:
        """log ε(σ) − log target: nearly linear in log σ, so secant steps converge fast."""
        e = self.eps_or_inf(math.exp(log_sigma))
        g = 50.0 if not math.isfinite(e) else (math.log(e) if e > 0 else -50.0) - math.log(self.target)
        self.seen[log_sigma] = g
        return g

    def cheap(self, sigma: float) -> float:
        """RDP at integer orders only (closed form, no fractional-order series): it bounds
        ε under every ledger accountant from above — min over fewer orders ≥ RDP ≥ PRV."""
        hist = self.other + [(sigma, self.sample_rate, self.steps)]
        return max(0.0, rdp_epsilon_at(hist, self.delta, RDP_INT_ORDERS))


def _check_inputs(target_epsilon: float, delta: float, sample_rate: float, steps: int,
                  accountant: str) -> int:
    check_ledger_accountant(accountant)
    if not (isinstance(target_epsilon, int | float) and target_epsilon > 0
            and math.isfinite(target_epsilon)):
        raise BudgetError(
            f"target epsilon must be finite and > 0 to calibrate noise, got {target_epsilon} "
            "(a non-private run needs no calibration)"
        )
    check_delta(delta)
    if not (0 < sample_rate <= 1):
        raise BudgetError(f"sample rate must be in (0, 1], got {sample_rate}")
    if int(steps) != steps or steps < 1:
        raise BudgetError(f"DP-SGD steps must be a whole number ≥ 1, got {steps}")
    return int(steps)


def _cheap_feasible(p: _Probe, rtol: float) -> float:
    """1) A feasible σ from the cheap upper bound: bisection on it costs milliseconds."""
    hi = 1.0
    while p.cheap(hi) > p.target:
        hi *= 2
        if hi > 1e6:
            raise BudgetError(
                f"no noise multiplier up to 1e6 reaches epsilon={p.target:g} "
                f"(q={p.sample_rate:g}, T={p.steps}, delta={p.delta:g}); raise the target"
            )
    lo = hi / 2
    while hi - lo > rtol / 4 * hi:
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if p.cheap(mid) <= p.target else (mid, hi)
    while not p.feasible(hi):  # pragma: no cover - the cheap bound is an upper bound
        hi *= 1.1
    return hi


def _over_budget_bracket(p: _Probe, hi: float, rtol: float) -> tuple[float, float]:
    """2) A lower end: Newton steps on gap(log σ) with the cheap bound's slope (the
    accountants' curves are near-parallel in log-log), then secants through the
    accountant's own values, until a σ is over budget. Returns (log σ over, log σ within)."""
    x_hi, g_hi = math.log(hi), p.gap(math.log(hi))
    e_hi, e_up = p.cheap(hi), p.cheap(hi * 1.01)
    slope = (math.log(e_up / e_hi) / math.log(1.01)) if 0 < e_up < e_hi < math.inf else -1.0
    slope = slope if slope < -1e-3 else -1.0
    while True:
        # aim a little past the root (gap = +log(1 + rtol)), so the point lands over budget
        x_lo = x_hi - max((math.log1p(rtol) - g_hi) / -slope, math.log1p(rtol))
        g_lo = p.gap(x_lo)
        if g_lo > 0:
            return x_lo, x_hi
        if x_lo < math.log(1e-6):
            raise BudgetError(
                f"epsilon={p.target:g} is met with essentially no noise "
                f"(q={p.sample_rate:g}, T={p.steps}); check the inputs"
            )
        secant = (g_lo - g_hi) / (x_lo - x_hi)
        slope = secant if secant < -1e-3 else slope
        x_hi, g_hi = x_lo, g_lo


def _smallest_verified(p: _Probe, x_lo: float, x_hi: float, rtol: float) -> float:
    """3) Brent's method on the bracket (both ends already evaluated: memoized); every σ
    it evaluates is recorded, and the answer is the smallest σ verified feasible, once
    the largest infeasible one is within rtol of it."""
    from scipy import optimize

    optimize.brentq(p.gap, x_lo, x_hi, xtol=math.log1p(rtol) / 2)
    over = max(x for x, g in p.seen.items() if g > 0)
    candidate = math.exp(min(x for x, g in p.seen.items() if g <= 0))
    while candidate > math.exp(over) * (1 + rtol):  # pragma: no cover - Brent's bracket is tighter
        mid = math.sqrt(candidate * math.exp(over))
        if p.feasible(mid):
            candidate = mid
        else:
            over = math.log(mid)
    return float(candidate)


def calibrate(
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    accountant: str = "prv",
    other_spends: Iterable[DPSGDSpend | GaussianSpend] = (),
    rtol: float = 1e-3,
) -> Calibration:
    """Smallest σ (to ``rtol``, rounded up) whose DP-SGD run, composed with
    ``other_spends``, stays within ``target_epsilon`` at ``delta`` — and that run's ε.

    The ε is the accountant's own verification of σ, so whoever plans with it
    (the DP-SGD plan, its ledger) never evaluates the accountant again.
    """
    steps = _check_inputs(target_epsilon, delta, sample_rate, steps, accountant)
    other = spends_to_history(other_spends)
    base = epsilon_of_history(other, delta, accountant)
    if base >= target_epsilon:
        raise BudgetError(
            f"the other spends alone cost epsilon={base:.4g} ≥ target {target_epsilon:g} "
            f"(delta={delta:g}, {accountant}): no budget is left for DP-SGD; raise the "
            "target epsilon or add more noise to those spends"
        )
    probe = _Probe(other, target_epsilon, delta, sample_rate, steps, accountant)
    hi = _cheap_feasible(probe, rtol)
    x_lo, x_hi = _over_budget_bracket(probe, hi, rtol)
    sigma = _smallest_verified(probe, x_lo, x_hi, rtol)
    eps = probe.eps_or_inf(sigma)
    if not eps <= target_epsilon:  # pragma: no cover - guarded by the invariant
        raise BudgetError(f"calibration failed to verify sigma={sigma} for epsilon={target_epsilon}")
    return Calibration(sigma, eps)


def calibrate_noise_multiplier(
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    accountant: str = "prv",
    other_spends: Iterable[DPSGDSpend | GaussianSpend] = (),
    rtol: float = 1e-3,
) -> float:
    """σ of :func:`calibrate` (the smallest σ verified within ``target_epsilon``)."""
    return calibrate(target_epsilon, delta, sample_rate, steps, accountant, other_spends,
                     rtol).noise_multiplier
