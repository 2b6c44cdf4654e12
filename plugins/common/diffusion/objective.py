"""DDPM ε-prediction loss with DPDM's noise multiplicity K.

Each example is repeated K times with independent timesteps and noise draws
and its K losses are *averaged before* per-example clipping, so one example
still contributes one clipped gradient (sensitivity C) while the variance of
its gradient estimate falls by ~K. Clipping each copy instead would give one
example K·C of influence and silently break the ledger.

Opacus' per-sample gradients (hooks, functorch) are computed layer by layer
from the rows a layer sees, which here are the B·K repeated rows. The training
step therefore tells the engine ``private_step(losses, rows_per_example=K)``,
and the engine sums each example's K row gradients into one after backward and
*before* it clips; because the loss is the per-example mean over K, that sum is
exactly the gradient of the mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import DDPMScheduler, UNet2DModel
from torch import nn

__all__ = ["Draws", "NoiseMultiplicityDDPMLoss", "make_train_scheduler"]


def make_train_scheduler(num_train_timesteps: int, beta_schedule: str) -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule,
                         prediction_type="epsilon", clip_sample=True)


@dataclass
class Draws:
    """The randomness of one loss evaluation, B·K rows (example-major: row b·K + k)."""

    timesteps: torch.Tensor
    noise: torch.Tensor
    labels: torch.Tensor


class NoiseMultiplicityDDPMLoss(nn.Module):
    """``forward(x0, labels) → (B,)`` per-example losses, each the mean of K noisy copies.

    ``x0`` is in model space ([−1, 1], padded). Labels are dropped to the null
    class with probability ``label_dropout`` per copy (classifier-free guidance).
    Randomness comes from ``self.generator`` when set (deterministic training).
    """

    def __init__(self, unet: UNet2DModel, scheduler: DDPMScheduler, multiplicity: int,
                 null_class: int, label_dropout: float = 0.0):
        super().__init__()
        self.unet = unet
        self.multiplicity = int(multiplicity)
        self.null_class = int(null_class)
        self.label_dropout = float(label_dropout)
        self.num_train_timesteps = int(scheduler.config.num_train_timesteps)
        self.register_buffer("alphas_cumprod", scheduler.alphas_cumprod.clone().float(), persistent=False)
        self.generator: torch.Generator | None = None

    def draw(self, x0: torch.Tensor, labels: torch.Tensor) -> Draws:
        k, dev = self.multiplicity, x0.device
        n = x0.shape[0] * k
        gen = self.generator
        on_gen = gen.device if gen is not None else dev
        t = torch.randint(0, self.num_train_timesteps, (n,), generator=gen, device=on_gen).to(dev)
        noise = torch.randn((n, *x0.shape[1:]), generator=gen, device=on_gen).to(dev, x0.dtype)
        y = labels.repeat_interleave(k)
        if self.label_dropout > 0:
            drop = torch.rand(n, generator=gen, device=on_gen).to(dev) < self.label_dropout
            y = torch.where(drop, torch.full_like(y, self.null_class), y)
        return Draws(t, noise, y)

    def losses(self, x0: torch.Tensor, draws: Draws) -> torch.Tensor:
        """(B, K) squared errors of the ε-prediction, mean over pixels."""
        k = self.multiplicity
        x = x0.repeat_interleave(k, dim=0)
        a = self.alphas_cumprod[draws.timesteps].view(-1, *([1] * (x.ndim - 1)))
        xt = a.sqrt() * x + (1 - a).sqrt() * draws.noise
        pred = self.unet(xt, draws.timesteps, class_labels=draws.labels).sample
        per_row = (pred - draws.noise).pow(2).flatten(1).mean(1)
        return per_row.view(x0.shape[0], k)

    def forward(self, x0: torch.Tensor, labels: torch.Tensor, draws: Draws | None = None) -> torch.Tensor:
        if draws is None:
            draws = self.draw(x0, labels)
        return self.losses(x0, draws).mean(1)
