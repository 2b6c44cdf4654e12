"""Reading files that may come from elsewhere without running code from them.

What ppds trusts is the code you install and the configs you write. Weights
files, checkpoints and whole run folders are routinely downloaded, shared and
written by other users (a sharded run on a shared file system), so nothing
read from them may execute: a PyTorch ``.pth``/``.ckpt`` is a Python pickle,
and an unrestricted unpickle runs whatever the file says. Every tensor file is
therefore read with ``torch.load(..., weights_only=True)`` (tensors, dicts,
lists, numbers and strings only) through :func:`load_tensors`, which turns a
refusal into one line naming the file; paths that a run-folder file names are
resolved and checked to stay inside their folder with :func:`inside`.

``tests/test_invariants.py`` keeps the rest of the code base honest: no
``torch.load`` without ``weights_only=True``, no ``np.load`` without
``allow_pickle=False``, no ``pickle.load`` outside CIFAR-10's restricted
unpickler.
"""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from .errors import UnsafeFileError

__all__ = ["load_tensors", "inside"]

_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def _culprit(err: Exception) -> str:
    """What the refused pickle asked for (torch names the global it would have imported)."""
    found = _GLOBAL.search(str(err))
    return f"a reference to {found.group(1)}" if found else "pickled Python objects"


def load_tensors(path: str | Path, what: str = "tensor file") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, refusals as one line.

    A pickle holding anything but tensors and plain containers raises
    :class:`~ppds_core.errors.UnsafeFileError` *before* any of it runs; a file
    that is not a PyTorch file at all (truncated, HTML from a failed download)
    raises the same error with what is wrong. ``what`` names the file's role
    in the message ("FID Inception weights", "Lightning checkpoint", …).
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # an old-format pickle warns about its protocol before it is refused anyway
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeFileError(
            f"{path}: refusing to load this {what}: it holds {_culprit(err)}, not only tensors, "
            "and unpickling it could run code; use a file from a source you trust, saved as a "
            "plain state dict"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UnsafeFileError(
            f"{path}: cannot read this {what} as a PyTorch tensor file ({first}); "
            "replace it with a complete copy"
        ) from None


def inside(path: str | Path, root: str | Path, what: str) -> Path:
    """``path`` resolved (symlinks followed, relative to ``root``), refused unless inside ``root``.

    A relative ``path`` is taken relative to ``root``, as the paths stored in a run folder are;
    a path built from ``root`` itself (``out / "cache"``) must be passed ``.absolute()``, or a
    relative ``root`` would be joined twice (``runs/qs/runs/qs/cache``) and the check would
    look at a path that does not exist.

    A file in a run folder that names another path (``fit-spec.json``'s data
    and output folders, a results row's score file) can name any path; this
    keeps every load and write it directs inside the folder it came from.
    """
    root = Path(root).resolve()
    resolved = (root / Path(path)).resolve()
    if not resolved.is_relative_to(root):
        raise UnsafeFileError(
            f"{what} names {path}, which resolves to {resolved}, outside {root}; "
            "a run folder's files may only point inside it (was this folder copied from elsewhere?)"
        )
    return resolved
