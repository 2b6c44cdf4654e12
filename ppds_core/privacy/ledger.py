"""The privacy ledger: every spend of one trained model, in one file.

Contract (docs/architecture.md): ``{"target_epsilon", "delta", "accountant",
"epsilon_spent", "spends": [...]}`` with one spend per mechanism run. Anyone
can recompute ``epsilon_spent`` from ``spends`` with an independent accountant,
so a spend records every parameter the accountant needs and nothing is implied.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..atomic import atomic_write_text

__all__ = ["DPSGDSpend", "GaussianSpend", "Spend", "Ledger"]


class _Spend(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DPSGDSpend(_Spend):
    """T steps of Poisson-subsampled Gaussian DP-SGD."""

    mechanism: Literal["dp-sgd"] = "dp-sgd"
    noise_multiplier: float
    sample_rate: float
    steps: int
    max_grad_norm: float
    sampling: Literal["poisson"] = "poisson"
    purpose: str = "training"


class GaussianSpend(_Spend):
    """A Gaussian mechanism run ``count`` times on the full data (q = 1).

    ``noise_multiplier`` is std / sensitivity (the σ that enters the
    accountant), e.g. PrivImage's semantic query with σ_q on a histogram of
    L2 sensitivity √k has noise std σ_q·√k and noise multiplier σ_q.
    """

    mechanism: Literal["gaussian"] = "gaussian"
    noise_multiplier: float
    sensitivity: float
    count: int = 1
    purpose: str = ""


Spend = Annotated[DPSGDSpend | GaussianSpend, Field(discriminator="mechanism")]


class Ledger(BaseModel):
    """All privacy spends of one model and the ε they compose to.

    ``epsilon_spent`` is the accountant's ε for the composition of ``spends``
    at ``delta``; it is ``inf`` for a non-private reference model and 0 before
    any spend.
    """

    model_config = ConfigDict(extra="forbid")

    target_epsilon: float
    delta: float
    accountant: str = "prv"
    epsilon_spent: float = 0.0
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
            if not math.isfinite(data[key]):
                data[key] = "inf"
        return json.dumps(data, indent=2)

    @classmethod
    def from_json(cls, text: str) -> Ledger:
        data = json.loads(text)
        for key in ("target_epsilon", "epsilon_spent"):
            if data.get(key) == "inf":
                data[key] = math.inf
        return cls.model_validate(data)

    def write(self, path: str | Path) -> None:
        """Atomic write: a crash leaves the old ledger or the new one, never half."""
        atomic_write_text(path, self.to_json())  # random temp name: a planted link cannot redirect it

    @classmethod
    def read(cls, path: str | Path) -> Ledger:
        return cls.from_json(Path(path).read_text())
