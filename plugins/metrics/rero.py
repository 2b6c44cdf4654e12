"""``rero-bound``: the ReRo upper bound on reconstruction success for a cell's model.

Reads every spend on the cell's privacy ledger and bounds the probability
that *any* reconstruction attack (Hayes, Mahloujifar & Balle 2023) succeeds
against the trained model, for an adversary whose prior alone succeeds with
probability κ. It needs no samples and no attack: it is the guarantee side of
the reconstruction story, against which the ``reconstruction`` attack's
empirical success is compared.

Lower is better for privacy: γ caps every attacker's success rate, so a
small γ is a strong guarantee (``higher_is_better = False``).
"""

from __future__ import annotations

import math
from typing import ClassVar

from pydantic import Field

from ppds_core import EvalContext, Measurement, Metric, PluginConfig, SkipMeasurement, hookimpl
from ppds_core.privacy.accounting import gdp_mu, spends_to_history
from ppds_core.privacy.bounds import (
    rero_composition,
    rero_dp,
    rero_gdp,
    rero_numerical,
    rero_pld,
)

__all__ = ["ReRoBound", "register_plugins"]


class ReRoConfig(PluginConfig):
    kappa: float = Field(
        0.01,
        gt=0.0,
        lt=1.0,
        description="the prior's base success rate κ (1/n for a uniform prior over n candidates); "
        "0.01 is a prior that alone reconstructs 1% of targets",
    )
    samples: int = Field(
        50_000, ge=100, description="Monte-Carlo draws under each of P and Q (cost ∝ samples × steps)"
    )
    seed: int = Field(0, description="Monte-Carlo seed (fixed: the bound is a property of the ledger)")
    confidence: float = Field(0.95, gt=0.0, lt=1.0, description="level of the reported interval")


class ReRoBound(Metric):
    """Upper bound γ on any reconstruction attack's success (lower is better).

    γ is the Neyman–Pearson blow-up of the *composition* of every mechanism on
    the ledger: DP-SGD (Poisson subsampled, (σ, q, T)) and full-data Gaussian
    queries (q = 1, e.g. PrivImage's semantic query) alike. Composing them
    exactly is what the accountant does too, so the bound covers the same
    release ε covers.

    The value is a *bound*, never an estimate that can fall below γ: the
    pessimistic-PLD value (:func:`rero_pld`, ``source: "pessimistic-pld"``),
    or, where that cannot be computed, the upper end of the Monte-Carlo
    interval (``source: "monte-carlo-ci-high"``). The Monte-Carlo point
    estimate (``point_estimate``, below γ about half the time) and its
    interval (``ci_low``/``ci_high``) are in ``extra``; ``gamma_numerical``
    is Opacus' discretised PLD (a deterministic cross-check without an error
    bar); ``gamma_gdp`` (CLT μ-GDP, can under-estimate) and ``gamma_dp``
    (from the ledger's (ε, δ), looser) are closed-form companions.
    """

    name: ClassVar[str] = "rero-bound"
    description: ClassVar[str] = (
        "ReRo upper bound on reconstruction success from the privacy ledger (lower is better)"
    )
    higher_is_better: ClassVar[bool | None] = False
    needs: ClassVar[frozenset[str]] = frozenset({"dp-sgd"})
    Config = ReRoConfig

    @classmethod
    def smoke_config(cls, config: PluginConfig) -> PluginConfig:
        return config.model_copy(update={"samples": min(config.samples, 2_000)})

    def evaluate(self, ctx: EvalContext) -> list[Measurement]:
        cfg = self.config
        ledger = ctx.ledger
        if ledger is None or not ledger.is_private or not math.isfinite(ledger.epsilon_spent):
            raise SkipMeasurement(
                "rero-bound needs a private ledger; the generator was trained without DP"
            )
        if ledger.dp_sgd() is None:
            raise SkipMeasurement("rero-bound needs a DP-SGD spend on the ledger; there is none")
        history = spends_to_history(ledger.spends)
        extra: dict = {
            "kappa": cfg.kappa,
            "epsilon": ledger.epsilon_spent,
            "delta": ledger.delta,
            "mechanisms": len(history),
            "gamma_dp": rero_dp(cfg.kappa, ledger.epsilon_spent, ledger.delta),
        }
        if any(sigma == 0 for sigma, _, _ in history):
            # a noiseless mechanism on a 'private' ledger: there is no bound to give
            extra |= {"ci_low": 1.0, "ci_high": 1.0, "point_estimate": 1.0, "source": "noiseless",
                      "note": "a spend has noise multiplier 0"}
            return [Measurement(self.name, 1.0, self.higher_is_better, extra)]
        est = rero_composition(cfg.kappa, history, samples=cfg.samples, seed=cfg.seed,
                               confidence=cfg.confidence)
        mu = gdp_mu(history)
        extra |= {
            "point_estimate": est.gamma,
            "ci_low": est.ci_low,
            "ci_high": est.ci_high,
            "confidence": est.confidence,
            "samples": est.samples,
            "seed": cfg.seed,
            "mu_gdp": mu,
            "gamma_gdp": rero_gdp(cfg.kappa, mu),
        }
        try:
            extra["gamma_numerical"] = rero_numerical(cfg.kappa, history)
        except (MemoryError, ValueError, RuntimeError) as err:  # a cross-check, never fatal
            extra["gamma_numerical_error"] = f"{type(err).__name__}: {err}"
        try:
            value = rero_pld(cfg.kappa, history)
            extra |= {"gamma_pld": value, "source": "pessimistic-pld"}
        except (MemoryError, ValueError, RuntimeError) as err:  # fall back to the MC upper end
            value = est.ci_high
            extra |= {"source": "monte-carlo-ci-high",
                      "gamma_pld_error": f"{type(err).__name__}: {err}"}
        return [Measurement(self.name, value, self.higher_is_better, extra)]


@hookimpl
def register_plugins(register):
    register(ReRoBound)
