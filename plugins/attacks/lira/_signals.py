"""Membership signals of a generator with respect to candidate images.

A classifier's LiRA signal is its logit-scaled confidence on the candidate;
a generator has no label to be confident about, so the black-box signal is
how close its synthetic output comes to the candidate:
``φ(x) = −mean_k log ‖f(x) − f(g_(k))‖`` over the k nearest synthetic samples
in a fixed feature space f (log-distances are close to Gaussian across
shadow models, which LiRA's parametric test assumes). It is the only signal:
a white-box one (e.g. a diffusion model's denoising loss) would need the
generator to compute it, and no generator does.
"""

from __future__ import annotations

import numpy as np
from ppds_plugins.common.features import (
    FeatureMap,
    nearest_sq_distances,
    nearest_sq_distances_by_label,
)

from ppds_core.imageset import ImageSet

__all__ = ["distance_signal"]


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
