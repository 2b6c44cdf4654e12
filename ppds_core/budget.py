"""The privacy budget a cell is trained under."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, field_validator

__all__ = ["PrivacyBudget", "check_delta_for"]


class PrivacyBudget(BaseModel):
    """A target (ε, δ). ``epsilon = inf`` means "the same recipe without DP".

    The non-private reference row is part of every honest comparison, so it is a
    budget like any other rather than a separate code path: generators receive
    ``inf`` and switch noise and clipping off, keeping everything else equal.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    epsilon: float
    delta: float = 1e-5

    @field_validator("epsilon", mode="before")
    @classmethod
    def _parse_epsilon(cls, v):
        if isinstance(v, str) and v.strip().lower() in {"inf", "infinity", ".inf", "none"}:
            return math.inf
        return v

    @field_validator("epsilon")
    @classmethod
    def _check_epsilon(cls, v: float) -> float:
        if math.isnan(v) or v <= 0:
            raise ValueError(
                f"epsilon must be > 0 (or 'inf' for the non-private reference), got {v}"
            )
        return v

    @field_validator("delta")
    @classmethod
    def _check_delta(cls, v: float) -> float:
        if not 0 < v < 1:
            raise ValueError(
                f"delta must satisfy 0 < delta < 1 (typically below 1/N of the private set), got {v}"
            )
        return v

    @property
    def is_private(self) -> bool:
        return math.isfinite(self.epsilon)

    def label(self) -> str:
        """'ε=10' or 'ε=∞ (non-private)' — for tables and plots."""
        return f"ε={self.epsilon:g}" if self.is_private else "ε=∞ (non-private)"


def check_delta_for(delta: float, num_examples: int) -> None:
    """Refuse δ ≥ 1/N for a private set of N examples (BudgetError naming N and the limit).

    An (ε, δ) guarantee with δ ≥ 1/N is met by a mechanism that publishes one
    randomly chosen example outright; it protects nobody. The usual choice is
    δ ≪ 1/N (1e-5 for the embedded sets).
    """
    from .errors import BudgetError

    n = int(num_examples)
    if n > 0 and delta >= 1.0 / n:
        raise BudgetError(
            f"delta={delta:g} is not below 1/N = 1/{n} = {1 / n:.3g} for the {n} private examples: such "
            f"a guarantee allows publishing an example outright; use delta < {1 / n:.3g}, usually "
            f"much smaller (e.g. {10 ** math.floor(math.log10(0.1 / n)):.0e})"
        )
