"""One Gaussian release, calibrated and recorded: the ledger of a generator without DP-SGD.

A generator that privatises a statistic once (DP-MERF's mean embedding, a
noisy histogram, PrivImage's semantic query) needs three things done right:
σ calibrated with an accountant that upper-bounds ε, the noise drawn from
unpredictable randomness, and a ledger the core can recompute. Doing them by
hand is where ledgers go wrong, so::

    from ppds_core.privacy import gaussian_release

    rel = gaussian_release(sensitivity=2 * C / n, budget=budget, ctx=ctx,
                           purpose="mean embedding")
    noisy = rel.privatize(embedding)      # embedding + N(0, (σ·Δ)²), OS entropy
    return rel.ledger                     # fit() returns it; the core recomputes ε

``count`` releases of the same mechanism compose on one spend; ``other_spends``
are earlier spends of the same model (their budget share is respected). At
ε = ∞ nothing is calibrated, ``privatize`` returns its input unchanged and the
ledger is the non-private reference's (no spend).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..budget import PrivacyBudget
from ..errors import BudgetError
from .accounting import calibrate_noise_multiplier, check_ledger_accountant, epsilon_of
from .ledger import DPSGDSpend, GaussianSpend, Ledger
from .randomness import SEEDED_NOISE_NOTE, mechanism_generator

__all__ = ["GaussianRelease", "gaussian_release"]


@dataclass(frozen=True)
class GaussianRelease:
    """A calibrated Gaussian mechanism: its σ, its ledger, and the noise to add."""

    #: σ = noise std / sensitivity (what the accountant sees); 0 when non-private
    noise_multiplier: float
    sensitivity: float
    ledger: Ledger
    generator: Any = None  # torch.Generator of the noise (None: non-private)

    @property
    def noise_std(self) -> float:
        """The std of the noise added to each coordinate: σ · Δ."""
        return self.noise_multiplier * self.sensitivity

    def privatize(self, value: Any) -> Any:
        """``value`` (a tensor) plus i.i.d. N(0, (σ·Δ)²) noise per coordinate.

        Each call is one run of the mechanism: call it at most ``count`` times.
        """
        if self.generator is None:
            return value
        import torch

        noise = torch.randn(value.shape, generator=self.generator, dtype=value.dtype,
                            device=self.generator.device)
        return value + self.noise_std * noise.to(value.device)


def gaussian_release(
    sensitivity: float,
    budget: PrivacyBudget,
    *,
    ctx: Any = None,
    count: int = 1,
    other_spends: Iterable[DPSGDSpend | GaussianSpend] = (),
    accountant: str | None = None,
    purpose: str = "",
) -> GaussianRelease:
    """Calibrate σ for ``count`` full-data Gaussian releases within ``budget`` and record them.

    ``sensitivity`` is the L2 sensitivity Δ of the released statistic under the
    add/remove adjacency (docs/privacy-accounting.md). ``ctx`` (a FitContext)
    supplies the seed, ``reproducible_noise`` and the default accountant.
    """
    if not (isinstance(sensitivity, int | float) and sensitivity > 0 and math.isfinite(sensitivity)):
        raise BudgetError(f"gaussian_release: sensitivity must be finite and > 0, got {sensitivity}")
    if int(count) != count or count < 1:
        raise BudgetError(f"gaussian_release: count must be a whole number ≥ 1, got {count}")
    seed = int(getattr(ctx, "seed", 0))
    reproducible = bool(getattr(ctx, "reproducible_noise", False))
    accountant = check_ledger_accountant(accountant or getattr(ctx, "accountant", "prv"))
    other = list(other_spends)
    if not budget.is_private:
        ledger = Ledger(target_epsilon=math.inf, delta=budget.delta, accountant=accountant,
                        epsilon_spent=math.inf)
        return GaussianRelease(0.0, float(sensitivity), ledger, None)
    # count full-data releases are count steps of the q = 1 subsampled Gaussian
    sigma = calibrate_noise_multiplier(budget.epsilon, budget.delta, 1.0, int(count),
                                       accountant=accountant, other_spends=other)
    spend = GaussianSpend(noise_multiplier=sigma, sensitivity=float(sensitivity), count=int(count),
                          purpose=purpose)
    spends = [*other, spend]
    ledger = Ledger(target_epsilon=budget.epsilon, delta=budget.delta, accountant=accountant,
                    epsilon_spent=epsilon_of(spends, budget.delta, accountant), spends=spends,
                    reproducible_noise=reproducible,
                    notes=[SEEDED_NOISE_NOTE] if reproducible else [])
    generator = mechanism_generator(seed, "gaussian-release", purpose, reproducible=reproducible)
    return GaussianRelease(sigma, float(sensitivity), ledger, generator)
