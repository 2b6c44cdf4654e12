"""Gaussian statistics of feature sets and the Fréchet distance between them.

The Fréchet distance is computed in float64 from the eigen-decomposition of
the symmetric matrix √Σ₁·Σ₂·√Σ₁ rather than from ``sqrtm(Σ₁Σ₂)``: the product
of two covariances is not symmetric, and with fewer samples than feature
dimensions (a 2048-d Inception space and a few hundred images) it is singular,
which is where ``sqrtm`` returns complex garbage. Tr√(Σ₁Σ₂) equals
Tr√(√Σ₁Σ₂√Σ₁) exactly (similar matrices), and the latter is symmetric positive
semi-definite, so clipping its tiny negative round-off eigenvalues to 0 is
the whole of the "numerical stabilisation".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["GaussianStats", "gaussian_stats", "frechet_distance"]


@dataclass
class GaussianStats:
    """Mean and covariance (float64) of a feature set, and how many samples made them."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int

    def to_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        return {
            f"{prefix}mu": self.mu,
            f"{prefix}sigma": self.sigma,
            f"{prefix}n": np.array(self.n),
        }

    @classmethod
    def from_arrays(cls, arrays, prefix: str = "") -> GaussianStats:
        return cls(
            np.asarray(arrays[f"{prefix}mu"], dtype=np.float64),
            np.asarray(arrays[f"{prefix}sigma"], dtype=np.float64),
            int(arrays[f"{prefix}n"]),
        )


def gaussian_stats(features: torch.Tensor | np.ndarray) -> GaussianStats:
    """μ and the unbiased covariance (N−1) of an N×D feature matrix, in float64."""
    f = np.asarray(
        features.detach().cpu() if isinstance(features, torch.Tensor) else features,
        dtype=np.float64,
    )
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need an N×D feature matrix with N ≥ 2, got shape {f.shape}")
    mu = f.mean(axis=0)
    centred = f - mu
    sigma = centred.T @ centred / (f.shape[0] - 1)
    return GaussianStats(mu, sigma, f.shape[0])


def _eigh(matrix: np.ndarray, vectors: bool):
    """Symmetric eigen-decomposition through torch (its thread pool, not OpenBLAS's).

    Below 512 dimensions one thread is used: on a busy machine OpenBLAS's
    spinning threads made a 256×256 decomposition take seconds instead of ms.
    """
    t = torch.from_numpy(np.ascontiguousarray((matrix + matrix.T) / 2))
    previous = torch.get_num_threads()
    if t.shape[0] < 512:
        torch.set_num_threads(1)
    try:
        if vectors:
            vals, vecs = torch.linalg.eigh(t)
            return vals.numpy(), vecs.numpy()
        return torch.linalg.eigvalsh(t).numpy()
    finally:
        torch.set_num_threads(previous)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (round-off negatives → 0)."""
    vals, vecs = _eigh(matrix, vectors=True)
    return (vecs * np.sqrt(np.clip(vals, 0.0, None))) @ vecs.T


def frechet_distance(a: GaussianStats, b: GaussianStats) -> float:
    """‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2√(Σ₁Σ₂)), in float64, stable for singular covariances."""
    if a.mu.shape != b.mu.shape:
        raise ValueError(f"feature dimensions differ: {a.mu.shape} vs {b.mu.shape}")
    diff = a.mu - b.mu
    root_a = _sqrt_psd(a.sigma)
    vals = _eigh(root_a @ b.sigma @ root_a, vectors=False)
    tr_sqrt = float(np.sqrt(np.clip(vals, 0.0, None)).sum())
    value = float(diff @ diff + np.trace(a.sigma) + np.trace(b.sigma) - 2.0 * tr_sqrt)
    # Exact arithmetic gives ≥ 0; round-off on identical sets can give −1e-12.
    return max(value, 0.0)
