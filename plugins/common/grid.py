"""A PNG grid of samples, one column per class, so mode collapse shows at a glance.

Every first-party generator's ``save`` writes one as ``samples.png``
(:data:`.artifacts.GRID_FILE`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ppds_core import ImageSet
from ppds_core.atomic import atomic_open

__all__ = ["write_class_grid"]


def write_class_grid(samples: ImageSet, path: str | Path, rows: int, scale: int = 1) -> None:
    """Tile ``samples`` into ``rows`` × classes: column k holds the first images of class k.

    Missing cells (a class with fewer than ``rows`` images) stay black. ``scale``
    enlarges each pixel (nearest neighbour) so 8×8 digits are legible.
    """
    c, h, w = samples.shape
    k = samples.num_classes
    pad = 1
    canvas = np.zeros((rows * (h + pad) + pad, k * (w + pad) + pad, c), dtype=np.uint8)
    pixels = samples.to_uint8().transpose(0, 2, 3, 1)  # N×H×W×C
    labels = samples.labels.numpy()
    for col in range(k):
        idx = np.flatnonzero(labels == col)[:rows]
        for row, i in enumerate(idx):
            y, x = pad + row * (h + pad), pad + col * (w + pad)
            canvas[y : y + h, x : x + w] = pixels[i]
    image = Image.fromarray(canvas[..., 0] if c == 1 else canvas)
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    with atomic_open(Path(path)) as fh:  # a planted link at the name cannot redirect it
        image.save(fh, format="PNG")
