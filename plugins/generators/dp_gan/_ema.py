"""Exponential moving average of the generator's weights, the network we sample from."""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """A frozen shadow copy whose weights trail the live generator's.

    GAN generators oscillate from step to step; averaging their weights gives
    steadier samples at no privacy cost (the generator is post-processing).
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model)
        for p in self.model.parameters():
            p.requires_grad_(False)

    def current_decay(self) -> float:
        """``decay``, warmed up as (1 + t) / (10 + t) so that short runs (a few
        hundred generator steps on small private sets) are not dominated by the
        random initial weights."""
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = self.current_decay()
        self.updates += 1
        for shadow, live in zip(self.model.parameters(), model.parameters(), strict=True):
            shadow.lerp_(live.detach(), 1.0 - decay)
        for shadow, live in zip(self.model.buffers(), model.buffers(), strict=True):
            shadow.copy_(live)
