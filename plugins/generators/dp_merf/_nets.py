"""The reference's small conditional generator, sized from the image shape.

ParkLabML/DP-MERF's ``ConvCondGen``: [z, onehot(y)] → linear → BatchNorm →
ReLU → linear → BatchNorm → a base feature map, then (×2 bilinear upsampling,
conv) per level with ReLU between the convolutions, and a sigmoid, so images
come out in [0, 1] directly. The reference hard-codes MNIST's 7×7 base and
two levels (channels 16 → 8 → 1, 5×5 kernels) and SVHN's 4×4 base and three;
here the number of levels is how often the image halves while staying ≥ 2
pixels (at most three): 8×8 digits get a 2×2 base, 28×28 MNIST 7×7, 32×32
CIFAR-10 4×4. The generator never sees private data, so BatchNorm is allowed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConditionalGenerator", "levels_for"]

#: most ×2 upsampling stages (the reference's SVHN generator has three)
MAX_LEVELS = 3


def _halvings(size: int) -> int:
    k = 0
    while k < MAX_LEVELS and size % 2 == 0 and size // 2 >= 2:
        size //= 2
        k += 1
    return k


def levels_for(height: int, width: int) -> int:
    """Upsampling stages for an H×W image (8 → 2, 28 → 2, 32 → 3; an odd size → 0)."""
    return min(_halvings(height), _halvings(width))


class ConditionalGenerator(nn.Module):
    """z ⊕ onehot(y) → two linear layers → base map → (upsample, conv) × levels → sigmoid."""

    def __init__(self, shape: tuple[int, int, int], num_classes: int, latent_dim: int, hidden: int,
                 width: int, kernel_size: int, batch_norm: bool):
        super().__init__()
        c, h, w = shape
        self.shape = (c, h, w)
        self.num_classes = num_classes
        self.latent_dim = latent_dim
        self.levels = levels_for(h, w)
        convs = max(self.levels, 1)
        chans = [max(width >> i, 1) for i in range(convs)] + [c]
        self._base = (chans[0], h >> self.levels, w >> self.levels)
        base = chans[0] * self._base[1] * self._base[2]
        self.fc1 = nn.Linear(latent_dim + num_classes, hidden)
        self.bn1 = nn.BatchNorm1d(hidden) if batch_norm else nn.Identity()
        self.fc2 = nn.Linear(hidden, base)
        self.bn2 = nn.BatchNorm1d(base) if batch_norm else nn.Identity()
        pad = (kernel_size - 1) // 2
        self.convs = nn.ModuleList(
            nn.Conv2d(a, b, kernel_size, padding=pad) for a, b in zip(chans[:-1], chans[1:], strict=True)
        )

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], N×C×H×W."""
        code = torch.cat([z, F.one_hot(y, self.num_classes).to(z.dtype)], dim=1)
        x = self.bn1(self.fc1(code))
        x = self.bn2(self.fc2(F.relu(x)))
        x = x.view(-1, *self._base)
        for i, conv in enumerate(self.convs):
            if i < self.levels:
                x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
            x = conv(x)
            if i < len(self.convs) - 1:
                x = F.relu(x)
        return torch.sigmoid(x)
