"""LiRA against image generators: matched shadow generators + a per-candidate likelihood ratio.

Carlini et al. 2022, adapted to generators (the shadow *generators* replace
shadow classifiers; the signal is a statistic of the synthetic output).

1. Pool = the cell's private ∪ holdout splits. The *target* (the cell's own
   model) trained on the private split, so it decides membership: candidates
   are ``population`` images, half drawn from the private split (members) and
   half from the holdout (non-members).
2. Matched shadows: ``shadow_models`` generators of the cell's recipe and ε,
   each trained by ``ctx.fit_fresh`` on a subset of the pool **of the target's
   size** (|private|), so each shadow runs the target's DP-SGD regime (same
   q, T, σ) and each candidate is IN for about |private| / |pool| of them
   (:func:`~._math.matched_keep`). In the matrix each shadow fit is cached
   beside the cell, so an interrupted LiRA resumes.
3. Each generator samples ``synthetic_samples`` images; the signal of every
   candidate is measured on them (for the target: on the released samples).
4. Online: log N(φ; μ_in, σ_in²) − log N(φ; μ_out, σ_out²); offline: the OUT
   Gaussian only. ``convention`` picks the paper's or ``mi_lira_2021``'s
   fixed-variance and offline rules (see :mod:`._math`). ``fix_variance`` uses
   one global σ; by default it is on below 64 shadow models (Carlini et al.).

The ``real-data`` reference row releases the private split itself (M(D) = D):
a shadow release is its own training subset, so LiRA there needs no fit and
shows the leakage ceiling (every member is at distance 0 from the release).

Writes ``scores.npz`` (``scores`` = the first variant's score, plus
``scores_<variant>``, ``is_member``, ``target_signal``, ``shadow_signals``,
``keep``) and returns ``lira-*`` (online) and ``lira-offline-*`` rows
(see :mod:`ppds_core.evaluation.membership` for the row names).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import torch
from ppds_plugins.common.features import FeatureMap
from ppds_plugins.common.subsample import subsample
from pydantic import Field

from ppds_core import hookimpl
from ppds_core.errors import ConfigError, SkipMeasurement
from ppds_core.evaluation import membership_measurements, write_scores
from ppds_core.imageset import ImageSet, Splits
from ppds_core.interfaces import Attack, EvalContext, Measurement, PluginConfig

from ._math import Convention, lira_offline, lira_online, matched_keep
from ._signals import distance_signal

__all__ = ["LiRA", "register_plugins", "ShadowDesign", "shadow_design", "epsilon_spent_of"]


class LiRAConfig(PluginConfig):
    shadow_models: int = Field(8, ge=2, description="shadow generators trained (K), each a full fit "
                               "of the cell's recipe and ε on a training set of the target's size")
    population: int = Field(400, ge=4, description="candidates scored: half private, half holdout")
    synthetic_samples: int = Field(1000, ge=1, description="samples per generator for the signal")
    signal: Literal["log-nn-distance"] = Field(
        "log-nn-distance", description="membership signal: −mean log L2 distance of a candidate "
        "to its nearest synthetic samples (black-box: needs only the samples)")
    features: Literal["pixels", "pca"] = Field("pixels", description="feature space of distances")
    pca_components: int = Field(32, ge=1)
    k_neighbours: int = Field(1, ge=1, description="nearest synthetic samples averaged in φ")
    same_label: bool = Field(True, description="compare with synthetic samples of the same class")
    fix_variance: bool | None = Field(
        None, description="one global σ instead of one per candidate; None = auto: global "
        "when shadow_models < 64 (Carlini et al.: per-example σ needs many shadows)")
    variants: list[Literal["online", "offline"]] = Field(["online", "offline"], min_length=1)
    convention: Convention = Field(
        "paper", description="'paper': fixed-variance σ_out from the OUT signals, offline = the "
        "one-sided z; 'reference': mi_lira_2021's std(IN) for both and −logpdf offline")


def epsilon_spent_of(ctx: EvalContext) -> float:
    """The ε the model claims: the ledger's, else the target; inf for non-private."""
    if ctx.ledger is not None:
        return math.inf if not ctx.ledger.is_private else float(ctx.ledger.epsilon_spent)
    return float(ctx.budget.epsilon)


@dataclass
class ShadowDesign:
    """Who trains on what: the pool, each shadow's training set, the scored candidates."""

    pool: ImageSet
    #: K×P: shadow k trains on pool items ``train[k]`` (|private| of them)
    train: np.ndarray
    #: pool indices of the scored candidates
    candidates: np.ndarray
    #: candidate in the target's training set (= drawn from the private split)
    is_member: np.ndarray

    @property
    def keep(self) -> np.ndarray:
        """K×N: candidate n was in shadow k's training set."""
        return self.train[:, self.candidates]

    def shadow_set(self, k: int) -> ImageSet:
        return self.pool.subset(np.flatnonzero(self.train[k]), f"{self.pool.name}/shadow{k}")


