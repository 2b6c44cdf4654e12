"""LiRA against image generators: shadow generators + a per-candidate likelihood ratio.

Carlini et al. 2022, adapted to generators (the shadow *generators* replace
shadow classifiers; the signal is a statistic of the synthetic output).

1. Population = equal numbers of private (members of the target) and holdout
   (non-members) images, subsampled to ``population``.
2. ``shadow_models`` generators of the cell's recipe and ε are trained by
   ``ctx.fit_fresh`` on random subsets of the population; each candidate is IN
   for exactly ``pkeep``·K of them (the reference code's balanced split).
3. Each shadow generator samples ``synthetic_samples`` images; the signal of
   every candidate is measured on it (and on the target's released samples).
4. Online: log N(φ; μ_in, σ_in²) − log N(φ; μ_out, σ_out²) (median, population
   std). Offline: the one-sided 1 − Pr[Z > φ], Z ~ N(μ_out, σ_out²).
   ``fix_variance`` uses one global σ per side; by default it is on below 64
   shadow models (Carlini et al.; measured on digits with K = 4: AUC 0.586
   per-candidate σ vs 0.678 global σ from the same shadow signals).

Writes ``scores.npz`` (``scores`` = the online LiRA score, plus
``scores_offline``, ``is_member``, ``target_signal``, ``shadow_signals``,
``keep``) and returns ``lira-*`` (online) and ``lira-offline-*`` rows
(see :mod:`ppds_core.evaluation.membership` for the row names).
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from ppds_core import hookimpl
from ppds_core.errors import ConfigError, SkipMeasurement
from ppds_core.evaluation import membership_measurements, write_scores
from ppds_core.imageset import ImageSet
from ppds_core.interfaces import Attack, EvalContext, Measurement, PluginConfig

from .._features import FeatureMap
from ._math import balanced_keep, lira_offline_z, lira_online
from ._signals import BLACK_BOX_SIGNALS, generator_signal

__all__ = ["LiRA", "register_plugins", "membership_population", "epsilon_spent_of"]


class LiRAConfig(PluginConfig):
    shadow_models: int = Field(8, ge=2, description="shadow generators trained (K)")
    population: int = Field(400, ge=4, description="candidates: half private, half holdout")
    pkeep: float = Field(0.5, gt=0, lt=1, description="fraction of shadows each candidate is IN")
    synthetic_samples: int = Field(1000, ge=1, description="samples per generator for the signal")
    signal: str = Field("log-nn-distance",
                        description="'log-nn-distance' or a white-box signal the generator exposes")
    features: Literal["pixels", "pca"] = Field("pixels", description="feature space of distances")
    pca_components: int = Field(32, ge=1)
    k_neighbours: int = Field(1, ge=1, description="nearest synthetic samples averaged in φ")
    same_label: bool = Field(True, description="compare with synthetic samples of the same class")
    fix_variance: bool | None = Field(
        None, description="one global σ instead of one per candidate; None = auto: global "
        "when shadow_models < 64 (Carlini et al.: per-example σ needs many shadows)")
    variants: list[Literal["online", "offline"]] = Field(["online", "offline"], min_length=1)


def epsilon_spent_of(ctx: EvalContext) -> float:
    """The ε the model claims: the ledger's, else the target; inf for non-private."""
    if ctx.ledger is not None:
        return math.inf if not ctx.ledger.is_private else float(ctx.ledger.epsilon_spent)
    return float(ctx.budget.epsilon)


