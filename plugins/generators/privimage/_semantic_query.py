"""PrivImage's semantic query: which public classes do the private images look like?

A classifier trained on the *public* data's own labels maps every private
image to its top-k public classes; each adds 1 to a [private class × public
class] histogram. One private image changes k cells of its row by 1, so the
histogram's L2 sensitivity is √k, and Gaussian noise of std σ_q·√k makes it a
Gaussian mechanism with noise multiplier σ_q, run once on the full private
set (q = 1). That spend goes on the ledger and is composed with DP-SGD by the
accountant, so the target ε covers both.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ppds_core import GaussianSpend, ImageSet

__all__ = ["match_public_to_private", "train_query_classifier", "topk_histogram",
           "noisy_histogram", "query_spend"]


def match_public_to_private(public: ImageSet, shape: tuple[int, int, int]) -> ImageSet:
    """Public images in the private images' C×H×W (grey ↔ RGB, resized), so one
    classifier and one diffusion model see both."""
    x = public.images
    c, h, w = shape
    if x.shape[1] != c:
        if c == 1:
            x = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]) if x.shape[1] == 3 else x.mean(1, keepdim=True)
        else:
            x = x[:, :1].expand(-1, c, -1, -1)
    if tuple(x.shape[-2:]) != (h, w):
        shrink = x.shape[-1] > w
        x = F.interpolate(x.float(), size=(h, w), mode="bilinear", align_corners=False, antialias=shrink)
    return ImageSet(x.clamp(0, 1).contiguous(), public.labels, public.class_names, public.name, dict(public.meta))


def train_query_classifier(public: ImageSet, epochs: int, seed: int, device: torch.device):
    """The semantic query function: a classifier of the public labels (no private data)."""
    from ppds_plugins.metrics._classifiers import train_classifier

    return train_classifier(public, epochs=epochs, seed=seed, device=device)


@torch.no_grad()
def topk_histogram(public_logits: torch.Tensor, private_labels: torch.Tensor,
                   num_private: int, k: int) -> torch.Tensor:
    """[private class × public class] counts of each private image's top-k public classes."""
    top = public_logits.topk(k, dim=1).indices  # N × k, distinct classes per image
    hist = torch.zeros(num_private, public_logits.shape[1], dtype=torch.float64)
    rows = private_labels.long().repeat_interleave(k)
    hist.index_put_((rows, top.reshape(-1)), torch.ones(rows.numel(), dtype=torch.float64), accumulate=True)
    return hist


def noisy_histogram(hist: torch.Tensor, sigma: float, k: int, generator: torch.Generator) -> torch.Tensor:
    """The histogram plus N(0, (σ_q·√k)²) per cell."""
    std = sigma * math.sqrt(k)
    return hist + std * torch.randn(hist.shape, generator=generator, dtype=torch.float64)


def query_spend(sigma: float, k: int) -> GaussianSpend:
    return GaussianSpend(noise_multiplier=float(sigma), sensitivity=math.sqrt(k), count=1,
                         purpose="semantic query")
