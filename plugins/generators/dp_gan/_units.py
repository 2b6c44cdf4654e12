"""Pixel units at the plugin's edge: canonical [0, 1] outside, [−1, 1] inside the networks."""

from __future__ import annotations

import torch

__all__ = ["to_model_units", "from_model_units"]


def to_model_units(images: torch.Tensor) -> torch.Tensor:
    """Canonical [0, 1] pixels → the networks' [−1, 1] (matching the generator's tanh)."""
    return images * 2.0 - 1.0


def from_model_units(images: torch.Tensor) -> torch.Tensor:
    """The generator's [−1, 1] output → canonical [0, 1]."""
    return ((images + 1.0) / 2.0).clamp(0.0, 1.0)
