"""Canary audit of the DP-SGD training a generator actually runs.

Why: a ledger's ε is a *claim* computed from (σ, C, q, T). An implementation bug
(noise never added or scaled wrong, clipping skipped, a wrong normalisation,
a sampler that is not Poisson) leaves the claim unchanged. So the audit trains
**the generator's own private module** (its ``dp_sgd_recipe``: the module, the
optimizer, the plan's batch size, C, grad mode, rows per example and physical
batch size) through the engine's own :func:`~ppds_core.privacy.engine.fit_private`
— Poisson loader, ``private_step`` / ``private_step_in_chunks``, per-sample
gradients, K-row folding, clipping, noise and accountant — with the ledger's σ
fixed and canary losses in place of the generator's (``_audit_canary``), and
reads every released update through the engine's observation hook
``DPSGDModule.on_private_release``. The released updates are then tested
against the ledger's claim (``_audit_stats``): noise calibration, clipping,
sampling rate, a Clopper–Pearson ε lower bound and Nasr et al. 2023's μ
estimator against the claimed mechanism's trade-off curve, at one overall
false-alarm level.

A generator without a recipe is audited on a reference module (one linear
layer) through the same engine path, and every row says so
(``extra.path = "engine-reference-step"``; ``"generator-recipe"`` otherwise).

The canaries are the worst case the threat model allows (a gradient of norm
≥ C on its own coordinate, the rest of the batch known); the ε bound is still
a *lower* bound: a passing audit does not prove the implementation private.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from pydantic import Field
from torch import nn

from ppds_core import hookimpl
from ppds_core.budget import PrivacyBudget
from ppds_core.errors import SkipMeasurement
from ppds_core.evaluation import write_scores
from ppds_core.interfaces import Attack, EvalContext, FitContext, Measurement, PluginConfig
from ppds_core.privacy.accounting import epsilon_of
from ppds_core.privacy.engine import DPSGDModule, DPSGDPlan
from ppds_core.privacy.ledger import DPSGDSpend

from ._audit_canary import Observations, run_canary_fit
from ._audit_stats import analyse, audit_llr

__all__ = ["DPSGDAudit", "ReferenceRecipe", "register_plugins"]

#: fits per audit at most (each adds up to N member canaries)
_MAX_FITS = 8


class ReferenceRecipe(DPSGDModule):
    """The fallback private module: one linear layer, SGD (generator-independent)."""

    def __init__(self, width: int = 64):
        super().__init__()
        self.net = nn.Linear(width, width)

    def private_module(self) -> nn.Module:
        return self.net

    def configure_private_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.net.parameters(), lr=1.0)


class AuditConfig(PluginConfig):
    runs: int = Field(1000, ge=10, description="member canaries (and as many absent ones); "
                      "one fit holds at most N, more take more fits")
    max_steps: int = Field(500, ge=1, description="cap on audited steps (a valid prefix of "
                           "the ledger's T: its own ε is the claim tested)")
    confidence: float = Field(0.95, gt=0, lt=1, description="1 − the audit's false-alarm level")
    fallback_grad_sample_mode: str = Field(
        "hooks", description="grad mode of the reference module when the generator has no recipe")


class DPSGDAudit(Attack):
    """Canary audit of the generator's DP-SGD training through the engine's own path."""

    name: ClassVar[str] = "dpsgd-audit"
    Config = AuditConfig
    description: ClassVar[str] = ("Dirac-canary audit of the generator's own DP-SGD module "
                                  "through the engine (noise, clipping, sampling, ε and μ bounds)")
    needs: ClassVar[frozenset[str]] = frozenset({"dp-sgd"})
    higher_is_better: ClassVar[bool | None] = False

    @classmethod
    def smoke_config(cls, config):
        return config.model_copy(update={"runs": 200, "max_steps": 20})

    def audit(self, spend: DPSGDSpend, budget: PrivacyBudget, *, num_examples: int,
              accountant: str, seed: int, make_recipe=None, trainer: dict | None = None,
              workdir=None) -> list[Measurement]:
        """The audit of one DP-SGD spend of a model trained on ``num_examples`` examples.

        ``make_recipe()`` builds a fresh, untrained ``(DPSGDModule, DPSGDPlan)`` of the
        generator (each fit consumes one); None (or a None recipe) → the reference module.
        """
        cfg = self.config
        sigma, C, q = float(spend.noise_multiplier), float(spend.max_grad_norm), float(spend.sample_rate)
        if sigma <= 0:
            raise SkipMeasurement("the ledger claims no noise (σ = 0): nothing to audit")
        steps = min(int(spend.steps), cfg.max_steps)
        first = make_recipe() if make_recipe is not None else None
        path = "generator-recipe" if first is not None else "engine-reference-step"
        if first is None:
            def make_recipe():
                return _reference(spend, budget, num_examples, steps, accountant,
                                  cfg.fallback_grad_sample_mode)
            first = make_recipe()
        rng = np.random.default_rng(seed)
        parts: list[Observations] = []
        info: dict = {}
        while len(parts) < _MAX_FITS and sum(int(p.is_member.sum()) for p in parts) < cfg.runs:
            module, plan = first if not parts else make_recipe()
            ctx = FitContext(seed=int(rng.integers(2**31)), trainer=dict(trainer or {}),
                             workdir=workdir, accountant=accountant, reproducible_noise=True)
            done = sum(int(p.is_member.sum()) for p in parts)
            obs, info = run_canary_fit(
                module, plan, num_examples=num_examples, noise_multiplier=sigma,
                max_grad_norm=C, sample_rate=q, steps=steps, canaries=cfg.runs - done,
                ctx=ctx, rng=rng)
            parts.append(obs)
        obs = Observations.pool(parts)
        claim = epsilon_of([DPSGDSpend(noise_multiplier=sigma, sample_rate=q, steps=steps,
                                       max_grad_norm=C)], budget.delta, accountant)
        extra = {"path": path, "max_grad_norm": C, "steps_claimed": int(spend.steps),
                 "fits": len(parts), "num_examples": num_examples, "accountant": accountant,
                 "canary_shift": obs.shift, **info}
        if workdir is not None:
            scores = audit_llr(obs.z, sigma, q, obs.shift).sum(1)
            write_scores(workdir / "scores.npz", scores, obs.is_member)
        return analyse(obs, noise_multiplier=sigma, sample_rate=q, delta=budget.delta,
                       epsilon_claimed=claim, confidence=cfg.confidence, rng=rng, extra=extra)

    def evaluate(self, ctx: EvalContext) -> list[Measurement]:
        spend = ctx.ledger.dp_sgd() if ctx.ledger is not None else None
        if spend is None or not ctx.ledger.is_private:
            raise SkipMeasurement("needs a model trained with DP-SGD at finite ε (no DP-SGD spend)")
        private, gen = ctx.splits.private, ctx.generator
        ctx.workdir.mkdir(parents=True, exist_ok=True)
        budget = PrivacyBudget(epsilon=ctx.ledger.target_epsilon, delta=ctx.ledger.delta)

        def make_recipe():
            return gen.dp_sgd_recipe(private, budget, FitContext(seed=ctx.seed)) if gen else None

        return self.audit(spend, budget, num_examples=len(private),
                          accountant=ctx.ledger.accountant, seed=ctx.seed + 4242,
                          make_recipe=make_recipe, workdir=ctx.workdir)


def _reference(spend: DPSGDSpend, budget: PrivacyBudget, n: int, steps: int, accountant: str,
               mode: str) -> tuple[DPSGDModule, DPSGDPlan]:
    plan = DPSGDPlan(budget=budget, batch_size=max(1, round(spend.sample_rate * n)), steps=steps,
                     max_grad_norm=spend.max_grad_norm, accountant=accountant,
                     grad_sample_mode=mode)
    return ReferenceRecipe(), plan


@hookimpl
def register_plugins(register):
    register(DPSGDAudit)
