"""Exponential moving average of the network's weights, used for sampling.

EMA is post-processing of the DP-SGD iterates, so it costs no privacy. The
decay warms up as min(decay, (1 + n)/(10 + n)) over n updates, so short runs
(embedded data, smoke tests) are not dominated by the random initialisation.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["ema_copy", "ema_update"]


def ema_copy(model: nn.Module) -> nn.Module:
    """A frozen copy to average into."""
    return copy.deepcopy(model).eval().requires_grad_(False)


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float, updates: int) -> None:
    """One EMA step; ``updates`` counts the steps so far including this one."""
    d = min(float(decay), (1 + updates) / (10 + updates))
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.mul_(d).add_(p.detach().to(e.dtype), alpha=1 - d)
    for eb, b in zip(ema.buffers(), model.buffers(), strict=True):
        eb.copy_(b)