def membership_population(ctx: EvalContext, size: int, seed: int) -> tuple[ImageSet, np.ndarray]:
    """Equal numbers of private (member) and holdout (non-member) images, shuffled."""
    priv, hold = ctx.splits.private, ctx.splits.holdout
    n_each = min(size // 2, len(priv), len(hold))
    if n_each < 2:
        raise SkipMeasurement(f"needs ≥ 2 private and ≥ 2 holdout images, got {len(priv)} and {len(hold)}")
    g = torch.Generator().manual_seed(seed)
    pi = torch.randperm(len(priv), generator=g)[:n_each]
    hi = torch.randperm(len(hold), generator=g)[:n_each]
    images = torch.cat([priv.images[pi], hold.images[hi]])
    labels = torch.cat([priv.labels[pi], hold.labels[hi]])
    is_member = np.r_[np.ones(n_each, bool), np.zeros(n_each, bool)]
    pop = ImageSet(images, labels, priv.class_names, f"{priv.name}+holdout/population")
    return pop, is_member


def _subsample(images: ImageSet, n: int, seed: int) -> ImageSet:
    if len(images) <= n:
        return images
    g = torch.Generator().manual_seed(seed)
    return images.subset(torch.randperm(len(images), generator=g)[:n])


class LiRA(Attack):
    """Likelihood-ratio membership inference with shadow generators (online and offline)."""

    name: ClassVar[str] = "lira"
    Config = LiRAConfig
    description: ClassVar[str] = "LiRA (Carlini et al. 2022) with shadow generators"
    needs: ClassVar[frozenset[str]] = frozenset({"shadow-models"})
    higher_is_better: ClassVar[bool | None] = False

    @classmethod
    def smoke_config(cls, config):
        return config.model_copy(update={"shadow_models": 2, "population": 40,
                                         "synthetic_samples": min(config.synthetic_samples, 100)})

    def evaluate(self, ctx: EvalContext) -> list[Measurement]:
        cfg = self.config
        if ctx.fit_fresh is None:
            raise SkipMeasurement("LiRA needs shadow models (ctx.fit_fresh) and the cell offers none")
        white_box = cfg.signal not in BLACK_BOX_SIGNALS
        if white_box and cfg.signal not in ctx.generator.white_box_signals:
            raise ConfigError(
                f"lira.config.signal: {ctx.generator.name} exposes no signal {cfg.signal!r} "
                f"(it exposes {list(ctx.generator.white_box_signals) or 'none'}; "
                f"black-box signals: {list(BLACK_BOX_SIGNALS)})"
            )
        rng = np.random.default_rng(ctx.seed + 7919)
        pop, is_member = membership_population(ctx, cfg.population, ctx.seed + 1)
        features = FeatureMap(cfg.features, cfg.pca_components)
        if cfg.features == "pca":
            features.fit(ctx.splits.holdout)  # the attacker's own data
        n_syn = min(cfg.synthetic_samples, len(ctx.synthetic))
        target_syn = _subsample(ctx.synthetic, n_syn, ctx.seed + 3)

        def signal_of(gen, syn):
            return generator_signal(cfg.signal, gen, syn, pop, features,
                                    cfg.k_neighbours, cfg.same_label)

        target = signal_of(ctx.generator, target_syn)
        keep = balanced_keep(cfg.shadow_models, len(pop), rng, cfg.pkeep)
        shadows = np.empty((cfg.shadow_models, len(pop)))
        for k in range(cfg.shadow_models):
            seed = ctx.seed * 1000 + 101 + k
            shadow = ctx.fit_fresh(pop.subset(np.flatnonzero(keep[k])), seed)
            syn = None if white_box else shadow.sample(n_syn, seed=seed)
            shadows[k] = signal_of(shadow, syn)

        fix = cfg.fix_variance if cfg.fix_variance is not None else cfg.shadow_models < 64
        scores = {}
        if "online" in cfg.variants:
            scores["online"] = lira_online(target, shadows, keep, fix)
        if "offline" in cfg.variants:
            scores["offline"] = lira_offline_z(target, shadows, keep, fix)
        primary = cfg.variants[0]
        write_scores(
            ctx.workdir / "scores.npz", scores[primary], is_member,
            **{f"scores_{v}": s for v, s in scores.items()},
            target_signal=target, shadow_signals=shadows, keep=keep,
        )
        eps = epsilon_spent_of(ctx)
        rows: list[Measurement] = []
        for variant, s in scores.items():
            prefix = "lira" if variant == "online" else "lira-offline"
            for r in membership_measurements(prefix, s, is_member, delta=ctx.budget.delta,
                                             epsilon_spent=eps):
                r.extra.update({"shadow_models": cfg.shadow_models, "signal": cfg.signal,
                                "variant": variant, "fix_variance": fix})
                rows.append(r)
        return rows


@hookimpl
def register_plugins(register):
    register(LiRA)
