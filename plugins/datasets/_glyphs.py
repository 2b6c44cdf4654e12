"""Rendering the 62 glyphs 0-9 A-Z a-z as small grey-scale images, deterministically.

Why this shape: the glyph set is the *public* data for digit-like private sets,
and PrivImage's semantic query only helps if glyph "3" looks like a handwritten 3
to a classifier. Each character has two styles of master drawing: ``font``
(Pillow's bundled font at a few stroke widths) and ``pen`` (hand-style strokes
from :mod:`._pen_glyphs`, each variant with its own wobble and pen width). Every
master is cut to its ink and fitted into a square (like MNIST's 20×20 box), then
every sample draws a style, a master, and its own random size, aspect, shear,
rotation and offset, applied in one batched ``grid_sample`` at several times the
target resolution, and is box-downsampled: at 8×8 that gives the blurry, centred
look of scikit-learn's digits (which are 32×32 bitmaps counted in 4×4 blocks).
Drawing each master once and warping in batches keeps 6,200 images near a second.
"""

from __future__ import annotations

import math
import string
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from ._pen_glyphs import render_pen_master

__all__ = ["CHARACTERS", "STYLES", "STROKE_WIDTHS", "PEN_VARIANTS", "glyph_bank", "render_glyphs",
           "font_available"]

#: the class names, in label order
CHARACTERS: str = string.digits + string.ascii_uppercase + string.ascii_lowercase
#: the drawing styles, in the order their masters sit in the bank
STYLES: tuple[str, ...] = ("font", "pen")
#: stroke widths (pixels at the 48-px master size) each character is drawn with in the font style
STROKE_WIDTHS: tuple[int, ...] = (0, 1, 2, 3)
#: pen-style masters per character (each with its own wobble and pen width)
PEN_VARIANTS: int = 12
#: range of width multipliers and of horizontal shear applied per sample
ASPECT: tuple[float, float] = (0.9, 1.3)
SHEAR: tuple[float, float] = (-0.2, 0.1)
_FONT_SIZE = 48
_CANVAS = 112
_BANK = 64
_CACHE_MAX_PIXELS = 32_000_000  # 128 MB of float32 per cached render


def _font() -> ImageFont.FreeTypeFont:
    font = ImageFont.load_default(size=_FONT_SIZE)
    if not isinstance(font, ImageFont.FreeTypeFont):  # Pillow built without FreeType
        raise OSError("Pillow has no FreeType support, so its bundled scalable font cannot load")
    return font


def font_available() -> tuple[bool, str]:
    """Whether Pillow's bundled scalable font loads here (it ships inside Pillow ≥ 10.1)."""
    try:
        _font()
    except OSError as err:
        return False, f"{err}; install a Pillow wheel with FreeType (pip install --force-reinstall pillow)"
    return True, ""


