"""The two networks of DP-GAN, sized from the image shape.

Both are small DCGAN-style conv nets whose depth follows the image size: the
feature map is halved ``levels`` times in the discriminator and doubled as
many times in the generator, so 8×8 digits get a 2×2 base, 28×28 MNIST a 7×7
base and 32×32 CIFAR-10 a 4×4 base.

The discriminator is the *private* network, so it may only use layers for
which Opacus computes per-sample gradients (Conv2d, Linear, Embedding,
GroupNorm) and no BatchNorm, which mixes examples within a batch and would
break per-example clipping. Class conditioning is by projection
(Miyato & Koyama 2018): ``score = w·h + <embed(y), h>``.

The generator never sees private data directly, so it can use whatever
trains well; it is conditioned by concatenating a label embedding to the
latent code and uses GroupNorm so that training and sampling behave alike
(no batch statistics to keep in step with the EMA weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["NetShape", "net_shape", "auto_width", "ConditionalGenerator", "ProjectionDiscriminator"]

#: most up/down-sampling stages; deeper is not needed for ≤ 64 px images
MAX_LEVELS = 3


@dataclass(frozen=True)
class NetShape:
    """Image shape and the resolution ladder both networks walk."""

    channels: int
    height: int
    width: int
    levels: int

    @property
    def base(self) -> tuple[int, int]:
        """Spatial size at the bottom of the ladder."""
        return self.height >> self.levels, self.width >> self.levels


def _halvings(size: int) -> int:
    """How often ``size`` halves exactly while staying ≥ 2, capped at MAX_LEVELS."""
    k = 0
    while k < MAX_LEVELS and size % 2 == 0 and size // 2 >= 2:
        size //= 2
        k += 1
    return k


def net_shape(channels: int, height: int, width: int) -> NetShape:
    """Pick the ladder depth for a C×H×W image (8→2, 28→7, 32→4 at the base).

    Raises ValueError for images too small or odd-sized to halve even once.
    """
    levels = min(_halvings(height), _halvings(width))
    if levels < 1:
        raise ValueError(
            f"DP-GAN needs images whose height and width are even and ≥ 4, got {height}×{width}"
        )
    return NetShape(channels, height, width, levels)


def auto_width(shape: NetShape) -> int:
    """Channels at the finest level when the config leaves them open.

    Small enough for 8×8 digits to train in about a minute on two CPU cores
    (16), DCGAN-like for MNIST (32) and CIFAR-10 (64). Fewer discriminator
    parameters also means less total DP noise, which favours narrow nets on
    small private sets.
    """
    pixels = shape.height * shape.width
    if pixels <= 16 * 16:
        return 16
    if pixels <= 28 * 28:
        return 32
    return 64


def _group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with up to 8 groups that divide ``channels``."""
    groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


def _g_norm(norm: str, channels: int) -> list[nn.Module]:
    """The generator's normalisation layer: GroupNorm, BatchNorm (G is not private) or none."""
    if norm == "group":
        return [_group_norm(channels)]
    if norm == "batch":
        return [nn.BatchNorm2d(channels)]
    if norm == "none":
        return []
    raise ValueError(f"unknown generator norm {norm!r}")


def _widths(base_width: int, levels: int) -> list[int]:
    """Channel counts from the finest to the coarsest level (doubling, capped at 8×)."""
    return [base_width * min(2**i, 8) for i in range(levels + 1)]


class ConditionalGenerator(nn.Module):
    """z ⊕ embed(y) → base feature map → ``levels`` ×2 upsampling stages → tanh image."""

    def __init__(self, shape: NetShape, num_classes: int, latent_dim: int, width: int,
                 norm: str = "group"):
        super().__init__()
        self.shape = shape
        self.num_classes = num_classes
        self.latent_dim = latent_dim
        widths = _widths(width, shape.levels)[::-1]  # coarse → fine
        bh, bw = shape.base
        self.embed = nn.Embedding(num_classes, latent_dim)
        self.project = nn.Sequential(
            nn.Linear(2 * latent_dim, widths[0] * bh * bw),
            nn.ReLU(inplace=True),
        )
        self._base = (widths[0], bh, bw)
        stages: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            stages += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(c_in, c_out, 3, padding=1),
                *_g_norm(norm, c_out),
                nn.ReLU(inplace=True),
            ]
        self.stages = nn.Sequential(*stages)
        self.to_image = nn.Conv2d(widths[-1], shape.channels, 3, padding=1)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Images in [−1, 1] (model units), N×C×H×W."""
        h = self.project(torch.cat([z, self.embed(y)], dim=1))
        h = h.view(-1, *self._base)
        return torch.tanh(self.to_image(self.stages(h)))


class ProjectionDiscriminator(nn.Module):
    """``levels`` stride-2 conv stages → flattened features → linear + projection score."""

    def __init__(self, shape: NetShape, num_classes: int, width: int, norm: str = "group"):
        super().__init__()
        self.shape = shape
        widths = _widths(width, shape.levels)
        layers: list[nn.Module] = [
            nn.Conv2d(shape.channels, widths[0], 3, padding=1),
            nn.LeakyReLU(0.2),
        ]
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            layers.append(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1))
            if norm == "group":
                layers.append(_group_norm(c_out))
            layers.append(nn.LeakyReLU(0.2))
        self.features = nn.Sequential(*layers)
        bh, bw = shape.base
        feat = widths[-1] * bh * bw
        self.flatten = nn.Flatten()
        self.score = nn.Linear(feat, 1)
        self.embed = nn.Embedding(num_classes, feat)
        nn.init.normal_(self.embed.weight, std=feat**-0.5)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One real-valued score per image (higher = looks real for class ``y``)."""
        h = self.flatten(self.features(x))
        return self.score(h).squeeze(1) + (self.embed(y) * h).sum(dim=1)
