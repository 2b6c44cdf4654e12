"""Gradient-canary audit of the DP-SGD engine: an empirical ε lower bound.

Why: a ledger's ε is a *claim* computed from (σ, C, q, T). An implementation
bug (noise never added, noise scaled by the wrong C, clipping skipped) leaves
the claim unchanged. This audit runs the engine's own privatized step —
per-sample gradients, flat clipping to C and the Opacus optimizer's Gaussian
noise, built from the very names ``ppds_core.privacy.engine`` builds its
private step from (``engine.PerSampleGradients``, ``engine.make_dp_optimizer``)
— and measures how well an adversary distinguishes training with and without
a canary example (Nasr et al. 2021; Jagielski et al. 2020).

Construction (vectorised: one model step audits many runs at once). A linear
model ``w ∈ R^{2n}`` (no bias) with loss ``w·x`` has per-sample gradient x.
Canary *i* is the input ``10·C·e_i`` (its gradient is clipped to norm C, so
clipping is exercised) and lives in its own coordinate; coordinates n … 2n−1
carry no canary. The optimizer's noise is i.i.d. per coordinate, so each
coordinate is one independent run of the mechanism: coordinate i observes
``z = (clipped canary if included + N(0, σ²C²)) / C``. Each step, every
canary enters the batch with probability q (Poisson sampling, as the engine's
sampler does); one zero-gradient example keeps batches non-empty.

Statistic per run: the Neyman–Pearson log-likelihood ratio of the mechanism
the ledger describes, Σ_t log(1 − q + q·exp((2 z_t − 1) / (2σ²))), with the
ledger's σ. Runs with the canary are "members"; the ROC of the statistic
gives ε_lb = log((TPR − δ)/FPR) with Clopper–Pearson 95 % bounds
(:mod:`ppds_core.evaluation.roc`). That bound (``dpsgd-audit-epsilon-lb``,
``dpsgd-audit-step-epsilon-lb``) is the headline the compact leaderboard shows.

Horizons:

- ``ledger``: the T steps the ledger claims (capped at ``max_steps``; a prefix
  of the transcript is post-processing of all of it, so the bound stays
  valid) with Poisson rate q. Compared with ``epsilon_spent``.
- ``single-step``: one step with the canary always present (q = 1). Compared
  with the ε of one full-batch Gaussian step at the ledger's σ (exact μ-GDP
  with μ = 1/σ): a sensitive check that the noise matches σ·C.

The canary gradient is the worst case (norm exactly C, the rest of the batch
contributing nothing the adversary does not know), so the bound is as strong
as the threat model allows; it remains a *lower* bound: a passing audit does
not prove the implementation private.
"""

from __future__ import annotations

import math
import warnings
from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from ppds_core import hookimpl
from ppds_core.errors import SkipMeasurement
from ppds_core.evaluation import membership_measurements, write_scores
from ppds_core.interfaces import Attack, EvalContext, Measurement, PluginConfig
from ppds_core.privacy import engine
from ppds_core.privacy.accounting import gdp_epsilon
from ppds_core.privacy.ledger import DPSGDSpend

__all__ = ["DPSGDAudit", "EngineStep", "canary_statistics", "audit_llr", "register_plugins"]

_CANARY_SCALE = 10.0  # canary input norm / C: the gradient must be clipped


class EngineStep:
    """The engine's privatized step on ``n`` canary slots plus ``n`` empty slots.

    ``__call__(included)`` runs one real optimizer step (per-sample gradients,
    clipping, noise) and returns the 2n observed coordinates in units of C.
    """

    def __init__(self, n: int, noise_multiplier: float, max_grad_norm: float, seed: int,
                 grad_sample_mode: str = "hooks"):
        self.n, self.C = n, float(max_grad_norm)
        torch.manual_seed(seed)  # Opacus draws noise from the global RNG when generator is None
        self.model = nn.Linear(2 * n, 1, bias=False)
        nn.init.zeros_(self.model.weight)
        self.psg = engine.PerSampleGradients(self.model, grad_sample_mode, self.C)
        sgd = torch.optim.SGD(self.model.parameters(), lr=1.0)
        self.optimizer = engine.make_dp_optimizer(
            sgd, mode=grad_sample_mode, noise_multiplier=float(noise_multiplier),
            max_grad_norm=self.C, expected_batch_size=1.0, distributed=False,
            generator=torch.Generator().manual_seed(seed), secure_mode=False,
        )
        self.filler = torch.zeros(1, 2 * n)

    def __call__(self, included: np.ndarray) -> np.ndarray:
        idx = torch.from_numpy(np.flatnonzero(included))
        x = torch.zeros(len(idx), 2 * self.n)
        x[torch.arange(len(idx)), idx] = _CANARY_SCALE * self.C
        batch = torch.cat([x, self.filler])
        before = self.model.weight.detach().clone()
        self.optimizer.zero_grad(set_to_none=True)
        with warnings.catch_warnings():
            # "full backward hook … no inputs require gradients": true and harmless here
            warnings.simplefilter("ignore", UserWarning)
            losses = self.model(batch).reshape(-1)
            self.psg.backward(losses, self.optimizer)
        self.optimizer.step()
        delta = (self.model.weight.detach() - before).reshape(-1)
        # SGD(lr=1), "mean" over expected batch 1: w ← w − (Σ clipped + noise)
        return (-delta / self.C).double().numpy()

    def close(self) -> None:
        self.psg.remove()


