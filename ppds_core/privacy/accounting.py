"""ε of a ledger's spends: RDP, PRV (Opacus) and GDP (closed form, here).

Every ε ppds reports comes from one of these functions, applied to the exact
mechanisms on the ledger: DP-SGD is T steps of the *Poisson*-subsampled
Gaussian mechanism with (σ, q); a :class:`GaussianSpend` is ``count`` runs of
the full-data Gaussian mechanism (q = 1). Compositions of different spends
(PrivImage's semantic query followed by DP-SGD) go to the accountant as one
heterogeneous history of ``(noise_multiplier, sample_rate, steps)`` tuples —
the same tuples an Opacus accountant's ``history`` holds, so the training
engine and an independent re-computation agree by construction.

Accountants:

- ``prv`` (default): Opacus' PRV accountant (Gopi et al. 2021), the tight one.
  It returns an *upper* bound (estimate + ``eps_error``); ppds picks
  ``eps_error`` relative to the ε at hand (see :func:`_prv_epsilon`) rather
  than Opacus' fixed 0.01, so small budgets are not inflated by several %.
- ``rdp``: Opacus' RDP accountant on a denser order grid than its default
  (a looser but very robust upper bound).
- ``gdp`` (``ppds bounds`` only, never a ledger): μ-GDP via the central-limit approximation of Bu et al. 2020,
  μ = q·√T·√(e^{1/σ²} − 1), composed as μ = √(Σ μᵢ²), converted with
  δ(ε) = Φ(−ε/μ + μ/2) − e^ε·Φ(−ε/μ − μ/2). Full-data Gaussian mechanisms
  (q = 1) are *exactly* (√T/σ)-GDP and use that. The CLT approximation can
  *under*-estimate ε; it is here for comparison with papers that use it, and
  :data:`LEDGER_ACCOUNTANTS` leaves it out of calibration, training and ledgers.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ..errors import BudgetError, ConfigError, did_you_mean
from .ledger import DPSGDSpend, GaussianSpend, Ledger

__all__ = [
    "ACCOUNTANTS",
    "History",
    "spends_to_history",
    "epsilon_of",
    "epsilon_of_history",
    "dp_sgd_epsilon",
    "gdp_mu",
    "gdp_epsilon",
    "gdp_delta",
    "gdp_mu_for",
    "calibrate_noise_multiplier",
    "ledger_epsilon",
    "make_opacus_accountant",
    "check_accountant",
    "check_ledger_accountant",
    "LEDGER_ACCOUNTANTS",
]

ACCOUNTANTS: tuple[str, ...] = ("rdp", "prv", "gdp")
#: the accountants that *upper*-bound ε for Poisson-subsampled Gaussian mechanisms: only
#: these may calibrate noise, train and fill a ledger. ``gdp``'s CLT approximation
#: under-reports ε (4.6× on a small-q, few-step plan), so it answers ``ppds bounds``
#: questions, labelled as an approximation, and nothing else.
LEDGER_ACCOUNTANTS: tuple[str, ...] = ("prv", "rdp")

#: (noise_multiplier, sample_rate, steps) per mechanism, Opacus' history format
History = list[tuple[float, float, int]]

#: RDP orders: Opacus' default grid extended to large orders, which small-ε
#: (large-σ) runs need; a larger grid can only tighten the minimum.
_RDP_ORDERS: list[float] = (
    [1 + x / 10.0 for x in range(1, 100)]
    + list(range(11, 64))
    + [64.0, 80.0, 96.0, 128.0, 160.0, 192.0, 256.0, 384.0, 512.0, 1024.0]
)
_RDP_ORDERS_T: tuple[float, ...] = tuple(float(a) for a in _RDP_ORDERS)
#: the integer orders of that grid: Opacus' closed form, cheap; calibration
#: brackets σ with them (fewer orders → a larger, still valid, upper bound)
_RDP_INT_ORDERS: tuple[float, ...] = tuple(a for a in _RDP_ORDERS_T if a == int(a))


def check_accountant(name: str) -> str:
    """``name`` if it is a known accountant, else a ConfigError with a suggestion."""
    if name not in ACCOUNTANTS:
        raise ConfigError(
            f"unknown accountant {name!r}{did_you_mean(str(name), ACCOUNTANTS)} "
            f"(choose one of {', '.join(ACCOUNTANTS)})"
        )
    return name


def check_ledger_accountant(name: str, where: str = "accountant") -> str:
    """``name`` if it may calibrate and fill a ledger (prv, rdp), else a ConfigError."""
    check_accountant(name)
    if name not in LEDGER_ACCOUNTANTS:
        raise ConfigError(
            f"{where}: {name!r} is an approximation that can under-report ε (the CLT of μ-GDP), so "
            f"it cannot calibrate noise or fill a ledger; use one of {', '.join(LEDGER_ACCOUNTANTS)} "
            "(gdp stays available as `ppds bounds epsilon --accountant gdp`)"
        )
    return name


def _check_mechanism(noise_multiplier: float, sample_rate: float, steps: int, where: str) -> None:
    if not (isinstance(noise_multiplier, int | float) and noise_multiplier >= 0
            and not math.isnan(noise_multiplier)):
        raise BudgetError(f"{where}: noise multiplier must be ≥ 0, got {noise_multiplier}")
    if not (0 < sample_rate <= 1):
        raise BudgetError(f"{where}: sample rate must be in (0, 1], got {sample_rate}")
    if int(steps) != steps or steps < 0:
        raise BudgetError(f"{where}: steps must be a whole number ≥ 0, got {steps}")


def _check_delta(delta: float) -> None:
    if not (0 < delta < 1):
        raise BudgetError(f"delta must satisfy 0 < delta < 1, got {delta}")


def spends_to_history(spends: Iterable[DPSGDSpend | GaussianSpend]) -> History:
    """Ledger spends as (σ, q, T) tuples; spends with zero steps are dropped."""
    history: History = []
    for i, s in enumerate(spends):
        if isinstance(s, DPSGDSpend):
            item = (float(s.noise_multiplier), float(s.sample_rate), int(s.steps))
        elif isinstance(s, GaussianSpend):
            item = (float(s.noise_multiplier), 1.0, int(s.count))
        else:
            raise TypeError(f"spend {i} is not a ledger spend: {s!r}")
        _check_mechanism(*item, where=f"spend {i} ({s.mechanism})")
        if item[2] > 0:
            history.append(item)
    return history


# --------------------------------------------------------------------------- GDP


def gdp_mu(history: Sequence[tuple[float, float, int]]) -> float:
    """μ of the composition (CLT for q < 1, exact for q = 1); inf if any σ = 0."""
    total = 0.0
    for sigma, q, steps in history:
        if sigma == 0:
            return math.inf
        if q >= 1.0:
            mu2 = steps / sigma**2  # the Gaussian mechanism is exactly (1/σ)-GDP
        else:
            # q²·T·(e^{1/σ²} − 1), with expm1 for precision at large σ
            mu2 = q * q * steps * math.expm1(1.0 / sigma**2)
        total += mu2
    return math.sqrt(total)


def gdp_delta(epsilon: float, mu: float) -> float:
    """δ(ε) of μ-GDP: Φ(−ε/μ + μ/2) − e^ε·Φ(−ε/μ − μ/2), computed in log space."""
    from scipy import special  # lazy: keeps `import ppds_core` light

    if mu == 0:
        return 0.0
    a = special.log_ndtr(-epsilon / mu + mu / 2)
    b = epsilon + special.log_ndtr(-epsilon / mu - mu / 2)
    if b >= a:
        return 0.0
    return float(math.exp(a) * -math.expm1(b - a))


def gdp_epsilon(mu: float, delta: float) -> float:
    """Smallest ε ≥ 0 with δ(ε) ≤ δ for μ-GDP (root of the decreasing δ(ε))."""
    from scipy import optimize

    _check_delta(delta)
    if math.isinf(mu):
        return math.inf
    if mu == 0 or gdp_delta(0.0, mu) <= delta:
        return 0.0
    hi = max(1.0, mu * mu / 2 + 2 * mu * math.sqrt(2 * math.log(1 / delta)) + 1)
    while gdp_delta(hi, mu) > delta:
        hi *= 2
    return float(optimize.brentq(lambda e: gdp_delta(e, mu) - delta, 0.0, hi,
                                 xtol=1e-12, rtol=1e-12))


def gdp_mu_for(epsilon: float, delta: float) -> float:
    """The μ whose μ-GDP guarantee is exactly (ε, δ)-DP: the root of δ(ε; μ) = δ.

    Useful to split a budget between mechanisms: Gaussian mechanisms compose as
    μ² = Σ μᵢ², so a share of μ² is a share of the budget (e.g. ε = 10, δ = 1e-5 → μ ≈ 2.0).
    """
    from scipy import optimize

    _check_delta(delta)
    if math.isinf(epsilon):
        return math.inf
    if epsilon < 0:
        raise ValueError(f"epsilon must be ≥ 0, got {epsilon}")
    hi = 1.0
    while gdp_delta(epsilon, hi) < delta:  # δ(ε; μ) grows with μ
        hi *= 2
    return float(optimize.brentq(lambda m: gdp_delta(epsilon, m) - delta, 1e-12, hi,
                                 xtol=1e-12, rtol=1e-12))


# --------------------------------------------------------------------------- RDP / PRV


@functools.lru_cache(maxsize=65536)
def _rdp_at_order(sample_rate: float, noise_multiplier: float, order: float) -> float:
    """Opacus' one-step RDP at one order; shared by the order grids that overlap
    (ppds' ε grid and Opacus' default grid for the PRV domain size)."""
    from opacus.accountants.analysis.rdp import _compute_rdp

    return float(_compute_rdp(sample_rate, noise_multiplier, order))


@functools.lru_cache(maxsize=4096)
def _one_step_rdp(sample_rate: float, noise_multiplier: float,
                  orders: tuple[float, ...]) -> np.ndarray:
    """Opacus' RDP of ONE Poisson-subsampled Gaussian step at each order (read-only).

    Opacus evaluates fractional orders with a Python series per order (~1 ms
    each, ~0.2 s per σ); a run reports ε many times for the same (q, σ) and a
    calibration probes each σ under several δ, so the vector is computed once
    per (q, σ, orders). T identical steps compose to T × this vector —
    exactly what Opacus' ``compute_rdp(steps=T)`` returns (``rdp * steps``,
    with ``rdp`` built element by element as here).
    """
    rdp = np.array([_rdp_at_order(sample_rate, noise_multiplier, a) for a in orders])
    rdp.flags.writeable = False
    return rdp


def _history_rdp(history: Sequence[tuple[float, float, int]],
                 orders: tuple[float, ...]) -> np.ndarray:
    """RDP of a composed history, summed in Opacus' order (bit-identical to its accountant)."""
    return sum([_one_step_rdp(float(q), float(s), orders) * int(t) for s, q, t in history])