def shadow_design(ctx: EvalContext | Splits, population: int, shadow_models: int, seed: int) -> ShadowDesign:
    """Matched shadow training sets over private ∪ holdout, and half/half candidates
    (``ctx``: the attack's context, or the cell's splits alone)."""
    splits = ctx if isinstance(ctx, Splits) else ctx.splits
    priv, hold = splits.private, splits.holdout
    n_priv, n_pool = len(priv), len(priv) + len(hold)
    n_each = min(population // 2, len(priv), len(hold))
    if n_each < 2:
        raise SkipMeasurement(f"needs ≥ 2 private and ≥ 2 holdout images, got {len(priv)} and {len(hold)}")
    # each candidate needs an IN and an OUT shadow: K·n ≥ P and K·(P − n) ≥ P
    needed = math.ceil(n_pool / min(n_priv, n_pool - n_priv))
    if shadow_models < needed:
        raise ConfigError(
            f"lira.config.shadow_models: {shadow_models} shadows of {n_priv} images (the target's "
            f"training-set size) from a pool of {n_pool} leave some candidates never IN or never "
            f"OUT; use shadow_models ≥ {needed}")
    g = torch.Generator().manual_seed(seed)
    pi = torch.randperm(len(priv), generator=g)[:n_each].numpy()
    hi = torch.randperm(len(hold), generator=g)[:n_each].numpy() + n_priv
    pool = ImageSet(torch.cat([priv.images, hold.images]), torch.cat([priv.labels, hold.labels]),
                    priv.class_names, f"{priv.name}+holdout")
    train = matched_keep(shadow_models, n_pool, n_priv, np.random.default_rng(seed + 7918))
    return ShadowDesign(pool, train, np.r_[pi, hi],
                        np.r_[np.ones(n_each, bool), np.zeros(n_each, bool)])


class LiRA(Attack):
    """Likelihood-ratio membership inference with matched shadow generators (online, offline)."""

    name: ClassVar[str] = "lira"
    Config = LiRAConfig
    description: ClassVar[str] = "LiRA (Carlini et al. 2022) with matched shadow generators"
    needs: ClassVar[frozenset[str]] = frozenset({"shadow-models"})
    higher_is_better: ClassVar[bool | None] = False

    @classmethod
    def smoke_config(cls, config):
        # shadows train on the target's training-set size, so any smoke generator recipe fits;
        # 3 is the fewest that leaves every candidate IN and OUT of one with a 2:1 private:holdout pool
        return config.model_copy(update={"shadow_models": min(config.shadow_models, 3),
                                         "population": min(config.population, 40),
                                         "synthetic_samples": min(config.synthetic_samples, 100)})

    @staticmethod
    def _shadow_seed(seed: int, k: int) -> int:
        return seed * 1000 + 101 + k

    def shadow_plan(self, splits: Splits, seed: int) -> list[tuple[ImageSet, int]]:
        """The K matched shadow fits ``evaluate`` asks for (a worker fits each as its own unit)."""
        cfg = self.config
        design = shadow_design(splits, cfg.population, cfg.shadow_models, seed + 1)
        return [(design.shadow_set(k), self._shadow_seed(seed, k)) for k in range(cfg.shadow_models)]

    def evaluate(self, ctx: EvalContext) -> list[Measurement]:
        cfg = self.config
        release_itself = ctx.generator is None  # the real-data row: M(D) = D, nothing to retrain
        if not release_itself and ctx.fit_fresh is None:
            raise SkipMeasurement("LiRA needs shadow models (ctx.fit_fresh) and the cell offers none")
        design = shadow_design(ctx, cfg.population, cfg.shadow_models, ctx.seed + 1)
        cand = design.pool.subset(design.candidates, f"{design.pool.name}/candidates")
        features = FeatureMap(cfg.features, cfg.pca_components)
        if cfg.features == "pca":
            features.fit(ctx.splits.holdout)  # the attacker's own data
        n_syn = min(cfg.synthetic_samples, len(ctx.synthetic))

        def signal_of(release: ImageSet) -> np.ndarray:
            return distance_signal(cand, release, features, cfg.k_neighbours, cfg.same_label)

        target_release = ctx.synthetic if release_itself else subsample(ctx.synthetic, n_syn, ctx.seed + 3)
        target = signal_of(target_release)
        shadows = np.empty((cfg.shadow_models, len(cand)))
        for k in range(cfg.shadow_models):
            if release_itself:
                shadows[k] = signal_of(design.shadow_set(k))
                continue
            seed = self._shadow_seed(ctx.seed, k)
            shadow = ctx.fit_fresh(design.shadow_set(k), seed)
            shadows[k] = signal_of(shadow.sample(n_syn, seed=seed))

        keep = design.keep
        fix = cfg.fix_variance if cfg.fix_variance is not None else cfg.shadow_models < 64
        score_fns = {"online": lira_online, "offline": lira_offline}
        scores = {v: score_fns[v](target, shadows, keep, fix, cfg.convention) for v in cfg.variants}
        primary = cfg.variants[0]
        write_scores(
            ctx.workdir / "scores.npz", scores[primary], design.is_member,
            **{f"scores_{v}": s for v, s in scores.items()},
            target_signal=target, shadow_signals=shadows, keep=keep,
        )
        eps = epsilon_spent_of(ctx)
        info = {"shadow_models": cfg.shadow_models, "signal": cfg.signal, "fix_variance": fix,
                "convention": cfg.convention, "shadow_train_size": int(design.train[0].sum()),
                "pool": len(design.pool), "in_fraction": float(keep.mean()),
                "release": "private split itself" if release_itself else "synthetic samples"}
        rows: list[Measurement] = []
        for variant, s in scores.items():
            prefix = "lira" if variant == "online" else "lira-offline"
            for r in membership_measurements(prefix, s, design.is_member, delta=ctx.budget.delta,
                                             epsilon_spent=eps):
                r.extra.update({**info, "variant": variant})
                rows.append(r)
        return rows


@hookimpl
def register_plugins(register):
    register(LiRA)
