"""What every dataset plugin here shares: default data folder, resizing, image-size option.

Kept in one place so that an 8×8 digit resized to 32 px and a CIFAR image
resized to 32 px go through exactly the same interpolation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

__all__ = ["DATA_ENV", "default_root", "resize_images", "image_size_field", "ImageSize", "to_unit_float",
           "available_memory", "memory_problem"]

#: environment variable naming the folder that holds one sub-folder per dataset
DATA_ENV = "PPDS_DATA"


def default_root(name: str) -> Path:
    """``$PPDS_DATA/<name>`` (default ``~/.ppds/data/<name>``): where a set is looked for
    when its config names no ``root``, so ``ppds datasets list`` can show the expected path."""
    base = os.environ.get(DATA_ENV) or "~/.ppds/data"
    return Path(base).expanduser() / name


#: a square side in pixels; validated by pydantic so a bad value is a ConfigError naming the key
ImageSize = Annotated[int, Field(ge=4, le=1024)]


def image_size_field(default: int | None = None, what: str = "") -> Any:
    """The shared ``image_size`` option: square side in pixels, or None for native size."""
    return Field(
        default,
        description=what or "resize to this square side in pixels (None keeps the native size)",
    )


def available_memory() -> int | None:
    """Bytes of memory a load can use now: psutil's estimate if installed, else the kernel's
    ``MemAvailable`` (free plus reclaimable cache), else free pages from ``os.sysconf``."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def memory_problem(name: str, images: int, channels: int, side: int) -> str | None:
    """Why ``images`` pictures of ``channels``×``side``×``side`` float32 cannot be loaded here, or None.

    The one up-front memory check of every dataset here, run by ``availability`` so that
    ``ppds run`` (``--check`` too) and ``ppds fit`` refuse before loading anything: an
    ``image_size`` far above the data's (1024 px on 8×8 digits) otherwise fills the memory
    minutes into a run. The estimate is the splits' pixels, N × C × S × S × 4 bytes; the
    limit is half the memory available, because loading holds the resized pool and the
    split copies cut from it at the same time.
    """
    need = images * channels * side * side * 4
    free = available_memory()
    if free is None or need <= free // 2:
        return None
    fits = int((free // 2 / max(1, images * channels * 4)) ** 0.5)
    fix = f"use image_size {fits} or less" if fits >= 4 else "use a smaller image_size or fewer images"
    return (f"{name}: image_size {side} makes its {images:,} images {_gib(need)} of float32 pixels "
            f"({images:,} × {channels}×{side}×{side} × 4 bytes), more than half of the {_gib(free)} of "
            f"memory available here; {fix}")


def resize_images(images: torch.Tensor, size: int | None, chunk: int = 4096) -> torch.Tensor:
    """N×C×H×W float in [0, 1] → N×C×size×size (bilinear, antialiased when shrinking).

    Chunked so a 60k-image set never needs a second full-size float copy at once.
    """
    if size is None or tuple(images.shape[-2:]) == (size, size):
        return images
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.float32)
    shrink = images.shape[-1] > size or images.shape[-2] > size
    for start in range(0, images.shape[0], chunk):
        part = images[start : start + chunk].float()
        out[start : start + chunk] = F.interpolate(
            part, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink
        )
    return out.clamp_(0.0, 1.0)


def to_unit_float(array: np.ndarray, max_value: float) -> torch.Tensor:
    """Integer pixel counts (0..max_value) → float32 tensor in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32) / np.float32(max_value))
