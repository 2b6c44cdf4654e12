"""Datasets read from a local folder the user downloaded: MNIST, Fashion-MNIST,
CIFAR-10, CelebA and any ImageNet-style class-folder tree.

Nothing is downloaded at run time. Each set looks in ``config.root`` or, when
none is given, in ``$PPDS_DATA/<name>`` (default ``~/.ppds/data/<name>``), so
``ppds datasets list`` can say exactly which files it expects where and where
to get them. ``availability`` only checks that files exist; ``load`` validates
their content and names the file at fault.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from ppds_core import (
    Availability,
    DataNotFoundError,
    DatasetConfig,
    DatasetProvider,
    ImageSet,
    hookimpl,
)

from . import _celeba, _cifar
from ._common import (
    ImageSize,
    default_root,
    image_size_field,
    memory_problem,
    resize_images,
    to_unit_float,
)
from ._idx import IMAGE_MAGIC, LABEL_MAGIC, find_idx, idx_shape, read_idx
from ._images import crop_then_resize, decode_all, shorter_side_then_crop

__all__ = ["Mnist", "FashionMnist", "Cifar10", "CelebA", "ImageNetFolder", "register_plugins"]


class FolderConfig(DatasetConfig):
    """Where the files are, plus the split sizes."""

    root: str | None = Field(None, description="folder holding the files (default $PPDS_DATA/<name>)")


class _Folder(DatasetProvider):
    """Shared shape: a root folder, a cheap existence check, one message for what is missing."""

    Config: ClassVar[type[FolderConfig]] = FolderConfig
    #: where the user gets the files (named in every "missing" message)
    source: ClassVar[str] = ""

    @property
    def root(self) -> Path:
        root = self.config.root
        return Path(root).expanduser() if root else default_root(self.name)

    def _missing(self, expected: str, also: str = "") -> str:
        return (f"expected {expected} under {self.root}{also}; download from {self.source} "
                f"and pass config: {{root: {self.root}}}")

    def _problem(self) -> str | None:
        """Why ``load`` cannot even start (files absent), or None."""
        raise NotImplementedError

    def _pool(self) -> tuple[int, int, int] | None:
        """(images, channels, side after resizing) a load would hold, from headers or file
        counts only; None where that cannot be told cheaply (``load`` checks the content)."""
        return None

    def availability(self) -> Availability:
        problem = self._problem()
        if problem is None and (pool := self._pool()) is not None:
            problem = memory_problem(self.name, *pool)
        return Availability(False, problem) if problem else Availability(True, str(self.root))

    def _require(self) -> None:
        problem = self._problem()
        if problem:
            raise DataNotFoundError(f"{self.name}: {problem}")

    def _imageset(self, images: torch.Tensor, labels: np.ndarray, classes: list[str], part: str) -> ImageSet:
        name = self.name if part == "train" else f"{self.name}-{part}"
        return ImageSet(images, torch.from_numpy(np.asarray(labels, dtype=np.int64)), classes, name,
                        {"source": self.name, "root": str(self.root), "part": part})


# --------------------------------------------------------------------------- MNIST-style IDX


class IdxConfig(FolderConfig):
    """MNIST-style sets ship an official test set: by default all of it is ``test`` and the
    60k training images are split 80/20 into private and holdout."""

    private: float | int = Field(0.8, description="fraction (≤1.0) or count of the training images")
    holdout: float | int = Field(0.2, description="fraction (≤1.0) or count of the training images")
    test: float | int = Field(1.0, description="fraction (≤1.0) or count of the official test set")
    image_size: ImageSize | None = image_size_field(None, "resize from 28 px to this side (None keeps 28)")


class _Idx(_Folder):
    Config: ClassVar[type[IdxConfig]] = IdxConfig
    #: the torchvision folder name (``<root>/<this>/raw``)
    torchvision_dir: ClassVar[str] = ""
    class_names: ClassVar[list[str]] = []
    STEMS: ClassVar[dict[str, str]] = {
        "train_images": "train-images-idx3-ubyte",
        "train_labels": "train-labels-idx1-ubyte",
        "test_images": "t10k-images-idx3-ubyte",
        "test_labels": "t10k-labels-idx1-ubyte",
    }

    def _folders(self) -> list[Path]:
        return [self.root, self.root / "raw", self.root / self.torchvision_dir / "raw"]

    def _files(self) -> dict[str, Path | None]:
        folders = self._folders()
        return {key: find_idx(folders, stem) for key, stem in self.STEMS.items()}

    def _problem(self) -> str | None:
        missing = [self.STEMS[k] for k, p in self._files().items() if p is None]
        if not missing:
            return None
        some = f"; missing {', '.join(missing)}" if len(missing) < len(self.STEMS) else ""
        return self._missing(
            ", ".join(f"{s}[.gz]" for s in self.STEMS.values()),
            f" (or {self.root / self.torchvision_dir / 'raw'}){some}",
        )

    def _pool(self) -> tuple[int, int, int] | None:
        shapes = []
        for key in ("train_images", "test_images"):
            path = self._files()[key]
            shape = idx_shape(path) if path is not None else None
            if shape is None or len(shape) != 3:
                return None
            shapes.append(shape)
        return shapes[0][0] + shapes[1][0], 1, self.config.image_size or max(shapes[0][1:])

    def _read(self, images_path: Path, labels_path: Path, part: str) -> ImageSet:
        images = read_idx(images_path, IMAGE_MAGIC)
        labels = read_idx(labels_path, LABEL_MAGIC).astype(np.int64)
        if images.shape[0] != labels.shape[0]:
            raise DataNotFoundError(
                f"{images_path} holds {images.shape[0]} images but {labels_path} holds "
                f"{labels.shape[0]} labels; the pair does not belong together"
            )
        if labels.size and labels.max() >= len(self.class_names):
            raise DataNotFoundError(f"{labels_path}: label {labels.max()} is outside 0..{len(self.class_names) - 1}")
        pixels = resize_images(to_unit_float(images[:, None], 255.0), self.config.image_size)
        return self._imageset(pixels, labels, self.class_names, part)

    def load(self) -> tuple[ImageSet, ImageSet | None]:
        self._require()
        f = self._files()
        return (self._read(f["train_images"], f["train_labels"], "train"),  # type: ignore[arg-type]
                self._read(f["test_images"], f["test_labels"], "test"))  # type: ignore[arg-type]


class Mnist(_Idx):
    """MNIST from its IDX files (60k train, official 10k test), 28×28 grey, 10 classes."""

    name: ClassVar[str] = "mnist"
    source: ClassVar[str] = "https://yann.lecun.com/exdb/mnist/ (or torchvision.datasets.MNIST(root, download=True))"
    torchvision_dir: ClassVar[str] = "MNIST"
    class_names: ClassVar[list[str]] = [str(d) for d in range(10)]


class FashionMnist(_Idx):
    """Fashion-MNIST from its IDX files (60k train, official 10k test), 28×28 grey, 10 classes."""

    name: ClassVar[str] = "fashion-mnist"
    source: ClassVar[str] = ("https://github.com/zalandoresearch/fashion-mnist "
                             "(or torchvision.datasets.FashionMNIST(root, download=True))")
    torchvision_dir: ClassVar[str] = "FashionMNIST"
    class_names: ClassVar[list[str]] = [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ]


# --------------------------------------------------------------------------- CIFAR-10


class Cifar10Config(IdxConfig):
    """Official 10k test set kept as ``test``; 50k training images split 80/20."""

    image_size: ImageSize | None = image_size_field(None, "resize from 32 px to this side (None keeps 32)")


class Cifar10(_Folder):
    """CIFAR-10's python batches: 50k train, official 10k test, 3×32×32, 10 classes."""

    name: ClassVar[str] = "cifar10"
    source: ClassVar[str] = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (extract it)"
    Config: ClassVar[type[Cifar10Config]] = Cifar10Config
    FOLDER: ClassVar[str] = "cifar-10-batches-py"
    FILES: ClassVar[tuple[str, ...]] = (*_cifar.TRAIN_BATCHES, _cifar.TEST_BATCH, _cifar.META)

    def _batches_dir(self) -> Path | None:
        for folder in (self.root, self.root / self.FOLDER):
            if all((folder / f).is_file() for f in self.FILES):
                return folder
        return None

    def _problem(self) -> str | None:
        if self._batches_dir() is not None:
            return None
        missing = [f for f in self.FILES if not (self.root / f).is_file() and not (self.root / self.FOLDER / f).is_file()]
        some = f"; missing {', '.join(missing)}" if len(missing) < len(self.FILES) else ""
        return self._missing(", ".join(self.FILES), f" (or {self.root / self.FOLDER}){some}")

    def _pool(self) -> tuple[int, int, int] | None:
        return 60_000, 3, self.config.image_size or 32  # the format: 5 × 10k train, 10k test

    def load(self) -> tuple[ImageSet, ImageSet | None]:
        self._require()
        folder = self._batches_dir()
        assert folder is not None
        classes = _cifar.read_meta(folder / _cifar.META)
        parts = [_cifar.read_batch(folder / b) for b in _cifar.TRAIN_BATCHES]
        train_x = np.concatenate([p[0] for p in parts])
        train_y = np.concatenate([p[1] for p in parts])
        test_x, test_y = _cifar.read_batch(folder / _cifar.TEST_BATCH)
        size = self.config.image_size
        return (self._imageset(resize_images(to_unit_float(train_x, 255.0), size), train_y, classes, "train"),
                self._imageset(resize_images(to_unit_float(test_x, 255.0), size), test_y, classes, "test"))