def _rdp_epsilon_at(history: Sequence[tuple[float, float, int]], delta: float,
                    orders: tuple[float, ...]) -> float:
    """Opacus' RDP→(ε, δ) conversion (``get_privacy_spent``) of the memoized RDP."""
    from opacus.accountants.analysis.rdp import get_privacy_spent

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "optimal order is the largest alpha" → still an upper bound
        eps, _ = get_privacy_spent(orders=list(orders), rdp=_history_rdp(history, orders),
                                   delta=delta)
    return float(eps)


def _rdp_epsilon(history: History, delta: float) -> float:
    return max(0.0, _rdp_epsilon_at(history, delta, _RDP_ORDERS_T))


def _opacus_default_orders() -> tuple[float, ...]:
    from opacus.accountants import RDPAccountant

    return tuple(float(a) for a in RDPAccountant.DEFAULT_ALPHAS)


def _safe_domain_size(history: History, eps_error: float, delta_error: float) -> float:
    """Opacus' ``compute_safe_domain_size`` (Gopi et al., remark 5.6), same orders and
    formula, on the memoized RDP: it is the bulk of a PRV evaluation otherwise."""
    orders = _opacus_default_orders()
    total = sum(t for _, _, t in history)
    size = _rdp_epsilon_at(history, delta_error / 4, orders)
    for s, q, _ in history:
        size = max(size, _rdp_epsilon_at([(s, q, 1)], delta_error / (8 * total), orders))
    return max(size, eps_error) + 3


