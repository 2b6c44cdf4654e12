"""RDP: Opacus' Rényi accountant on a denser order grid, memoized per (q, σ, order).

A looser but very robust upper bound; the PRV accountant sizes its domain
with it and caps its result at it, and calibration brackets σ with its
integer orders (closed form, milliseconds).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence

import numpy as np

from ._common import History
from ._opacus import analysis

__all__ = ["RDP_INT_ORDERS", "RDP_ORDERS", "RDP_ORDERS_T", "history_rdp", "rdp_epsilon",
           "rdp_epsilon_at"]

#: RDP orders: Opacus' default grid extended to large orders, which small-ε
#: (large-σ) runs need; a larger grid can only tighten the minimum.
RDP_ORDERS: list[float] = (
    [1 + x / 10.0 for x in range(1, 100)]
    + list(range(11, 64))
    + [64.0, 80.0, 96.0, 128.0, 160.0, 192.0, 256.0, 384.0, 512.0, 1024.0]
)
RDP_ORDERS_T: tuple[float, ...] = tuple(float(a) for a in RDP_ORDERS)
#: the integer orders of that grid: Opacus' closed form, cheap; calibration
#: brackets σ with them (fewer orders → a larger, still valid, upper bound)
RDP_INT_ORDERS: tuple[float, ...] = tuple(a for a in RDP_ORDERS_T if a == int(a))


@functools.lru_cache(maxsize=65536)
def rdp_at_order(sample_rate: float, noise_multiplier: float, order: float) -> float:
    """Opacus' one-step RDP at one order; shared by the order grids that overlap
    (ppds' ε grid and Opacus' default grid for the PRV domain size)."""
    return float(analysis("rdp")._compute_rdp(sample_rate, noise_multiplier, order))


@functools.lru_cache(maxsize=4096)
def one_step_rdp(sample_rate: float, noise_multiplier: float,
                 orders: tuple[float, ...]) -> np.ndarray:
    """Opacus' RDP of ONE Poisson-subsampled Gaussian step at each order (read-only).

    Opacus evaluates fractional orders with a Python series per order (~1 ms
    each, ~0.2 s per σ); a run reports ε many times for the same (q, σ) and a
    calibration probes each σ under several δ, so the vector is computed once
    per (q, σ, orders). T identical steps compose to T × this vector —
    exactly what Opacus' ``compute_rdp(steps=T)`` returns (``rdp * steps``,
    with ``rdp`` built element by element as here).
    """
    rdp = np.array([rdp_at_order(sample_rate, noise_multiplier, a) for a in orders])
    rdp.flags.writeable = False
    return rdp


def history_rdp(history: Sequence[tuple[float, float, int]],
                orders: tuple[float, ...]) -> np.ndarray:
    """RDP of a composed history, summed in Opacus' order (bit-identical to its accountant)."""
    return sum([one_step_rdp(float(q), float(s), orders) * int(t) for s, q, t in history])


def rdp_epsilon_at(history: Sequence[tuple[float, float, int]], delta: float,
                   orders: tuple[float, ...]) -> float:
    """Opacus' RDP→(ε, δ) conversion (``get_privacy_spent``) of the memoized RDP."""
    get_privacy_spent = analysis("rdp").get_privacy_spent
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "optimal order is the largest alpha" → still an upper bound
        eps, _ = get_privacy_spent(orders=list(orders), rdp=history_rdp(history, orders),
                                   delta=delta)
    return float(eps)


def rdp_epsilon(history: History, delta: float) -> float:
    """The accountant table's entry: ε of a checked, non-empty history under RDP."""
    return max(0.0, rdp_epsilon_at(history, delta, RDP_ORDERS_T))