def audit_llr(z: np.ndarray, noise_multiplier: float, sample_rate: float) -> np.ndarray:
    """Per-step log-likelihood ratio of (1−q)·N(0,σ²) + q·N(1,σ²) against N(0,σ²)."""
    a = (2.0 * z - 1.0) / (2.0 * noise_multiplier**2)
    if sample_rate >= 1.0:
        return a
    return np.logaddexp(math.log1p(-sample_rate), math.log(sample_rate) + a)


def canary_statistics(step_fn, runs: int, chunk: int, steps: int, noise_multiplier: float,
                      sample_rate: float, rng: np.random.Generator,
                      make_step=None) -> tuple[np.ndarray, np.ndarray]:
    """(LLR statistics, has_canary) for ``runs`` runs with and ``runs`` without the canary.

    ``make_step(n, seed)`` builds a fresh privatized step for a chunk of n
    runs per side (``step_fn`` is kept for a fixed, already-built step).
    """
    stats, labels = [], []
    done = 0
    while done < runs:
        n = min(chunk, runs - done)
        step = make_step(n, int(rng.integers(2**31))) if make_step else step_fn
        llr = np.zeros(2 * n)
        for _ in range(steps):
            included = np.zeros(2 * n, bool)
            included[:n] = rng.random(n) < sample_rate
            llr += audit_llr(step(included), noise_multiplier, sample_rate)
        if make_step and hasattr(step, "close"):
            step.close()
        stats.append(llr)
        labels.append(np.r_[np.ones(n, bool), np.zeros(n, bool)])
        done += n
    return np.concatenate(stats), np.concatenate(labels)


class AuditConfig(PluginConfig):
    runs: int = Field(2000, ge=10, description="runs with the canary (and as many without)")
    chunk: int = Field(2000, ge=1, description="runs audited by one model step (memory)")
    max_steps: int = Field(100, ge=1, description="cap on audited steps (a valid prefix; "
                           "each costs one engine step per chunk)")
    horizons: list[Literal["ledger", "single-step"]] = Field(
        ["ledger", "single-step"], min_length=1)
    grad_sample_mode: Literal["hooks", "functorch"] = "hooks"
    confidence: float = Field(0.95, gt=0, lt=1)


class DPSGDAudit(Attack):
    """Empirical ε lower bound of the engine's DP-SGD step via gradient canaries."""

    name: ClassVar[str] = "dpsgd-audit"
    Config = AuditConfig
    description: ClassVar[str] = "gradient-canary audit of the DP-SGD engine (Nasr et al. 2021)"
    needs: ClassVar[frozenset[str]] = frozenset({"dp-sgd"})
    higher_is_better: ClassVar[bool | None] = False

    @classmethod
    def smoke_config(cls, config):
        return config.model_copy(update={"runs": 200, "max_steps": 20})

    def audit(self, spend: DPSGDSpend, delta: float, epsilon_spent: float, seed: int,
              workdir=None) -> list[Measurement]:
        """The audit of one DP-SGD spend (usable without a matrix cell)."""
        cfg = self.config
        rows: list[Measurement] = []
        rng = np.random.default_rng(seed)
        sigma, C = float(spend.noise_multiplier), float(spend.max_grad_norm)
        if sigma <= 0:
            raise SkipMeasurement("the ledger claims no noise (σ = 0): nothing to audit")

        def make_step(n, s):
            return EngineStep(n, sigma, C, s, cfg.grad_sample_mode)

        first = True
        for horizon in cfg.horizons:
            if horizon == "ledger":
                q, steps, claim = float(spend.sample_rate), min(spend.steps, cfg.max_steps), epsilon_spent
                prefix = "dpsgd-audit"
            else:
                q, steps, claim = 1.0, 1, gdp_epsilon(1.0 / sigma, delta)
                prefix = "dpsgd-audit-step"
            stat, has_canary = canary_statistics(None, cfg.runs, cfg.chunk, steps, sigma, q, rng,
                                                 make_step=make_step)
            if workdir is not None:
                name = "scores.npz" if first else f"scores_{horizon}.npz"
                write_scores(workdir / name, stat, has_canary)
            first = False
            # the audit's one number is its ε lower bound: AUC of canary runs says little alone
            for r in membership_measurements(prefix, stat, has_canary, delta=delta,
                                             epsilon_spent=claim, confidence=cfg.confidence,
                                             headline=("epsilon-lb",)):
                r.extra.update({"horizon": horizon, "noise_multiplier": sigma,
                                "max_grad_norm": C, "sample_rate": q, "steps_audited": steps,
                                "steps_claimed": spend.steps, "runs": cfg.runs,
                                "epsilon_claimed": claim})
                rows.append(r)
        return rows

    def evaluate(self, ctx: EvalContext) -> list[Measurement]:
        spend = ctx.ledger.dp_sgd() if ctx.ledger is not None else None
        if spend is None or not ctx.ledger.is_private:
            raise SkipMeasurement("needs a model trained with DP-SGD at finite ε (no DP-SGD spend)")
        eps = float(ctx.ledger.epsilon_spent)
        if not math.isfinite(eps):
            eps = float(ctx.budget.epsilon)
        ctx.workdir.mkdir(parents=True, exist_ok=True)
        return self.audit(spend, ctx.ledger.delta, eps, ctx.seed + 4242, ctx.workdir)


@hookimpl
def register_plugins(register):
    register(DPSGDAudit)
