"""μ-GDP (closed form): ``ppds bounds`` and budget splitting only, never a ledger.

μ = q·√T·√(e^{1/σ²} − 1) per mechanism (the central-limit approximation of
Bu et al. 2020), composed as μ = √(Σ μᵢ²), converted with
δ(ε) = Φ(−ε/μ + μ/2) − e^ε·Φ(−ε/μ − μ/2). Full-data Gaussian mechanisms
(q = 1) are *exactly* (√T/σ)-GDP and use that. The CLT approximation can
*under*-estimate ε, which is why it never calibrates, trains or fills a ledger.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ._common import History, check_delta

__all__ = ["gdp_delta", "gdp_epsilon", "gdp_history_epsilon", "gdp_mu", "gdp_mu_for"]


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

    check_delta(delta)
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

    check_delta(delta)
    if math.isinf(epsilon):
        return math.inf
    if epsilon < 0:
        raise ValueError(f"epsilon must be ≥ 0, got {epsilon}")
    hi = 1.0
    while gdp_delta(epsilon, hi) < delta:  # δ(ε; μ) grows with μ
        hi *= 2
    return float(optimize.brentq(lambda m: gdp_delta(epsilon, m) - delta, 1e-12, hi,
                                 xtol=1e-12, rtol=1e-12))


def gdp_history_epsilon(history: History, delta: float) -> float:
    """The accountant table's entry: ε of a checked, non-empty history under μ-GDP."""
    return gdp_epsilon(gdp_mu(history), delta)
