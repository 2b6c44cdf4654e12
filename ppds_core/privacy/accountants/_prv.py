"""PRV: Opacus' privacy-random-variable accountant (Gopi et al. 2021), the tight one.

It returns an *upper* bound (estimate + ``eps_error``); ppds picks
``eps_error`` relative to the ε at hand (see :func:`prv_epsilon_uncached`) rather
than Opacus' fixed 0.01, so small budgets are not inflated by several %. The
pipeline is Opacus' ``PRVAccountant.get_epsilon`` step by step, with the domain
size computed from the memoized RDP (tests check both against Opacus to the bit).
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np

from ...errors import BudgetError
from ._common import History, describe
from ._opacus import OPACUS_DEFAULT_ALPHAS, analysis
from ._rdp import rdp_epsilon, rdp_epsilon_at

__all__ = ["PRV_MAX_EPSILON", "PRV_MAX_POINTS", "opacus_prv_upper", "prv_epsilon",
           "prv_epsilon_memo", "prv_epsilon_uncached", "safe_domain_size"]

#: largest PRV discretisation grid (points); beyond it eps_error is coarsened
PRV_MAX_POINTS = 4_000_000
#: above this RDP ε the PRV's exp(t) overflows float64 on its domain
PRV_MAX_EPSILON = 300.0


def safe_domain_size(history: History, eps_error: float, delta_error: float) -> float:
    """Opacus' ``compute_safe_domain_size`` (Gopi et al., remark 5.6), same orders and
    formula, on the memoized RDP: it is the bulk of a PRV evaluation otherwise."""
    orders = OPACUS_DEFAULT_ALPHAS
    total = sum(t for _, _, t in history)
    size = rdp_epsilon_at(history, delta_error / 4, orders)
    for s, q, _ in history:
        size = max(size, rdp_epsilon_at([(s, q, 1)], delta_error / (8 * total), orders))
    return max(size, eps_error) + 3


def opacus_prv_upper(history: History, delta: float, eps_error: float,
                     delta_error: float, half_width: float) -> float:
    """``PRVAccountant.get_epsilon`` step by step (domain, truncation, discretisation,
    FFT composition, upper bound) with the domain size computed once by the caller."""
    prv = analysis("prv")
    Domain, PoissonSubsampledGaussianPRV = prv.Domain, prv.PoissonSubsampledGaussianPRV
    TruncatedPrivacyRandomVariable, discretize = prv.TruncatedPrivacyRandomVariable, prv.discretize
    compose_heterogeneous = prv.compose_heterogeneous

    prvs = [PoissonSubsampledGaussianPRV(q, s) for s, q, _ in history]
    counts = [t for _, _, t in history]
    mesh = eps_error / np.sqrt(sum(counts) * np.log(12 / delta_error) / 2)
    domain = Domain.create_aligned(-half_width, half_width, mesh)
    dprvs = [discretize(TruncatedPrivacyRandomVariable(p, domain.t_min, domain.t_max), domain)
             for p in prvs]
    dprv = compose_heterogeneous(dprvs=dprvs, num_self_compositions=counts)
    _, _, eps_upper = dprv.compute_epsilon(delta, delta_error, eps_error)
    return float(eps_upper)


def _first_eps_error(history: History, eps_rdp: float, delta_error: float) -> tuple[float, float]:
    """(eps_error, half width): relative to ε, coarsened so the grid fits PRV_MAX_POINTS."""
    eps_error = min(0.01, max(3e-4, 3e-3 * eps_rdp))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half_width = safe_domain_size(history, eps_error, delta_error)
    total_steps = sum(t for _, _, t in history)
    points = 2 * half_width * math.sqrt(total_steps * math.log(12 / delta_error) / 2) / eps_error
    if points > PRV_MAX_POINTS:
        eps_error *= points / PRV_MAX_POINTS
    return eps_error, half_width


def prv_epsilon_uncached(history: History, delta: float) -> float:
    """Opacus' PRV upper bound with ``eps_error`` chosen for the ε at hand.

    - Opacus' default ``eps_error = 0.01`` is absolute: 5 % of ε = 0.2. We
      start from ``clip(0.003·ε_rdp, 3e-4, 0.01)`` (ε_rdp ≥ ε_prv, so the
      added error is ≤ ~0.5 % of ε down to ε ≈ 0.1) and ``delta_error = δ/1000``.
    - The grid has ≈ 2L·√(T·log(12/δ_err)/2)/eps_error points (L: Opacus'
      safe domain). Very many steps, or a tiny δ, make that huge (memory,
      minutes); above ``PRV_MAX_POINTS`` we coarsen ``eps_error`` to fit.
      Any eps_error gives a valid upper bound, only a looser one.
    - ε_rdp above ``PRV_MAX_EPSILON``: PRV cannot represent the loss (float
      overflow); a BudgetError says so and names the RDP accountant.
    - If Opacus still fails we retry once with 10× ``eps_error``, then raise
      a BudgetError naming the RDP accountant as the fix.
    - The result is capped at ε_rdp: both are upper bounds, so the smaller is too.
    """
    eps_rdp = rdp_epsilon(history, delta)
    if eps_rdp == 0.0:
        return 0.0
    if eps_rdp > PRV_MAX_EPSILON:
        raise BudgetError(
            f"epsilon is astronomically large (RDP gives {eps_rdp:.4g}) for "
            f"{describe(history)} at delta={delta:g}; the PRV accountant cannot represent it "
            "— use accountant='rdp', or add noise"
        )
    delta_error = delta / 1000
    eps_error, half_width = _first_eps_error(history, eps_rdp, delta_error)
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
                eps = opacus_prv_upper(history, delta, err, delta_error, width)
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
        f"{describe(history)} at delta={delta:g} ({last}); "
        "use accountant='rdp' (a looser but robust upper bound)"
    )


@functools.lru_cache(maxsize=1024)
def prv_epsilon_memo(history: tuple[tuple[float, float, int], ...], delta: float) -> float:
    """PRV ε is a pure function of (history, δ): calibration's last probe, a progress
    report and a recomputing verifier ask for the same one, which is evaluated once."""
    return prv_epsilon_uncached(list(history), delta)


def prv_epsilon(history: History, delta: float) -> float:
    """The accountant table's entry: ε of a checked, non-empty history under PRV."""
    return prv_epsilon_memo(tuple(history), delta)