def _opacus_prv_upper(history: History, delta: float, eps_error: float,
                      delta_error: float, half_width: float) -> float:
    """``PRVAccountant.get_epsilon`` step by step (domain, truncation, discretisation,
    FFT composition, upper bound) with the domain size computed once by the caller."""
    from opacus.accountants.analysis.prv import (
        Domain,
        PoissonSubsampledGaussianPRV,
        TruncatedPrivacyRandomVariable,
        compose_heterogeneous,
        discretize,
    )

    prvs = [PoissonSubsampledGaussianPRV(q, s) for s, q, _ in history]
    counts = [t for _, _, t in history]
    mesh = eps_error / np.sqrt(sum(counts) * np.log(12 / delta_error) / 2)
    domain = Domain.create_aligned(-half_width, half_width, mesh)
    dprvs = [discretize(TruncatedPrivacyRandomVariable(p, domain.t_min, domain.t_max), domain)
             for p in prvs]
    dprv = compose_heterogeneous(dprvs=dprvs, num_self_compositions=counts)
    _, _, eps_upper = dprv.compute_epsilon(delta, delta_error, eps_error)
    return float(eps_upper)


#: largest PRV discretisation grid (points); beyond it eps_error is coarsened
_PRV_MAX_POINTS = 4_000_000
#: above this RDP ε the PRV's exp(t) overflows float64 on its domain
_PRV_MAX_EPSILON = 300.0


