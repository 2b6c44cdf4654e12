"""Non-private pretraining of the diffusion model on the selected public images.

Public data costs no privacy, so this is a plain Adam loop (no clipping, no
noise, no accountant) on the *same* objective the DP fine-tuning uses, with
label dropout so the pretrained model also knows the null class that
classifier-free guidance needs.
"""

from __future__ import annotations

import torch
from ppds_plugins.common.diffusion.objective import NoiseMultiplicityDDPMLoss

__all__ = ["pretrain"]


def pretrain(objective: NoiseMultiplicityDDPMLoss, images: torch.Tensor, labels: torch.Tensor, *,
             epochs: int, batch_size: int, lr: float, label_dropout: float, seed: int,
             device: torch.device) -> list[float]:
    """Train ``objective.unet`` in place on model-space ``images``; returns the loss per epoch."""
    gen = torch.Generator().manual_seed(int(seed))
    saved = objective.generator, objective.label_dropout
    objective.generator, objective.label_dropout = gen, float(label_dropout)
    objective.to(device)
    opt = torch.optim.Adam(objective.unet.parameters(), lr=lr)
    history: list[float] = []
    try:
        objective.train()
        for _ in range(epochs):
            total, count = 0.0, 0
            for idx in torch.randperm(images.shape[0], generator=gen).split(batch_size):
                x, y = images[idx].to(device), labels[idx].to(device)
                loss = objective(x, y).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                count += len(idx)
            history.append(total / max(count, 1))
    finally:
        objective.generator, objective.label_dropout = saved
        objective.cpu()
    return history
