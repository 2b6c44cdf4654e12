"""DDIM sampling with optional classifier-free guidance.

Sampling touches only the (EMA) weights, so it is post-processing and costs no
privacy. Guidance mixes the conditional and the null-class prediction,
ε̂ = (1 + w)·ε(x, y) − w·ε(x, ∅) (Ho & Salimans), which is why the model is
trained with label dropout when w > 0.
"""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler, UNet2DModel

__all__ = ["balanced_labels", "ddim_sample"]


def balanced_labels(n: int, num_classes: int) -> torch.Tensor:
    """0, 1, …, C−1, 0, 1, … : class counts differ by at most one."""
    return torch.arange(n) % num_classes


@torch.no_grad()
def ddim_sample(
    unet: UNet2DModel,
    labels: torch.Tensor,
    *,
    shape: tuple[int, int, int],
    num_train_timesteps: int,
    beta_schedule: str,
    steps: int,
    guidance_scale: float,
    null_class: int,
    seed: int,
    device: torch.device | str = "cpu",
    chunk: int = 512,
) -> torch.Tensor:
    """Images in model space ([−1, 1]) for ``labels``; deterministic for ``seed``."""
    sched = DDIMScheduler(num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule,
                          prediction_type="epsilon", clip_sample=True, set_alpha_to_one=True)
    sched.set_timesteps(steps)
    gen = torch.Generator().manual_seed(int(seed))
    was_training = unet.training
    unet.eval()
    out = []
    try:
        for start in range(0, labels.shape[0], chunk):
            y = labels[start : start + chunk].to(device)
            x = torch.randn((y.shape[0], *shape), generator=gen).to(device)
            null = torch.full_like(y, null_class)
            for t in sched.timesteps:
                tt = t.to(device)
                if guidance_scale > 0:
                    both = unet(torch.cat([x, x]), tt, class_labels=torch.cat([y, null])).sample
                    cond, uncond = both.chunk(2)
                    eps = (1 + guidance_scale) * cond - guidance_scale * uncond
                else:
                    eps = unet(x, tt, class_labels=y).sample
                x = sched.step(eps, t, x, eta=0.0).prev_sample
            out.append(x.cpu())
    finally:
        unet.train(was_training)
    return torch.cat(out) if out else torch.empty((0, *shape))