def _prv_epsilon(history: History, delta: float) -> float:
    """Opacus' PRV upper bound with ``eps_error`` chosen for the ε at hand.

    - Opacus' default ``eps_error = 0.01`` is absolute: 5 % of ε = 0.2. We
      start from ``clip(0.003·ε_rdp, 3e-4, 0.01)`` (ε_rdp ≥ ε_prv, so the
      added error is ≤ ~0.5 % of ε down to ε ≈ 0.1) and ``delta_error = δ/1000``.
    - The grid has ≈ 2L·√(T·log(12/δ_err)/2)/eps_error points (L: Opacus'
      safe domain). Very many steps, or a tiny δ, make that huge (memory,
      minutes); above ``_PRV_MAX_POINTS`` we coarsen ``eps_error`` to fit.
      Any eps_error gives a valid upper bound, only a looser one.
    - ε_rdp above ``_PRV_MAX_EPSILON``: PRV cannot represent the loss (float
      overflow); a BudgetError says so and names the RDP accountant.
    - If Opacus still fails we retry once with 10× ``eps_error``, then raise
      a BudgetError naming the RDP accountant as the fix.
    - The result is capped at ε_rdp: both are upper bounds, so the smaller is too.
    """
    eps_rdp = _rdp_epsilon(history, delta)
    if eps_rdp == 0.0:
        return 0.0
    if eps_rdp > _PRV_MAX_EPSILON:
        raise BudgetError(
            f"epsilon is astronomically large (RDP gives {eps_rdp:.4g}) for "
            f"{_describe(history)} at delta={delta:g}; the PRV accountant cannot represent it "
            "— use accountant='rdp', or add noise"
        )
    delta_error = delta / 1000
    eps_error = min(0.01, max(3e-4, 3e-3 * eps_rdp))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half_width = _safe_domain_size(history, eps_error, delta_error)
    total_steps = sum(t for _, _, t in history)
    points = 2 * half_width * math.sqrt(total_steps * math.log(12 / delta_error) / 2) / eps_error
    if points > _PRV_MAX_POINTS:
        eps_error *= points / _PRV_MAX_POINTS
    last: Exception | None = None
    for err in (eps_error, eps_error * 10):
        try:
            # Opacus sizes the domain as max(L, eps_error) + 3 for the eps_error
            # it is given; half_width already holds max(L, first eps_error) + 3
            width = max(half_width, err + 3)
            # overflow warnings inside Opacus' discretisation are expected at the
            # domain edges; a result that is not finite is caught below
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                eps = _opacus_prv_upper(history, delta, err, delta_error, width)
        except RuntimeError as e:
            if "Cannot compute epsilon" in str(e):
                # δ(ε) < δ on the whole domain: ε is ~0 up to the discretisation error
                return min(err, eps_rdp)
            last = e
            continue
        except (ValueError, MemoryError) as e:
            last = e
            continue
        if math.isfinite(eps):
            return max(0.0, min(eps, eps_rdp))
        last = RuntimeError(f"non-finite epsilon {eps}")
    raise BudgetError(
        f"the PRV accountant could not compute epsilon for {len(history)} mechanism(s) "
        f"{_describe(history)} at delta={delta:g} ({last}); "
        "use accountant='rdp' (a looser but robust upper bound)"
    )


def _describe(history: History) -> str:
    return ", ".join(f"(σ={s:g}, q={q:g}, T={t})" for s, q, t in history[:4]) + (
        ", …" if len(history) > 4 else ""
    )