def _square(img: Image.Image) -> np.ndarray:
    """The ink of a white-on-black drawing, centred in a _BANK² square, as floats in [0, 1]."""
    box = img.getbbox()
    assert box is not None, "glyph rendered empty"
    ink = img.crop(box)
    side = max(ink.size)
    square = Image.new("L", (side, side), 0)
    square.paste(ink, ((side - ink.size[0]) // 2, (side - ink.size[1]) // 2))
    square = square.resize((_BANK, _BANK), Image.Resampling.LANCZOS)
    return np.asarray(square, dtype=np.float32) / 255.0


def _font_master(char: str, stroke: int, font: ImageFont.FreeTypeFont) -> np.ndarray:
    img = Image.new("L", (_CANVAS, _CANVAS), 0)
    ImageDraw.Draw(img).text(
        (_CANVAS // 2, _CANVAS // 2), char, fill=255, font=font, anchor="mm",
        stroke_width=stroke, stroke_fill=255,
    )
    return _square(img)


def _masters(char_index: int, style: str, font: ImageFont.FreeTypeFont | None) -> list[np.ndarray]:
    char = CHARACTERS[char_index]
    if style == "font":
        assert font is not None
        return [_font_master(char, w, font) for w in STROKE_WIDTHS]
    rng = np.random.default_rng(char_index)  # fixed per character: the bank never changes
    return [_square(render_pen_master(char, _CANVAS, rng, form=v)) for v in range(PEN_VARIANTS)]


@lru_cache(maxsize=2)
def glyph_bank(styles: tuple[str, ...] = STYLES) -> tuple[torch.Tensor, tuple[int, ...]]:
    """62 × M × 64 × 64 master glyphs in [0, 1], and how many of the M belong to each style.

    Drawn once per process: the styles' masters sit side by side, in ``styles`` order.
    """
    unknown = sorted(set(styles) - set(STYLES))
    if unknown or not styles:
        raise ValueError(f"glyph styles {list(styles)}: choose one or more of {list(STYLES)}")
    font = _font() if "font" in styles else None
    per_char = [[m for style in styles for m in _masters(i, style, font)] for i in range(len(CHARACTERS))]
    counts = tuple(len(STROKE_WIDTHS) if style == "font" else PEN_VARIANTS for style in styles)
    return torch.from_numpy(np.clip(np.stack([np.stack(ms) for ms in per_char]), 0.0, 1.0)), counts


def default_fill(image_size: int) -> tuple[float, float]:
    """How much of the frame a glyph's longer side spans: full-frame at sklearn-digit
    sizes, about 20/28 at MNIST-like sizes (MNIST fits digits in a 20×20 box)."""
    return (0.8, 1.0) if image_size <= 16 else (0.6, 0.8)


def _thetas(n: int, gen: torch.Generator, fill: tuple[float, float], max_rotation: float,
            max_shift: float) -> torch.Tensor:
    """n inverse affine maps (output → master glyph coordinates), one random pose each."""

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64)

    scale = uniform(*fill)
    aspect = uniform(*ASPECT)  # sklearn's digits are wider than the cut-to-ink masters (5.4 vs 4.9 px at 8 px)
    shear = uniform(*SHEAR)  # negative = forward slant
    angle = uniform(-max_rotation, max_rotation) * (math.pi / 180.0)
    shift = torch.stack([uniform(-max_shift, max_shift), uniform(-max_shift, max_shift)], 1)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # forward map glyph → output: M = scale · R(angle) · [[aspect, shear], [0, 1]]
    m = torch.empty(n, 2, 2, dtype=torch.float64)
    m[:, 0, 0] = cos * aspect
    m[:, 0, 1] = cos * shear - sin
    m[:, 1, 0] = sin * aspect
    m[:, 1, 1] = sin * shear + cos
    m = m * scale[:, None, None]
    inv = torch.linalg.inv(m)
    theta = torch.cat([inv, -(inv @ shift[:, :, None])], dim=2)
    return theta.float()


def render_glyphs(per_class: int, image_size: int, seed: int, **pose) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` images of each of the 62 characters: (N×1×S×S float in [0, 1], labels).

    Deterministic for a seed: all randomness comes from one seeded torch generator
    and the CPU warping is deterministic. The last few renders are cached (a matrix
    asks for the same public set once per cell); callers get their own copies.
    """
    if per_class * len(CHARACTERS) * image_size**2 > _CACHE_MAX_PIXELS:  # too big to keep around
        return _render(per_class, image_size, seed, **pose)
    images, labels = _render_cached(per_class, image_size, seed, tuple(sorted(pose.items())))
    return images.clone(), labels.clone()


@lru_cache(maxsize=4)
def _render_cached(per_class: int, image_size: int, seed: int, pose: tuple) -> tuple[torch.Tensor, torch.Tensor]:
    return _render(per_class, image_size, seed, **dict(pose))


def _render(
    per_class: int,
    image_size: int,
    seed: int,
    fill: tuple[float, float] | None = None,
    max_rotation: float = 15.0,
    max_shift: float = 0.08,
    styles: tuple[str, ...] = STYLES,
    chunk: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    bank, counts = glyph_bank(tuple(styles))
    n_chars = bank.shape[0]
    gen = torch.Generator().manual_seed(int(seed))
    n = per_class * n_chars
    labels = torch.arange(n_chars).repeat_interleave(per_class)
    # each sample: a style (equally likely), then one of that style's masters (equally likely)
    style = torch.randint(0, len(counts), (n,), generator=gen)
    count = torch.tensor(counts)[style]
    first = torch.tensor((0, *counts[:-1])).cumsum(0)[style]
    strokes = first + (torch.rand(n, generator=gen, dtype=torch.float64) * count).long().clamp_max(count - 1)
    thetas = _thetas(n, gen, fill or default_fill(image_size), max_rotation, max_shift)
    supersample = max(2, math.ceil(32 / image_size))
    big = image_size * supersample
    out = torch.empty(n, 1, image_size, image_size)
    # pixel-centre coordinates in [-1, 1] (F.affine_grid's, without its per-image copy of them)
    axis = (torch.arange(big, dtype=torch.float32) * 2 + 1) / big - 1
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    base = torch.stack([xs.reshape(-1), ys.reshape(-1), torch.ones(big * big)], 1)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        masters = bank[labels[start:stop], strokes[start:stop]].unsqueeze(1)
        grid = (thetas[start:stop] @ base.T).transpose(1, 2).reshape(stop - start, big, big, 2)
        warped = F.grid_sample(masters, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        out[start:stop] = F.avg_pool2d(warped, supersample)
    return out.clamp_(0.0, 1.0), labels
