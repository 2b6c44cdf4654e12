"""Model-agnostic membership inference on the released synthetic set alone.

The formulas of the DOMIAS repository's ``baselines.py`` (van Breugel et al.
2023), with d the squared L2 distance in a fixed feature space, G the
synthetic set and R a reference set of real non-members:

- ``gan-leaks`` (Chen et al. 2020), full black-box: exp(−min_G d(x, g));
  calibrated: exp(−min_G d(x, g) + min_R d(x, r)). We report the logarithm
  (−min_G d …), a monotone transform with the same ROC that cannot underflow.
- ``monte-carlo`` (Hilprecht et al. 2019): ε = median over the candidates of
  min_G d; score = fraction of g with d(x, g) < ε.
- ``domias``: log p_G(x) − log p_R(x) with Gaussian KDEs on PCA features.

Candidates: members = a subsample of the private split; non-members = part of
the holdout. The reference set R is the *other* part of the holdout, disjoint
from the non-member candidates — calibrating against the very images being
classified would leak their labels into the score.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import torch
from ppds_plugins.common.features import FeatureMap, nearest_sq_distances
from pydantic import Field
from scipy import stats

from ppds_core import hookimpl
from ppds_core.errors import SkipMeasurement
from ppds_core.evaluation import membership_measurements, write_scores
from ppds_core.imageset import ImageSet
from ppds_core.interfaces import Attack, EvalContext, Measurement, PluginConfig

from .lira import epsilon_spent_of

__all__ = ["GanLeaks", "MonteCarlo", "Domias", "register_plugins", "candidates_and_reference"]


class _MIAConfig(PluginConfig):
    candidates: int = Field(400, ge=4, description="candidates: half members, half non-members")
    reference_fraction: float = Field(
        0.5, gt=0, lt=1, description="share of the holdout kept as the reference set R")
    features: Literal["pixels", "pca"] = "pixels"
    pca_components: int = Field(32, ge=1)


def candidates_and_reference(ctx: EvalContext, n: int, reference_fraction: float,
                             seed: int) -> tuple[ImageSet, np.ndarray, ImageSet]:
    """(candidates, is_member, reference): the reference set never overlaps the candidates."""
    priv, hold = ctx.splits.private, ctx.splits.holdout
    g = torch.Generator().manual_seed(seed)
    hperm = torch.randperm(len(hold), generator=g)
    n_ref = int(round(reference_fraction * len(hold)))
    ref_idx, nonmem_pool = hperm[:n_ref], hperm[n_ref:]
    n_each = min(n // 2, len(priv), len(nonmem_pool))
    if n_each < 2 or n_ref < 2:
        raise SkipMeasurement(
            f"needs ≥ 2 members, non-members and reference images; the holdout has {len(hold)}")
    pidx = torch.randperm(len(priv), generator=g)[:n_each]
    nidx = nonmem_pool[:n_each]
    cand = ImageSet(torch.cat([priv.images[pidx], hold.images[nidx]]),
                    torch.cat([priv.labels[pidx], hold.labels[nidx]]), priv.class_names,
                    "mia-candidates")
    is_member = np.r_[np.ones(n_each, bool), np.zeros(n_each, bool)]
    return cand, is_member, hold.subset(ref_idx, "mia-reference")


class _SyntheticMIA(Attack):
    """Shared flow: candidates, features, scores per variant, rows and scores.npz."""

    higher_is_better: ClassVar[bool | None] = False
    needs: ClassVar[frozenset[str]] = frozenset()

    def _scores(self, cand: np.ndarray, syn: np.ndarray, ref: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _features(self, ctx: EvalContext, reference: ImageSet) -> FeatureMap:
        fm = FeatureMap(self.config.features, self.config.pca_components)
        return fm.fit(reference) if self.config.features == "pca" else fm

    def evaluate(self, ctx: EvalContext) -> list[Measurement]:
        cfg = self.config
        cand, is_member, ref = candidates_and_reference(ctx, cfg.candidates,
                                                        cfg.reference_fraction, ctx.seed + 11)
        fm = self._features(ctx, ref)
        scores = self._scores(fm(cand), fm(ctx.synthetic), fm(ref))
        primary = next(iter(scores))
        write_scores(ctx.workdir / "scores.npz", scores[primary], is_member,
                     **{f"scores_{k}": v for k, v in scores.items()})
        rows = []
        for prefix, s in scores.items():
            for r in membership_measurements(prefix, s, is_member, delta=ctx.budget.delta,
                                             epsilon_spent=epsilon_spent_of(ctx)):
                r.extra.update({"features": cfg.features, "n_synthetic": len(ctx.synthetic),
                                "n_reference": len(ref)})
                rows.append(r)
        return rows


class GanLeaksConfig(_MIAConfig):
    variants: list[Literal["black-box", "calibrated"]] = Field(
        ["black-box", "calibrated"], min_length=1)


class GanLeaks(_SyntheticMIA):
    """GAN-Leaks: distance to the nearest synthetic sample (optionally calibrated by R)."""

    name: ClassVar[str] = "gan-leaks"
    Config = GanLeaksConfig
    description: ClassVar[str] = "GAN-Leaks (Chen et al. 2020), full black-box and calibrated"

    def _scores(self, cand, syn, ref):
        d_g = nearest_sq_distances(cand, syn)[:, 0]
        out = {}
        for v in self.config.variants:
            if v == "black-box":
                out["gan-leaks"] = -d_g
            else:
                out["gan-leaks-calibrated"] = -d_g + nearest_sq_distances(cand, ref)[:, 0]
        return out


class MonteCarlo(_SyntheticMIA):
    """Hilprecht et al.'s Monte-Carlo attack: share of synthetic samples within ε."""

    name: ClassVar[str] = "monte-carlo"
    Config = _MIAConfig
    description: ClassVar[str] = "Monte-Carlo MIA (Hilprecht et al. 2019)"

    def _scores(self, cand, syn, ref):
        return {"monte-carlo": monte_carlo_scores(cand, syn)}