def epsilon_of_history(history: Iterable[tuple[float, float, int]], delta: float,
                       accountant: str = "prv") -> float:
    """ε at ``delta`` of composed (σ, q, T) Poisson-subsampled Gaussian mechanisms.

    Empty history → 0; any σ = 0 → inf (no noise, no guarantee).
    """
    check_accountant(accountant)
    _check_delta(delta)
    hist: History = []
    for i, (sigma, q, steps) in enumerate(history):
        _check_mechanism(sigma, q, steps, where=f"mechanism {i}")
        if steps > 0:
            hist.append((float(sigma), float(q), int(steps)))
    if not hist:
        return 0.0
    if any(s == 0 for s, _, _ in hist):
        return math.inf
    if accountant == "gdp":
        return gdp_epsilon(gdp_mu(hist), delta)
    if accountant == "rdp":
        return _rdp_epsilon(hist, delta)
    return _prv_epsilon_memo(tuple(hist), delta)


@functools.lru_cache(maxsize=1024)
def _prv_epsilon_memo(history: tuple[tuple[float, float, int], ...], delta: float) -> float:
    """PRV ε is a pure function of (history, δ); the engine asks for the same one
    after calibration (planned ε) and at the end of training (ledger)."""
    return _prv_epsilon(list(history), delta)


def epsilon_of(spends: Iterable[DPSGDSpend | GaussianSpend], delta: float,
               accountant: str = "prv") -> float:
    """ε at ``delta`` of the composition of ledger spends under ``accountant``."""
    return epsilon_of_history(spends_to_history(spends), delta, accountant)


def dp_sgd_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float,
                   accountant: str = "prv") -> float:
    """ε of T steps of Poisson-subsampled DP-SGD with noise multiplier σ and rate q."""
    return epsilon_of_history([(noise_multiplier, sample_rate, steps)], delta, accountant)


def ledger_epsilon(ledger: Ledger) -> float:
    """A ledger's ε recomputed from its spends with its own accountant.

    A non-private ledger (target ε = ∞: trained without clipping or noise)
    is ∞ whatever its spends say.
    """
    if not ledger.is_private:
        return math.inf
    return epsilon_of(ledger.spends, ledger.delta, ledger.accountant)


# --------------------------------------------------------------------------- calibration


