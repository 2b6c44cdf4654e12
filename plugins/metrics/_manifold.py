"""k-NN manifold precision and recall (Kynkäänniemi et al., NeurIPS 2019).

Each set's manifold is the union of balls around its points, the radius of
a ball being the distance to that point's k-th nearest neighbour in its own
set (itself excluded). Precision is the fraction of generated points inside
the real manifold (are samples realistic?); recall the fraction of real
points inside the generated manifold (is the real variety covered?).
Distances are computed in chunks so that memory stays O(chunk × N).
"""

from __future__ import annotations

import torch

__all__ = ["knn_radii", "manifold_coverage", "precision_recall"]


def _as_float64(x) -> torch.Tensor:
    return torch.as_tensor(x).detach().cpu().to(torch.float64)


def knn_radii(points: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    """Distance from each point to its k-th nearest *other* point of the same set."""
    points = _as_float64(points)
    n = points.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k={k} needs at least k+1={k + 1} points, got {n}")
    radii = torch.empty(n, dtype=torch.float64)
    for start in range(0, n, chunk):
        d = torch.cdist(points[start : start + chunk], points)
        # k+1 smallest includes the point itself at distance 0.
        radii[start : start + chunk] = d.topk(k + 1, dim=1, largest=False).values[:, k]
    return radii


def manifold_coverage(
    queries: torch.Tensor, points: torch.Tensor, radii: torch.Tensor, chunk: int = 1024
) -> float:
    """Fraction of ``queries`` within ``radii[j]`` of some ``points[j]``."""
    queries, points = _as_float64(queries), _as_float64(points)
    inside = 0
    for start in range(0, queries.shape[0], chunk):
        d = torch.cdist(queries[start : start + chunk], points)
        inside += int((d <= radii.unsqueeze(0)).any(dim=1).sum())
    return inside / queries.shape[0]


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3) -> tuple[float, float]:
    """(precision, recall) of ``fake`` features against ``real`` features."""
    real, fake = _as_float64(real), _as_float64(fake)
    if real.shape[1:] != fake.shape[1:]:
        raise ValueError(
            f"feature shapes differ: {tuple(real.shape[1:])} vs {tuple(fake.shape[1:])}"
        )
    precision = manifold_coverage(fake, real, knn_radii(real, k))
    recall = manifold_coverage(real, fake, knn_radii(fake, k))
    return precision, recall
