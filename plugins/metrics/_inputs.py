"""Checks on a metric's inputs that skip it with a one-line reason instead of a wrong number."""

from __future__ import annotations

from ppds_core import ImageSet, SkipMeasurement

__all__ = ["check_enough", "check_same_shape"]


def check_enough(synthetic: ImageSet, what: str, minimum: int = 2) -> None:
    """Skip ``what`` when there are fewer than ``minimum`` synthetic images (no statistics of one)."""
    if len(synthetic) < minimum:
        raise SkipMeasurement(
            f"{what} needs at least {minimum} synthetic images, got {len(synthetic)}"
        )


def check_same_shape(synthetic: ImageSet, real: ImageSet, what: str) -> None:
    """Skip ``what`` when the samples and the real images differ in C×H×W (features would not compare)."""
    if synthetic.shape != real.shape:
        raise SkipMeasurement(
            f"{what}: synthetic images are {synthetic.shape} (C×H×W) but the real "
            f"{real.name or 'reference'} images are {real.shape}; they are not comparable"
        )