def calibrate_noise_multiplier(
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    accountant: str = "prv",
    other_spends: Iterable[DPSGDSpend | GaussianSpend] = (),
    rtol: float = 1e-3,
) -> float:
    """Smallest σ (to ``rtol``, rounded up) whose DP-SGD run, composed with
    ``other_spends``, stays within ``target_epsilon`` at ``delta``.

    Accountant evaluations are what cost (PRV: 0.1–0.5 s each), so: σ ↦ ε
    is monotone and nearly linear in log-log; a feasible σ comes from a
    closed-form upper bound (integer-order RDP), a Newton/secant step from
    there finds an infeasible one, Brent's method closes the bracket, and the
    answer is the smallest σ the requested accountant *verified* feasible,
    with an infeasible σ within ``rtol`` below it — 4–6 evaluations in all.
    """
    from scipy import optimize

    check_ledger_accountant(accountant)
    if not (isinstance(target_epsilon, int | float) and target_epsilon > 0
            and math.isfinite(target_epsilon)):
        raise BudgetError(
            f"target epsilon must be finite and > 0 to calibrate noise, got {target_epsilon} "
            "(a non-private run needs no calibration)"
        )
    _check_delta(delta)
    if not (0 < sample_rate <= 1):
        raise BudgetError(f"sample rate must be in (0, 1], got {sample_rate}")
    if int(steps) != steps or steps < 1:
        raise BudgetError(f"DP-SGD steps must be a whole number ≥ 1, got {steps}")
    steps = int(steps)
    other = spends_to_history(other_spends)
    base = epsilon_of_history(other, delta, accountant)
    if base >= target_epsilon:
        raise BudgetError(
            f"the other spends alone cost epsilon={base:.4g} ≥ target {target_epsilon:g} "
            f"(delta={delta:g}, {accountant}): no budget is left for DP-SGD; raise the "
            "target epsilon or add more noise to those spends"
        )

    def eps(sigma: float) -> float:  # memoized by epsilon_of_history's caches (PRV, RDP)
        return epsilon_of_history(other + [(sigma, sample_rate, steps)], delta, accountant)

    def feasible(sigma: float) -> bool:
        try:
            return eps(sigma) <= target_epsilon
        except BudgetError:
            # PRV fails only where ε is enormous (tiny σ): certainly over budget
            return False

    seen: dict[float, float] = {}  # log σ → gap, every accountant evaluation

    def gap(log_sigma: float) -> float:
        """log ε(σ) − log target: nearly linear in log σ, so secant steps converge fast."""
        try:
            e = eps(math.exp(log_sigma))
        except BudgetError:
            e = math.inf
        g = 50.0 if not math.isfinite(e) else (math.log(e) if e > 0 else -50.0) - math.log(target_epsilon)
        seen[log_sigma] = g
        return g

    # 1) a feasible σ from a cheap upper bound: RDP at integer orders only
    #    (closed form, no fractional-order series) bounds ε under every
    #    ledger accountant from above — min over fewer orders ≥ RDP ≥ PRV;
    #    bisection on it costs milliseconds
    def cheap(sigma: float) -> float:
        hist = other + [(sigma, sample_rate, steps)]
        return max(0.0, _rdp_epsilon_at(hist, delta, _RDP_INT_ORDERS))
    hi = 1.0
    while cheap(hi) > target_epsilon:
        hi *= 2
        if hi > 1e6:
            raise BudgetError(
                f"no noise multiplier up to 1e6 reaches epsilon={target_epsilon:g} "
                f"(q={sample_rate:g}, T={steps}, delta={delta:g}); raise the target"
            )
    lo = hi / 2
    while hi - lo > rtol / 4 * hi:
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if cheap(mid) <= target_epsilon else (mid, hi)
    while not feasible(hi):  # pragma: no cover - the cheap bound is an upper bound
        hi *= 1.1

    # 2) a lower end: Newton steps on gap(log σ) with the cheap bound's slope
    #    (the accountants' curves are near-parallel in log-log), then secants
    #    through the accountant's own values, until a σ is over budget
    x_hi, g_hi = math.log(hi), gap(math.log(hi))
    e_hi, e_up = cheap(hi), cheap(hi * 1.01)
    slope = (math.log(e_up / e_hi) / math.log(1.01)) if 0 < e_up < e_hi < math.inf else -1.0
    slope = slope if slope < -1e-3 else -1.0
    while True:
        # aim a little past the root (gap = +log(1 + rtol)), so the point lands over budget
        x_lo = x_hi - max((math.log1p(rtol) - g_hi) / -slope, math.log1p(rtol))
        g_lo = gap(x_lo)
        if g_lo > 0:
            break
        if x_lo < math.log(1e-6):
            raise BudgetError(
                f"epsilon={target_epsilon:g} is met with essentially no noise "
                f"(q={sample_rate:g}, T={steps}); check the inputs"
            )
        secant = (g_lo - g_hi) / (x_lo - x_hi)
        slope = secant if secant < -1e-3 else slope
        x_hi, g_hi = x_lo, g_lo

    # 3) Brent's method on the bracket (both ends already evaluated: memoized);
    #    every σ it evaluates is recorded, and the answer is the smallest σ
    #    verified feasible, once the largest infeasible one is within rtol of it
    optimize.brentq(gap, x_lo, x_hi, xtol=math.log1p(rtol) / 2)
    over = max(x for x, g in seen.items() if g > 0)
    candidate = math.exp(min(x for x, g in seen.items() if g <= 0))
    while candidate > math.exp(over) * (1 + rtol):  # pragma: no cover - Brent's bracket is tighter
        mid = math.sqrt(candidate * math.exp(over))
        if feasible(mid):
            candidate = mid
        else:
            over = math.log(mid)
    sigma = float(candidate)
    if not feasible(sigma):  # pragma: no cover - guarded by the invariant
        raise BudgetError(f"calibration failed to verify sigma={sigma} for epsilon={target_epsilon}")
    return sigma


# --------------------------------------------------------------------------- Opacus objects


def make_opacus_accountant(name: str) -> Any:
    """A fresh Opacus accountant of that kind, for stepping during training.

    Its ``history`` feeds :func:`epsilon_of_history`, and its
    ``state_dict()`` goes into checkpoints. Only ledger accountants train.
    """
    check_ledger_accountant(name)
    from opacus.accountants import PRVAccountant, RDPAccountant

    return {"rdp": RDPAccountant, "prv": PRVAccountant}[name]()
