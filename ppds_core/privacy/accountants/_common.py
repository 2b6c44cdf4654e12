"""What every accountant shares: the history format and its input checks."""

from __future__ import annotations

import math

from ...errors import BudgetError

__all__ = ["History", "check_delta", "check_mechanism", "describe"]

#: (noise_multiplier, sample_rate, steps) per mechanism, Opacus' history format
History = list[tuple[float, float, int]]


def check_mechanism(noise_multiplier: float, sample_rate: float, steps: int, where: str) -> None:
    """Refuse a mechanism no accountant can price (BudgetError naming ``where``)."""
    if not (isinstance(noise_multiplier, int | float) and noise_multiplier >= 0
            and not math.isnan(noise_multiplier)):
        raise BudgetError(f"{where}: noise multiplier must be ≥ 0, got {noise_multiplier}")
    if not (0 < sample_rate <= 1):
        raise BudgetError(f"{where}: sample rate must be in (0, 1], got {sample_rate}")
    if int(steps) != steps or steps < 0:
        raise BudgetError(f"{where}: steps must be a whole number ≥ 0, got {steps}")


def check_delta(delta: float) -> None:
    if not (0 < delta < 1):
        raise BudgetError(f"delta must satisfy 0 < delta < 1, got {delta}")


def describe(history: History) -> str:
    """The first mechanisms of a history, for an error message."""
    return ", ".join(f"(σ={s:g}, q={q:g}, T={t})" for s, q, t in history[:4]) + (
        ", …" if len(history) > 4 else ""
    )
