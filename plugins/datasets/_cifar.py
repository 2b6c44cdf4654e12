"""Reading the CIFAR-10 "python version" pickle batches, safely.

The official files are Python pickles. Unpickling runs code, so a restricted
unpickler accepts only what those files contain (numpy arrays, dtypes, plain
containers); anything else in a file under ``root`` is refused, not executed.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from ppds_core import DataNotFoundError

__all__ = ["read_batch", "read_meta", "TRAIN_BATCHES", "TEST_BATCH", "META"]

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("builtins", "bytearray"),
    ("_codecs", "encode"),
    ("codecs", "encode"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    try:
        with path.open("rb") as fh:
            obj = _NumpyOnlyUnpickler(fh, encoding="bytes").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as err:
        raise DataNotFoundError(
            f"{path}: not a readable CIFAR-10 python batch ({type(err).__name__}: {err}); "
            "download cifar-10-python.tar.gz again and extract it"
        ) from None
    if not isinstance(obj, dict):
        raise DataNotFoundError(f"{path}: holds a {type(obj).__name__}, expected a CIFAR batch dict")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(N×3×32×32 uint8 images, N int64 labels) from one batch file."""
    batch = _unpickle(path)
    missing = [k for k in ("data", "labels") if k not in batch]
    if missing:
        raise DataNotFoundError(f"{path}: no {' or '.join(missing)} entry; expected a CIFAR-10 batch "
                                f"(found keys {sorted(map(str, batch))})")
    data = _integers(path, batch["data"], "pixel values", 255)
    labels = _integers(path, batch["labels"], "labels", 9).reshape(-1)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != labels.shape[0]:
        raise DataNotFoundError(
            f"{path}: data {data.shape} and {labels.shape[0]} labels; expected N×3072 with N labels"
        )
    return data.astype(np.uint8, copy=False).reshape(-1, 3, 32, 32), labels.astype(np.int64, copy=False)


def _integers(path: Path, raw: object, what: str, top: int) -> np.ndarray:
    """``raw`` as an integer array within 0..top, or one error naming the file.

    Checked before any cast: numpy wraps 300 to 44 when casting an int64 array to
    uint8 (and raises OverflowError for a list), and parses the string "3" as 3,
    so a batch written by another tool would otherwise load as silently wrong data.
    """
    try:
        arr = np.asarray(raw)
    except (ValueError, TypeError) as err:  # ragged nested lists
        raise DataNotFoundError(f"{path}: its {what} are not one array ({err}); "
                                "this is not a CIFAR-10 batch, extract cifar-10-python.tar.gz again") from None
    if arr.dtype.kind not in "ui":
        example = arr.reshape(-1)[0].item() if arr.size else None
        kind = {"U": "strings", "S": "byte strings", "O": "Python objects", "f": "floats",
                "b": "booleans"}.get(arr.dtype.kind, str(arr.dtype))
        raise DataNotFoundError(f"{path}: its {what} are {kind} (e.g. {example!r}), expected integers "
                                f"0..{top}; class names belong in batches.meta, not in a batch")
    if arr.size and (arr.min() < 0 or arr.max() > top):
        raise DataNotFoundError(f"{path}: {what} range {arr.min()}..{arr.max()}, outside 0..{top}; "
                                "this is not a CIFAR-10 batch, extract cifar-10-python.tar.gz again")
    return arr


def read_meta(path: Path) -> list[str]:
    """The 10 class names from ``batches.meta``."""
    meta = _unpickle(path)
    names = meta.get("label_names")
    if names is None or len(names) != 10:
        raise DataNotFoundError(f"{path}: no 10 'label_names'; expected CIFAR-10's batches.meta")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]