# --------------------------------------------------------------------------- CelebA


class CelebAConfig(FolderConfig):
    """A binary attribute as the label; DPImageBench's crop-then-resize preprocessing."""

    attribute: str = Field("Male", description="attribute of list_attr_celeba.txt used as the 0/1 label")
    image_size: ImageSize = Field(32, description="side after cropping (DPImageBench uses 32 and 64)")
    crop: int = Field(140, ge=8, description="centre crop side before resizing (DPImageBench: 140)")
    limit: int | None = Field(None, ge=1, description="load only the first N images of the pool "
                              "(and of the official test split): CelebA has 202,599")


class CelebA(_Folder):
    """CelebA aligned faces, 3×S×S, labelled by one binary attribute (default Male).

    With ``list_eval_partition.txt`` the official test partition (2) is the test set and
    the training partition (0) the pool; without it, everything is one pool.
    """

    name: ClassVar[str] = "celeba"
    source: ClassVar[str] = ("https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html "
                             "(img_align_celeba.zip + list_attr_celeba.txt)")
    Config: ClassVar[type[CelebAConfig]] = CelebAConfig

    def _problem(self) -> str | None:
        expected = f"{_celeba.IMAGES}/*.jpg and {_celeba.ATTRS} (optional {_celeba.PARTITION})"
        layout = _celeba.find_layout(self.root)
        if layout is None:
            return self._missing(expected, f" (or {self.root / 'celeba'})")
        with os.scandir(layout.images) as entries:
            if not any(e.name.lower().endswith((".jpg", ".png")) for e in entries):
                return self._missing(expected, f"; {layout.images} holds no .jpg images")
        return None

    def _pool(self) -> tuple[int, int, int] | None:
        layout = _celeba.find_layout(self.root)
        if layout is None:
            return None
        try:
            with layout.attributes.open() as fh:
                count = int(fh.readline())  # the image count heads the attribute list
        except (OSError, ValueError):
            return None
        if self.config.limit is not None:  # the limit applies to the pool and the test split each
            count = min(count, self.config.limit * (1 if layout.partition is None else 2))
        return count, 3, self.config.image_size

    def load(self) -> tuple[ImageSet, ImageSet | None]:
        self._require()
        cfg = self.config
        layout = _celeba.find_layout(self.root)
        assert layout is not None
        files, labels = _celeba.read_attributes(layout.attributes, cfg.attribute)
        classes = [f"not {cfg.attribute}", cfg.attribute]
        if layout.partition is None:
            return self._decode(layout, files, labels, classes, "train"), None
        partition = _celeba.read_partition(layout.partition)
        unknown = [f for f in files if f not in partition]
        if unknown:
            raise DataNotFoundError(f"{layout.partition}: no partition for {len(unknown)} images "
                                    f"(e.g. {unknown[0]}); the two lists do not match")
        split = np.array([partition[f] for f in files])
        pool, test = np.flatnonzero(split == 0), np.flatnonzero(split == 2)
        files_arr = np.array(files, dtype=object)
        return (self._decode(layout, files_arr[pool].tolist(), labels[pool], classes, "train"),
                self._decode(layout, files_arr[test].tolist(), labels[test], classes, "test"))

    def _decode(self, layout: _celeba.CelebALayout, files: list[str], labels: np.ndarray,
                classes: list[str], part: str) -> ImageSet:
        cfg = self.config
        if cfg.limit is not None:
            files, labels = files[: cfg.limit], labels[: cfg.limit]
        pixels = decode_all([layout.images / f for f in files], "RGB", crop_then_resize(cfg.crop, cfg.image_size))
        return self._imageset(to_unit_float(pixels, 255.0), labels, classes, part)


