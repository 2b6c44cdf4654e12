"""Exponential moving average of a network's weights: the network generators sample from.

Shared by DP-GAN (its generator) and the diffusion generators (their UNet).
Averaging is post-processing of the training iterates, so it costs no privacy.
The decay warms up as min(decay, (1 + n) / (10 + n)) after n updates, so short
runs (embedded data, a few hundred steps) are not dominated by the random
initial weights. It is an ``nn.Module`` so the copy *and* its update count
move with the model to the device and go into Lightning checkpoints: a resumed
run continues the same warm-up instead of restarting it.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["EMA"]


class EMA(nn.Module):
    """A frozen copy of ``model`` (``.model``) whose weights trail the live model's."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__()
        self.decay = float(decay)
        self.model = copy.deepcopy(model).requires_grad_(False)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def current_decay(self) -> float:
        """The decay the next update uses: ``decay``, warmed up over the first updates."""
        n = int(self.updates)
        return min(self.decay, (1.0 + n) / (10.0 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = self.current_decay()
        self.updates += 1
        for shadow, live in zip(self.model.parameters(), model.parameters(), strict=True):
            shadow.lerp_(live.detach().to(shadow.dtype), 1.0 - decay)
        for shadow, live in zip(self.model.buffers(), model.buffers(), strict=True):
            shadow.copy_(live)
