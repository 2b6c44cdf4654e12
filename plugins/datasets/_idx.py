"""Reading MNIST-style IDX files (plain or gzipped), with errors that name the file.

The format: a 4-byte magic ``0x00 0x00 <type> <ndim>``, ``ndim`` big-endian uint32
sizes, then the array. MNIST and Fashion-MNIST use type 0x08 (unsigned byte):
images have 3 dimensions (magic 2051), labels 1 (magic 2049).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from ppds_core import DataNotFoundError

__all__ = ["read_idx", "idx_shape", "find_idx", "IMAGE_MAGIC", "LABEL_MAGIC"]

IMAGE_MAGIC = 0x00000803
LABEL_MAGIC = 0x00000801


def find_idx(folders: list[Path], stem: str) -> Path | None:
    """The first ``stem`` or ``stem.gz`` in ``folders``; None if none exists."""
    for folder in folders:
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError) as err:  # truncated or corrupt gzip stream, unreadable file
        raise DataNotFoundError(f"{path}: cannot read ({err}); download the file again") from None


def idx_shape(path: Path) -> tuple[int, ...] | None:
    """The array shape an IDX file's header declares, reading only the header; None if it
    cannot be read (``read_idx`` then names the problem when the set is loaded)."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as fh:
            head = fh.read(4)
            ndim = head[3] if len(head) == 4 else 0
            dims = fh.read(4 * ndim)
    except (OSError, EOFError):
        return None
    if not 1 <= ndim <= 4 or len(dims) != 4 * ndim:
        return None
    return struct.unpack(f">{ndim}I", dims)


def read_idx(path: Path, magic: int) -> np.ndarray:
    """The uint8 array stored in ``path``; DataNotFoundError if it is not that IDX kind."""
    data = _read_bytes(path)
    kind = "images" if magic == IMAGE_MAGIC else "labels"
    if len(data) < 4:
        raise DataNotFoundError(f"{path}: {len(data)} bytes is too short for an IDX {kind} file; "
                                "download it again")
    (found,) = struct.unpack(">I", data[:4])
    if found != magic:
        raise DataNotFoundError(
            f"{path}: magic number {found:#010x}, expected {magic:#010x} for IDX {kind} "
            f"({'train/t10k-images-idx3-ubyte' if magic == IMAGE_MAGIC else 'train/t10k-labels-idx1-ubyte'}); "
            "the file is not an IDX file of that kind or was swapped with another"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataNotFoundError(f"{path}: truncated header ({len(data)} bytes); download it again")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise DataNotFoundError(
            f"{path}: header promises {'×'.join(map(str, shape))} = {expected} bytes of data, "
            f"file holds {len(data) - header}; the file is truncated or corrupt, download it again"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)
