"""Finding and reading CelebA's aligned images and its attribute / partition lists.

``list_attr_celeba.txt``: a count line, a line of 40 attribute names, then
``000001.jpg -1 1 …`` per image. ``list_eval_partition.txt``: ``000001.jpg 0``
(0 train, 1 validation, 2 test). Both are parsed with pandas (200k lines in
about a second); images are decoded only for the rows a load keeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ppds_core import DataNotFoundError
from ppds_core.errors import did_you_mean

__all__ = ["CelebALayout", "find_layout", "read_attributes", "read_partition", "IMAGES", "ATTRS", "PARTITION"]

IMAGES = "img_align_celeba"
ATTRS = "list_attr_celeba.txt"
PARTITION = "list_eval_partition.txt"


@dataclass
class CelebALayout:
    """Where the pieces are (``partition`` None when the optional file is absent)."""

    images: Path
    attributes: Path
    partition: Path | None


def _image_dir(base: Path) -> Path | None:
    folder = base / IMAGES
    if not folder.is_dir():
        return None
    nested = folder / IMAGES  # the Kaggle archive nests the folder in itself
    return nested if nested.is_dir() else folder


def find_layout(root: Path) -> CelebALayout | None:
    """The files under ``root`` or ``root/celeba`` (torchvision's layout); None if absent."""
    for base in (root, root / "celeba"):
        images, attrs = _image_dir(base), base / ATTRS
        if images is not None and attrs.is_file():
            part = base / PARTITION
            return CelebALayout(images, attrs, part if part.is_file() else None)
    return None


def read_attributes(path: Path, attribute: str) -> tuple[list[str], np.ndarray]:
    """(file names, 0/1 labels of ``attribute``) in file order."""
    try:
        with path.open() as fh:
            count_line = fh.readline().strip()
            names = fh.readline().split()
        expected = int(count_line)
    except (OSError, ValueError) as err:
        raise DataNotFoundError(
            f"{path}: not CelebA's attribute list (first line should be the image count, "
            f"second the 40 attribute names): {err}"
        ) from None
    if attribute not in names:
        raise DataNotFoundError(
            f"{path}: no attribute column {attribute!r}{did_you_mean(attribute, names)} "
            f"(columns: {', '.join(names) or 'none'})"
        )
    try:
        table = pd.read_csv(path, sep=r"\s+", skiprows=2, header=None, usecols=[0, 1 + names.index(attribute)],
                            dtype={0: str}, engine="c")
    except (ValueError, pd.errors.ParserError) as err:
        raise DataNotFoundError(f"{path}: malformed rows ({err}); download the file again") from None
    if len(table) != expected:
        raise DataNotFoundError(
            f"{path}: header says {expected} images but {len(table)} rows follow; the file is truncated"
        )
    values = table.iloc[:, 1].to_numpy()
    if not np.isin(values, (-1, 1)).all():
        raise DataNotFoundError(f"{path}: column {attribute!r} holds values other than -1/1")
    return table.iloc[:, 0].tolist(), (values == 1).astype(np.int64)


def read_partition(path: Path) -> dict[str, int]:
    """File name → 0 (train), 1 (validation) or 2 (test)."""
    try:
        table = pd.read_csv(path, sep=r"\s+", header=None, names=["file", "split"], dtype={"file": str})
        split = table["split"].astype(np.int64)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise DataNotFoundError(f"{path}: not CelebA's partition list ('<file> <0|1|2>' per line): {err}") from None
    if not split.isin((0, 1, 2)).all():
        raise DataNotFoundError(f"{path}: partition values other than 0, 1, 2")
    return dict(zip(table["file"], split.tolist(), strict=True))
