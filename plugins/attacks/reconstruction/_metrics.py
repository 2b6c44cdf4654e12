"""Per-target image distances for reconstructions: MSE, PSNR, SSIM (canonical [0, 1] units).

SSIM's Gaussian window is shrunk for tiny images (an 11-px window does not
fit 8×8 digits): the kernel is the largest odd size ≤ min(11, side) with σ
scaled in proportion, which keeps SSIM well defined and says so in the row.
"""

from __future__ import annotations

import torch
from torchmetrics.functional.image import structural_similarity_index_measure

__all__ = ["mse", "psnr", "ssim", "ssim_kernel"]


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.float() - b.float()).pow(2).flatten(1).mean(1)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(1.0 / mse(a, b).clamp_min(1e-10))


def ssim_kernel(side: int) -> int:
    k = min(11, side)
    return k if k % 2 else k - 1


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    k = ssim_kernel(min(a.shape[-2:]))
    return structural_similarity_index_measure(
        a.float(), b.float(), data_range=1.0, kernel_size=k, sigma=1.5 * k / 11,
        reduction="none")