# --------------------------------------------------------------------------- class-folder tree

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


class ImageFolderConfig(FolderConfig):
    """A public image tree: one sub-folder per class."""

    image_size: ImageSize = Field(32, description="side after resizing the shorter side and centre-cropping")
    limit_per_class: int | None = Field(None, ge=1, description="first N images (sorted by name) per class")
    channels: Literal[1, 3] = Field(3, description="3 = RGB; 1 = grey (public data for grey private sets)")


class ImageNetFolder(_Folder):
    """Any ImageNet-style tree ``root/<class>/*.{JPEG,jpg,png}``, meant as public data.

    Class names are the folder names (sorted); there is no official test set.
    """

    name: ClassVar[str] = "imagenet-folder"
    source: ClassVar[str] = ("https://image-net.org/download-images (ILSVRC2012 train, "
                             "one folder per class) or any class-folder tree")
    Config: ClassVar[type[ImageFolderConfig]] = ImageFolderConfig

    def _class_dirs(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def _problem(self) -> str | None:
        expected = "one sub-folder per class holding .JPEG/.jpg/.png images"
        dirs = self._class_dirs()
        if not dirs:
            return self._missing(expected)
        with os.scandir(dirs[0]) as entries:
            if not any(e.name.lower().endswith(IMAGE_SUFFIXES) for e in entries):
                return self._missing(expected, f"; {dirs[0]} holds no images")
        return None

    def _pool(self) -> tuple[int, int, int] | None:
        cfg = self.config
        count = 0
        for folder in self._class_dirs():  # names only (one scandir per class), no image opened
            with os.scandir(folder) as entries:
                found = sum(1 for e in entries if e.name.lower().endswith(IMAGE_SUFFIXES))
            count += min(found, cfg.limit_per_class or found)
        return count, cfg.channels, cfg.image_size

    def load(self) -> tuple[ImageSet, ImageSet | None]:
        self._require()
        cfg = self.config
        paths: list[Path] = []
        labels: list[int] = []
        dirs = self._class_dirs()
        for label, folder in enumerate(dirs):
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not files:
                raise DataNotFoundError(f"imagenet-folder: class folder {folder} holds no .JPEG/.jpg/.png "
                                        "images; add some or remove the folder")
            files = files[: cfg.limit_per_class] if cfg.limit_per_class else files
            paths.extend(files)
            labels.extend([label] * len(files))
        mode = "RGB" if cfg.channels == 3 else "L"
        pixels = decode_all(paths, mode, shorter_side_then_crop(cfg.image_size))
        return self._imageset(to_unit_float(pixels, 255.0), np.array(labels), [d.name for d in dirs], "train"), None


@hookimpl
def register_plugins(register):
    register(Mnist)
    register(FashionMnist)
    register(Cifar10)
    register(CelebA)
    register(ImageNetFolder)
