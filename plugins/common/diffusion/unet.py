"""The class-conditional UNet and the pixel conversions at the model's edge.

diffusers' ``UNet2DModel`` uses GroupNorm, SiLU, Conv2d, Linear and Embedding
only (attention optional), all of which Opacus computes per-sample gradients
for; there is no BatchNorm, whose statistics would mix examples. The class
embedding has one extra row, the *null* class, which classifier-free guidance
uses as "no label".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import UNet2DModel

from ..pixels import from_signed, to_signed
from .config import DiffusionConfig

__all__ = ["build_unet", "model_side", "to_model_space", "from_model_space"]


def model_side(native: int, levels: int) -> int:
    """The side the UNet sees: ``native`` padded up to a multiple of 2^(levels−1),
    so every downsampling halves an even size (8×8 digits with 3 levels stay 8×8;
    28×28 MNIST with 4 levels becomes 32×32)."""
    m = 2 ** (levels - 1)
    return -(-native // m) * m


def build_unet(cfg: DiffusionConfig, channels: int, side: int, num_classes: int) -> UNet2DModel:
    """A UNet2DModel sized by the config; class ``num_classes`` is the null class."""
    levels = len(cfg.block_out_channels)
    attn = cfg.attention
    down = tuple(
        "AttnDownBlock2D" if attn and i == levels - 1 and levels > 1 else "DownBlock2D"
        for i in range(levels)
    )
    up = tuple("AttnUpBlock2D" if attn and i == 0 and levels > 1 else "UpBlock2D" for i in range(levels))
    return UNet2DModel(
        sample_size=side,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        down_block_types=down,
        up_block_types=up,
        num_class_embeds=num_classes + 1,
        norm_num_groups=cfg.norm_num_groups,
        add_attention=attn,
        attention_head_dim=8 if attn else None,
        dropout=cfg.dropout,
    )


def to_model_space(images: torch.Tensor, side: int, image_size: int | None) -> torch.Tensor:
    """Canonical [0, 1] images → [−1, 1], resized to ``image_size`` and zero-padded
    (black, i.e. −1) symmetrically to ``side``."""
    x = images.float()
    if image_size is not None and tuple(x.shape[-2:]) != (image_size, image_size):
        shrink = x.shape[-1] > image_size
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear",
                          align_corners=False, antialias=shrink).clamp(0, 1)
    h, w = x.shape[-2:]
    top, left = (side - h) // 2, (side - w) // 2
    x = to_signed(x)
    if (h, w) != (side, side):
        x = F.pad(x, (left, side - w - left, top, side - h - top), value=-1.0)
    return x


def from_model_space(x: torch.Tensor, native: int) -> torch.Tensor:
    """[−1, 1] model output → canonical [0, 1], the padding cut away."""
    side = x.shape[-1]
    off = (side - native) // 2
    x = x[..., off : off + native, off : off + native]
    return from_signed(x).contiguous()
