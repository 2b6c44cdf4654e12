"""Feature spaces and nearest-neighbour distances shared by the black-box attacks.

Distance attacks compare candidates with synthetic images in a *fixed*
feature space, fixed meaning: the same map for the target and every shadow
model, fitted (if at all) only on data the attacker owns (the holdout split).
``pixels`` is the raw image; ``pca`` projects onto the top principal
components of the attacker's reference images, which keeps KDEs meaningful
(DOMIAS) and distances robust to pixel noise.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from ppds_core.imageset import ImageSet

__all__ = ["FeatureMap", "flat", "nearest_sq_distances", "nearest_sq_distances_by_label"]

FeatureKind = Literal["pixels", "pca"]


def flat(images: ImageSet | torch.Tensor | np.ndarray) -> np.ndarray:
    """N×D float64 pixels (canonical [0, 1] units)."""
    x = images.images if isinstance(images, ImageSet) else images
    x = torch.as_tensor(x).detach().cpu().double()
    return x.reshape(x.shape[0], -1).numpy()


class FeatureMap:
    """``pixels`` (identity) or ``pca`` (top-k components of a reference set)."""

    def __init__(self, kind: FeatureKind = "pixels", components: int = 32):
        self.kind = kind
        self.components = components
        self._mean: np.ndarray | None = None
        self._basis: np.ndarray | None = None

    def fit(self, reference: ImageSet | np.ndarray) -> FeatureMap:
        if self.kind == "pca":
            x = reference if isinstance(reference, np.ndarray) else flat(reference)
            k = int(min(self.components, x.shape[0] - 1, x.shape[1]))
            if k < 1:
                raise ValueError("PCA features need at least two reference images")
            self._mean = x.mean(0)
            _, _, vt = np.linalg.svd(x - self._mean, full_matrices=False)
            self._basis = vt[:k].T
        return self

    def __call__(self, images: ImageSet | np.ndarray) -> np.ndarray:
        x = images if isinstance(images, np.ndarray) else flat(images)
        if self.kind == "pixels":
            return x
        if self._basis is None:
            raise RuntimeError("FeatureMap('pca') must be fitted before use")
        return (x - self._mean) @ self._basis


def nearest_sq_distances(query: np.ndarray, bank: np.ndarray, k: int = 1,
                         chunk: int = 1024) -> np.ndarray:
    """N×k smallest squared L2 distances from each query row to the bank, ascending."""
    if bank.shape[0] == 0:
        raise ValueError("empty reference bank")
    k = min(k, bank.shape[0])
    b = torch.from_numpy(np.ascontiguousarray(bank))
    bn = (b * b).sum(1)
    out = []
    for i in range(0, query.shape[0], chunk):
        q = torch.from_numpy(np.ascontiguousarray(query[i : i + chunk]))
        d = (q * q).sum(1, keepdim=True) + bn[None, :] - 2.0 * q @ b.T
        out.append(torch.topk(d.clamp_min(0.0), k, dim=1, largest=False).values)
    return torch.cat(out).numpy()


def nearest_sq_distances_by_label(query: np.ndarray, qlabels: np.ndarray, bank: np.ndarray,
                                  blabels: np.ndarray, k: int = 1) -> np.ndarray:
    """As :func:`nearest_sq_distances`, but only against bank rows of the query's label.

    Labels absent from the bank fall back to the whole bank, so an
    unconditional generator still yields a finite distance.
    """
    out = np.empty((query.shape[0], min(k, bank.shape[0])))
    for lab in np.unique(qlabels):
        rows = qlabels == lab
        sel = blabels == lab
        ref = bank[sel] if sel.sum() >= out.shape[1] else bank
        out[rows] = nearest_sq_distances(query[rows], ref, k=out.shape[1])
    return out
