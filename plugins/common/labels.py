"""The labels a class-conditional generator samples: given ones checked, or balanced."""

from __future__ import annotations

import torch

from ppds_core import ConfigError

__all__ = ["sample_labels"]


def sample_labels(name: str, n: int, num_classes: int, labels=None) -> torch.Tensor:
    """``labels`` as a (n,) long tensor, checked against ``n`` and the class count; without
    them 0, 1, …, K−1, 0, 1, … (class counts differ by at most one)."""
    if labels is None:
        return torch.arange(n) % num_classes
    y = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    if y.numel() != n:
        raise ConfigError(f"{name}.sample: asked for {n} images but got {y.numel()} labels")
    if y.numel() and (y.min() < 0 or y.max() >= num_classes):
        raise ConfigError(f"{name}.sample: labels must lie in [0, {num_classes}) for {num_classes} classes")
    return y
