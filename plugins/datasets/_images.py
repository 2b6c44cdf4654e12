"""Decoding many JPEG/PNG files into one small uint8 array, in parallel threads.

Pillow releases the GIL while decoding, so threads scale; results come back in
input order, so a load is deterministic. Each image is reduced as soon as it is
decoded, so 200k CelebA faces never sit in memory at full size.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ppds_core import DataNotFoundError

__all__ = ["center_crop", "crop_then_resize", "shorter_side_then_crop", "decode_all"]


def center_crop(img: Image.Image, side: int) -> Image.Image:
    """torchvision's ``CenterCrop(side)`` on a PIL image (same rounding of the offsets)."""
    w, h = img.size
    left, top = int(round((w - side) / 2.0)), int(round((h - side) / 2.0))
    return img.crop((left, top, left + side, top + side))


def crop_then_resize(crop: int, size: int) -> Callable[[Image.Image], Image.Image]:
    """DPImageBench's CelebA transform: ``CenterCrop(crop)`` then ``Resize(size)``."""

    def transform(img: Image.Image) -> Image.Image:
        side = min(crop, *img.size)
        return center_crop(img, side).resize((size, size), Image.Resampling.BILINEAR)

    return transform


def shorter_side_then_crop(size: int) -> Callable[[Image.Image], Image.Image]:
    """The usual ImageNet eval transform: shorter side to ``size``, then a centred square."""

    def transform(img: Image.Image) -> Image.Image:
        w, h = img.size
        scale = size / min(w, h)
        new = (max(size, round(w * scale)), max(size, round(h * scale)))
        return center_crop(img.resize(new, Image.Resampling.BICUBIC), size)

    return transform


#: the largest image decoded, in pixels (8192²: far beyond any ImageNet or CelebA photo).
#: Checked from the header before decoding, so a "decompression bomb" (a small PNG that
#: declares 100k×100k pixels) is refused without allocating anything.
MAX_PIXELS = 8192 * 8192
# Pillow's own guard warns from ~89M pixels and raises from ~179M; as an error its warning
# is caught below like the rest (a warning would be a second stderr line, and a bomb
# between the two thresholds would be decoded). Documented Pillow usage; it only ever
# makes loading stricter.
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)


def _too_many_pixels(path: Path, pixels: str) -> DataNotFoundError:
    return DataNotFoundError(f"{path}: {pixels}, more than the {MAX_PIXELS:,} ppds decodes per image "
                             "(a decompression bomb, or not a photo); shrink the image or remove the file")


def _decode(path: Path, mode: str, transform: Callable[[Image.Image], Image.Image]) -> np.ndarray:
    try:
        with Image.open(path) as img:
            width, height = img.size
            if width * height > MAX_PIXELS:
                raise _too_many_pixels(path, f"{width}×{height} = {width * height:,} pixels")
            out = transform(img.convert(mode))
    except DataNotFoundError:  # the size check's own error (an OSError too)
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        found = re.search(r"\((\d+) pixels\)", str(err))  # "Image size (N pixels) exceeds limit …"
        raise _too_many_pixels(path, f"{int(found[1]):,} pixels" if found else str(err)) from None
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise DataNotFoundError(f"{path}: cannot decode image ({err}); replace or remove the file") from None
    arr = np.asarray(out, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def decode_all(paths: Sequence[Path], mode: str, transform: Callable[[Image.Image], Image.Image],
               workers: int | None = None) -> np.ndarray:
    """N×C×S×S uint8 for ``paths`` in order (``mode`` "L" → C=1, "RGB" → C=3)."""
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        arrays = list(pool.map(lambda p: _decode(p, mode, transform), paths))
    if not arrays:
        return np.zeros((0, 1 if mode == "L" else 3, 0, 0), dtype=np.uint8)
    return np.stack(arrays)