def monte_carlo_scores(cand: np.ndarray, syn: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Fraction of synthetic rows with d(x, g) < ε, ε = median_x min_g d(x, g)."""
    eps = float(np.median(nearest_sq_distances(cand, syn)[:, 0]))
    s = torch.from_numpy(np.ascontiguousarray(syn))
    sn = (s * s).sum(1)
    out = []
    for i in range(0, cand.shape[0], chunk):
        q = torch.from_numpy(np.ascontiguousarray(cand[i : i + chunk]))
        d = ((q * q).sum(1, keepdim=True) + sn[None] - 2 * q @ s.T).clamp_min(0)
        out.append((d < eps).double().mean(1))
    return torch.cat(out).numpy()


class DomiasConfig(_MIAConfig):
    features: Literal["pixels", "pca"] = "pca"
    pca_components: int = Field(8, ge=1, description="KDE dimension (KDEs degrade fast above ~10)")
    bandwidth: Literal["scott", "silverman"] | float = "scott"


class Domias(_SyntheticMIA):
    """DOMIAS: density ratio p_synthetic / p_reference, Gaussian KDEs in PCA space."""

    name: ClassVar[str] = "domias"
    Config = DomiasConfig
    description: ClassVar[str] = "DOMIAS (van Breugel et al. 2023) with KDE densities"

    def _scores(self, cand, syn, ref):
        return {"domias": domias_scores(cand, syn, ref, self.config.bandwidth)}


def domias_scores(cand: np.ndarray, syn: np.ndarray, ref: np.ndarray,
                  bandwidth: str | float = "scott") -> np.ndarray:
    """log p_G(x) − log p_R(x) with scipy Gaussian KDEs."""
    for what, x in (("synthetic", syn), ("reference", ref)):
        if x.shape[0] <= x.shape[1]:
            raise SkipMeasurement(
                f"DOMIAS needs more {what} images ({x.shape[0]}) than feature dimensions "
                f"({x.shape[1]}); lower domias.config.pca_components")
    kde_g = stats.gaussian_kde(syn.T, bw_method=bandwidth)
    kde_r = stats.gaussian_kde(ref.T, bw_method=bandwidth)
    return kde_g.logpdf(cand.T) - kde_r.logpdf(cand.T)


@hookimpl
def register_plugins(register):
    register(GanLeaks)
    register(MonteCarlo)
    register(Domias)
