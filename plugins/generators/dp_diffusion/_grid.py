"""A PNG grid of samples, one column per class, for eyeballing a fitted model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ppds_core import ImageSet

__all__ = ["write_grid"]


def write_grid(samples: ImageSet, path: Path, columns: int, scale: int = 1) -> None:
    """Row-major grid: sample i goes to row i // columns, column i % columns."""
    arr = samples.to_uint8()  # N×C×H×W
    n, c, h, w = arr.shape
    rows = -(-n // columns)
    canvas = np.zeros((rows * (h + 1) + 1, columns * (w + 1) + 1, c), dtype=np.uint8)
    canvas[...] = 128
    for i in range(n):
        r, col = divmod(i, columns)
        canvas[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + col * (w + 1) : 1 + col * (w + 1) + w] = arr[i].transpose(1, 2, 0)
    img = Image.fromarray(canvas[..., 0] if c == 1 else canvas)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    img.save(path)
