"""A seeded random subset of an image set, the same rule for every metric and attack.

Metrics cap their inputs (``max_samples``, ``max_train`` …) and attacks draw
their targets' releases the same way: the first ``limit`` of a seeded
``randperm``. A set no larger than the cap is returned as is (no shuffle), so
small sets never depend on the seed.
"""

from __future__ import annotations

import torch

from ppds_core import ImageSet

__all__ = ["subsample"]


def subsample(images: ImageSet, limit: int | None, seed: int) -> ImageSet:
    """``images`` itself when ``limit`` is None or not below its size, else a seeded ``limit`` of it."""
    if limit is None or len(images) <= limit:
        return images
    index = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:limit]
    return images.subset(index)
