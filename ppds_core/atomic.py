"""Writing files so that a name planted in a run folder cannot redirect the write.

Run folders are shared (``--shard i/n`` on a cluster file system) and may come
from elsewhere, so anything at a name ppds writes may already be a symlink to
a file outside. ``open(name, "w")`` follows it and overwrites the target, and
the usual "write ``name.tmp``, then rename" does too when ``name.tmp`` is the
planted link. Here:

- :func:`atomic_open` (and :func:`atomic_write_text`, :func:`atomic_write_bytes`)
  create the temporary file with :func:`tempfile.mkstemp` in the target's own
  folder: a random name opened with ``O_CREAT | O_EXCL``, which never opens an
  existing file or link. It is fsynced and then :func:`os.replace`\\ d onto the
  target; a rename replaces a symlink at the target *itself* instead of writing
  through it, and a reader sees the old file or the new one, never half.
- :func:`open_no_follow` is for files that are streamed or appended to
  (``results.jsonl``, logs): ``O_NOFOLLOW`` refuses a symlink at the name with
  one clear error instead of appending to whatever it points at.

``tests/test_invariants.py`` checks that no predictable ``*.tmp`` name is
written anywhere else in ``ppds_core/`` and ``plugins/``.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .errors import UnsafeFileError

__all__ = [
    "atomic_open",
    "atomic_write_text",
    "atomic_write_bytes",
    "open_no_follow",
    "NoFollowFileHandler",
]


def _file_mode() -> int:
    """0o666 less the umask: what ``open()`` would have given (mkstemp makes 0o600)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


_MODE = _file_mode()
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (best effort: not every OS lets a folder be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", encoding: str | None = None) -> Iterator[IO]:
    """A file object whose contents replace ``path`` when the block ends without error.

    On an error the temporary file is removed and ``path`` is untouched.
    ``mode`` is ``"wb"`` or ``"w"`` (text, ``encoding`` default UTF-8).
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', not {mode!r}")
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        os.fchmod(fd, _MODE)
        text = mode == "w"
        with os.fdopen(fd, mode, encoding=(encoding or "utf-8") if text else None) as fh:
            fd = -1  # owned by fh now
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` (see :func:`atomic_open`)."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """Replace ``path`` with ``text`` (see :func:`atomic_open`)."""
    with atomic_open(path, "w", encoding=encoding) as fh:
        fh.write(text)


def open_no_follow(path: str | Path, flags: int, mode: int = 0o644) -> int:
    """``os.open(path, flags | O_NOFOLLOW)``; a symlink at ``path`` is one clear error."""
    try:
        return os.open(os.fspath(path), flags | _O_NOFOLLOW, mode)
    except OSError as err:
        if err.errno == errno.ELOOP or (err.errno == errno.EMLINK and _O_NOFOLLOW):
            raise UnsafeFileError(
                f"{path} is a symbolic link; ppds does not write through links in a run folder "
                "(one planted there could redirect the write outside it): remove the link"
            ) from None
        raise


class NoFollowFileHandler(logging.FileHandler):
    """A :class:`logging.FileHandler` that refuses a symlink at its file name."""

    def _open(self):  # noqa: D401 - logging's hook
        flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in self.mode else os.O_TRUNC)
        fd = open_no_follow(self.baseFilename, flags)
        return os.fdopen(fd, self.mode, encoding=self.encoding, errors=self.errors)
