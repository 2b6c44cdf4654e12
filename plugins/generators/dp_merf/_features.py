"""Random Fourier features and the class-conditional mean embedding DP-MERF releases.

φ(x) = √(2/D)·[cos(Wx), sin(Wx)] with the D/2 rows of W drawn from N(0, σ⁻² I)
approximates the Gaussian kernel k(x, x') = exp(−‖x − x'‖² / 2σ²) by
⟨φ(x), φ(x')⟩ (Rahimi & Recht 2007; the reference's ``rff_sphere``). Because
cos² + sin² = 1, every ‖φ(x)‖ is exactly 1 whatever x is, and so is every
example's contribution φ(x) ⊗ onehot(y) to the embedding: that, and nothing
about the data, is what bounds the sensitivity of the release.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["rff_frequencies", "rff", "class_embedding", "embedding_of"]

#: images per chunk while summing the private embedding (bounds memory, not results)
_CHUNK = 1024


def rff_frequencies(dim: int, features: int, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """The D/2 × dim frequency matrix W, W_ij ~ N(0, 1/σ²), drawn from ``generator`` (seeded)."""
    return torch.randn(features // 2, dim, generator=generator, dtype=torch.float32) / sigma


def rff(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """φ(x) for the rows of ``x`` (N×dim, flattened [0, 1] images): N×D rows of norm 1."""
    proj = x @ w.t()
    return torch.cat([torch.cos(proj), torch.sin(proj)], dim=1) / math.sqrt(w.shape[0])


def embedding_of(phi: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(1/n) Σᵢ φᵢ ⊗ onehot(yᵢ): D × classes (the reference's ``data_label_embedding``)."""
    onehot = F.one_hot(labels, num_classes).to(phi.dtype)
    return phi.t() @ onehot / phi.shape[0]


def class_embedding(images: torch.Tensor, labels: torch.Tensor, w: torch.Tensor,
                    num_classes: int) -> torch.Tensor:
    """The private set's embedding μ = (1/N) Σᵢ φ(xᵢ) ⊗ onehot(yᵢ), D × classes, float32.

    Summed in float64 over chunks of images on ``w``'s device, so its value
    does not depend on the chunking and a large set fits in memory.
    """
    n = images.shape[0]
    total = torch.zeros(w.shape[0] * 2, num_classes, dtype=torch.float64, device=w.device)
    for start in range(0, n, _CHUNK):
        x = images[start:start + _CHUNK].reshape(-1, w.shape[1]).to(w.device, torch.float32)
        y = labels[start:start + _CHUNK].to(w.device)
        onehot = F.one_hot(y, num_classes).to(torch.float64)
        total += rff(x, w).to(torch.float64).t() @ onehot
    return (total / n).to(torch.float32)
