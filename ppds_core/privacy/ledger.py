"""The privacy ledger: every spend of one trained model, in one file.

Contract (docs/architecture.md): ``{"target_epsilon", "delta", "accountant",
"epsilon_spent", "spends": [...]}`` with one spend per mechanism run. Anyone
can recompute ``epsilon_spent`` from ``spends`` with an independent accountant,
so a spend records every parameter the accountant needs and nothing is implied.

Parse once, trust after: a spend is frozen and validated when it is built (or
read), and the ledger's target and δ are :data:`~ppds_core.budget.Epsilon` and
:data:`~ppds_core.budget.Delta`, the types the budget and the matrix config use.
JSON has no infinity, so ``inf`` is written as the string ``"inf"``
(:func:`~ppds_core.budget.encode_float`) and read back as ``math.inf``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from ..atomic import atomic_write_text
from ..budget import Delta, Epsilon, decode_float, encode_float, parse_epsilon

__all__ = ["DPSGDSpend", "GaussianSpend", "Spend", "Ledger"]


class _Spend(BaseModel):
    # frozen: a spend is a record of what happened; validated: every number is one an
    # accountant can price (σ ≥ 0, q in (0, 1], whole step counts), checked once here
    model_config = ConfigDict(extra="forbid", frozen=True)


#: σ = std / sensitivity; 0 is allowed (no noise: ε = ∞), NaN and negatives are not
NoiseMultiplier = Annotated[float, Field(ge=0)]
#: an ε already spent: ≥ 0, or ∞ (also read from its JSON spelling "inf")
EpsilonSpent = Annotated[float, BeforeValidator(parse_epsilon), Field(ge=0)]


class DPSGDSpend(_Spend):
    """T steps of Poisson-subsampled Gaussian DP-SGD."""

    mechanism: Literal["dp-sgd"] = "dp-sgd"
    noise_multiplier: NoiseMultiplier
    sample_rate: float = Field(gt=0, le=1)
    steps: int = Field(ge=0)
    max_grad_norm: float = Field(gt=0, allow_inf_nan=False)
    sampling: Literal["poisson"] = "poisson"
    purpose: str = "training"


class GaussianSpend(_Spend):
    """A Gaussian mechanism run ``count`` times on the full data (q = 1).

    ``noise_multiplier`` is std / sensitivity (the σ that enters the
    accountant), e.g. PrivImage's semantic query with σ_q on a histogram of
    L2 sensitivity √k has noise std σ_q·√k and noise multiplier σ_q.
    """

    mechanism: Literal["gaussian"] = "gaussian"
    noise_multiplier: NoiseMultiplier
    sensitivity: float = Field(gt=0, allow_inf_nan=False)
    count: int = Field(default=1, ge=0)
    purpose: str = ""


Spend = Annotated[DPSGDSpend | GaussianSpend, Field(discriminator="mechanism")]


class Ledger(BaseModel):
    """All privacy spends of one model and the ε they compose to.

    ``epsilon_spent`` is the accountant's ε for the composition of ``spends``
    at ``delta``; it is ``inf`` for a non-private reference model and 0 before
    any spend.
    """

    model_config = ConfigDict(extra="forbid")

    target_epsilon: Epsilon
    delta: Delta
    accountant: str = "prv"
    epsilon_spent: EpsilonSpent = 0.0
    spends: list[Spend] = Field(default_factory=list)
    secure_rng: bool = False
    #: the mechanisms' randomness was derived from the run's (public) seed, not OS entropy
    reproducible_noise: bool = False
    notes: list[str] = Field(default_factory=list)

    @property
    def is_private(self) -> bool:
        return math.isfinite(self.target_epsilon)

    def dp_sgd(self) -> DPSGDSpend | None:
        """The (last) DP-SGD spend, which attacks and the ReRo metric read."""
        found = [s for s in self.spends if isinstance(s, DPSGDSpend)]
        return found[-1] if found else None

    def to_json(self) -> str:
        data = self.model_dump()
        for key in ("target_epsilon", "epsilon_spent"):
            data[key] = encode_float(data[key])
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str) -> Ledger:
        data = json.loads(text)
        for key in ("target_epsilon", "epsilon_spent"):
            if key in data:
                data[key] = decode_float(data[key])
        return cls.model_validate(data)

    def write(self, path: str | Path) -> None:
        """Atomic write: a crash leaves the old ledger or the new one, never half."""
        atomic_write_text(path, self.to_json())  # random temp name: a planted link cannot redirect it

    @classmethod
    def read(cls, path: str | Path) -> Ledger:
        return cls.from_json(Path(path).read_text())
