"""Pixel-unit conversions between the canonical [0, 1] images and what networks want.

Every :class:`~ppds_core.ImageSet` holds float images in [0, 1]. Diffusion
models, the classifiers and LPIPS work in [−1, 1]; hashes and Inception take
uint8. The conversions were written out in seven places; here each is written
once, with the exact float operations the plugins always used, so results stay
bit-identical (``x * 2 - 1``, not ``2 * x - 1`` or ``(x - 0.5) / 0.5``).
"""

from __future__ import annotations

import torch

__all__ = ["to_signed", "from_signed", "to_uint8"]


def to_signed(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] → [−1, 1] (no clamping: callers pass canonical images)."""
    return x * 2 - 1


def from_signed(x: torch.Tensor) -> torch.Tensor:
    """[−1, 1] network output → [0, 1], out-of-range values clamped first."""
    return (x.clamp(-1, 1) + 1) / 2


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] → uint8 0…255, rounded to nearest (the same rule as ``ImageSet.to_uint8``)."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)
