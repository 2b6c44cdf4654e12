"""Membership signals of a generator with respect to candidate images.

A classifier's LiRA signal is its logit-scaled confidence on the candidate;
a generator has no label to be confident about, so the black-box signal is
how close its synthetic output comes to the candidate:
``φ(x) = −mean_k log ‖f(x) − f(g_(k))‖`` over the k nearest synthetic samples
in a fixed feature space f (log-distances are close to Gaussian across
shadow models, which LiRA's parametric test assumes). A white-box signal
(e.g. a diffusion model's denoising loss) comes from the generator itself
via ``Generator.member_signal``.
"""

from __future__ import annotations

import numpy as np

from ppds_core.imageset import ImageSet
from ppds_core.interfaces import Generator

from .._features import FeatureMap, nearest_sq_distances, nearest_sq_distances_by_label

__all__ = ["BLACK_BOX_SIGNALS", "distance_signal", "generator_signal"]

BLACK_BOX_SIGNALS = ("log-nn-distance",)


def distance_signal(candidates: ImageSet, synthetic: ImageSet, features: FeatureMap,
                    k: int = 1, same_label: bool = True) -> np.ndarray:
    """−mean over the k nearest synthetic samples of log L2 distance (higher = closer)."""
    q = features(candidates)
    bank = features(synthetic)
    if same_label:
        d2 = nearest_sq_distances_by_label(q, candidates.labels.numpy(), bank,
                                           synthetic.labels.numpy(), k)
    else:
        d2 = nearest_sq_distances(q, bank, k)
    return -0.5 * np.log(d2 + 1e-12).mean(1)


def generator_signal(signal: str, generator: Generator, synthetic: ImageSet,
                     candidates: ImageSet, features: FeatureMap, k: int,
                     same_label: bool) -> np.ndarray:
    """The configured signal of one (target or shadow) generator, one value per candidate."""
    if signal in BLACK_BOX_SIGNALS:
        return distance_signal(candidates, synthetic, features, k, same_label)
    out = np.asarray(generator.member_signal(candidates, signal), dtype=np.float64).reshape(-1)
    if out.shape[0] != len(candidates):
        raise ValueError(f"{generator.name}.member_signal({signal!r}) returned {out.shape[0]} "
                         f"values for {len(candidates)} candidates")
    return out
