"""ε of a composed history under a named accountant: one table, name → function.

Every accountant is a function ``(history, δ) → ε`` of a checked, non-empty
history with no σ = 0 (those cases are the same for all of them: 0 and ∞).
Adding an accountant is one module and one entry here; nothing else switches
on its name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from ...errors import ConfigError, did_you_mean
from ..ledger import DPSGDSpend, GaussianSpend, Ledger
from ._common import History, check_delta, check_mechanism
from ._gdp import gdp_history_epsilon
from ._prv import prv_epsilon
from ._rdp import rdp_epsilon

__all__ = [
    "ACCOUNTANTS",
    "EPSILON_OF",
    "LEDGER_ACCOUNTANTS",
    "check_accountant",
    "check_ledger_accountant",
    "dp_sgd_epsilon",
    "epsilon_of",
    "epsilon_of_history",
    "ledger_epsilon",
    "spends_to_history",
]

#: the accountants, by name (the order is the one error messages list them in)
EPSILON_OF: dict[str, Callable[[History, float], float]] = {
    "rdp": rdp_epsilon,
    "prv": prv_epsilon,
    "gdp": gdp_history_epsilon,
}
ACCOUNTANTS: tuple[str, ...] = tuple(EPSILON_OF)
#: the accountants that *upper*-bound ε for Poisson-subsampled Gaussian mechanisms: only
#: these may calibrate noise, train and fill a ledger. ``gdp``'s CLT approximation
#: under-reports ε (4.6× on a small-q, few-step plan), so it answers ``ppds bounds``
#: questions, labelled as an approximation, and nothing else.
LEDGER_ACCOUNTANTS: tuple[str, ...] = ("prv", "rdp")


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
        check_mechanism(*item, where=f"spend {i} ({s.mechanism})")
        if item[2] > 0:
            history.append(item)
    return history


def epsilon_of_history(history: Iterable[tuple[float, float, int]], delta: float,
                       accountant: str = "prv") -> float:
    """ε at ``delta`` of composed (σ, q, T) Poisson-subsampled Gaussian mechanisms.

    Empty history → 0; any σ = 0 → inf (no noise, no guarantee).
    """
    check_accountant(accountant)
    check_delta(delta)
    hist: History = []
    for i, (sigma, q, steps) in enumerate(history):
        check_mechanism(sigma, q, steps, where=f"mechanism {i}")
        if steps > 0:
            hist.append((float(sigma), float(q), int(steps)))
    if not hist:
        return 0.0
    if any(s == 0 for s, _, _ in hist):
        return math.inf
    return EPSILON_OF[accountant](hist, delta)


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
