"""The ReRo bound that ``rero-bound`` reports: rigorous, from a pessimistic privacy-loss distribution.

Kept apart from :mod:`.bounds` (which re-exports it) because it is the one
function there that must *bound* rather than estimate or cross-check: see
docs/privacy-accounting.md, "The reported bound".
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError

__all__ = ["rero_pld"]


def rero_pld(kappa: float, history: Sequence[tuple[float, float, int]],
             discretization: float = 1e-4) -> float:
    """A rigorous upper bound on ReRo γ(κ) from dp_accounting's *pessimistic* PLD.

    For any event E and any ε (negative ones included),
    Q(E) ≤ δ(ε) + e^ε·P(E), where δ(ε) = sup_E Q(E) − e^ε·P(E) is the hockey-stick
    divergence. Hence γ(κ) = sup{Q(E) : P(E) ≤ κ} ≤ δ(ε) + e^ε·κ for *every* ε
    (with equality at the best ε: convex duality), and any δ̄(ε) ≥ δ(ε) keeps
    it a bound. dp_accounting's pessimistic PLD (connect-the-dots, tails to
    +∞) gives exactly such a δ̄ for the composed (σ, q, T) history (the max of
    its add and remove directions; the remove one is this module's pair). So
    min over an ε grid of δ̄(ε) + e^ε·κ is an upper bound whatever the grid;
    a fine grid makes it tight (it agrees with :func:`rero_numerical` to ~1e-5).
    Unlike the Monte-Carlo point estimate it cannot fall below γ: this is the
    value the ``rero-bound`` metric reports. ~1 s for T = 200, ~3 s for T = 1000.
    """
    from dp_accounting.pld import privacy_loss_distribution as pld_lib

    from .bounds import _check_kappa  # here, not at the top: bounds re-exports this module

    _check_kappa(kappa)
    history = [(float(s), float(q), int(t)) for s, q, t in history if int(t) > 0]
    if not history:
        raise ConfigError("the ReRo bound needs at least one mechanism with steps ≥ 1")
    composed = None
    for sigma, q, steps in history:
        if not (0 < sigma < math.inf and 0 < q <= 1):
            raise ConfigError(f"need finite σ > 0 and q in (0, 1], got σ={sigma}, q={q}")
        one = pld_lib.from_gaussian_mechanism(sigma, sampling_prob=q, pessimistic_estimate=True,
                                              value_discretization_interval=discretization)
        one = one.self_compose(steps)
        composed = one if composed is None else composed.compose(one)

    def bound(eps: np.ndarray) -> np.ndarray:
        return np.asarray(composed.get_delta_for_epsilon(eps)) + np.exp(eps) * kappa

    # coarse grid over every ε that can matter (e^ε·κ ≤ 1 ⇒ ε ≤ log(1/κ)), then refine
    coarse = np.linspace(-20.0, math.log(1.0 / kappa), 4001)
    values = bound(coarse)
    i = int(np.argmin(values))
    fine = np.linspace(coarse[max(i - 1, 0)], coarse[min(i + 1, len(coarse) - 1)], 2001)
    return float(min(1.0, values[i], bound(fine).min()))
