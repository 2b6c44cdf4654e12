"""One writer per run folder: ``DIR/.ppds-run.lock``, an exclusive ``flock`` held for the run.

Two ``ppds run`` of the same cells into one folder would both compute them and
both append rows, so a second run is refused (exit 2) with one line naming the
holder (pid, host, start time, written inside the lock file). Shards cooperate:
``--shard I/N`` runs take the folder lock *shared* (so they exclude an unsharded
run, not each other) and ``.ppds-run-shard-I-of-N.lock`` exclusive (the same
shard twice is refused); so do workers (``ppds worker``), with
``.ppds-run-worker-<id>.lock``. Shards of different ``N`` on one folder overlap and are
not told apart: use one ``N`` per folder.

A lock of a killed run never blocks: the kernel releases a ``flock`` when its
holder's last descriptor closes, so no pid file is ever judged stale by
guesswork. A forked child (a unit) closes its copies at once: the lock goes
the moment the runner dies, not when its last unit has been killed too. On a file system
without ``flock`` (some NFS setups) the lock is skipped with a warning.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

from ..atomic import open_no_follow
from ..errors import ConfigError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock
    fcntl = None  # type: ignore[assignment]

__all__ = ["RunLock", "LOCK_FILE", "holders"]

log = logging.getLogger("ppds.matrix")

LOCK_FILE = ".ppds-run.lock"
#: descriptors of the locks this process holds (closed in every forked child)
_HELD: set[int] = set()


def _close_in_child() -> None:
    for fd in _HELD:  # close, not LOCK_UN: the parent's lock stays
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_child)


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8", errors="replace") or "{}")
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict) or "pid" not in info:
        return "another ppds run"
    shard = f" (shard {info['shard']})" if info.get("shard") else ""
    if info.get("worker"):
        shard = f" (worker {info['worker']})"
    return (f"ppds run{shard}, pid {info.get('pid')} on {info.get('host', '?')}, "
            f"started {info.get('started', '?')}")


class RunLock:
    """Hold the folder's run lock (and a shard's) from :meth:`acquire` to :meth:`release`."""

    def __init__(self, out: Path, shard: tuple[int, int] | None = None, worker: str | None = None):
        self.out = Path(out)
        self.shard = shard
        #: ``ppds worker``: the folder lock shared (workers cooperate through claims) and
        #: ``.ppds-run-worker-<id>.lock`` exclusive, naming this worker to ``ppds status``
        self.worker = worker
        self.fds: list[int] = []
        self.own: Path | None = None

    def _take(self, path: Path, exclusive: bool) -> bool:
        fd = open_no_follow(path, os.O_RDWR | os.O_CREAT)  # a planted link is refused
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise
        self.fds.append(fd)
        _HELD.add(fd)
        if exclusive:
            info = {"pid": os.getpid(), "host": socket.gethostname(),
                    "started": time.strftime("%Y-%m-%d %H:%M:%S %z"), "command": " ".join(sys.argv),
                    "shard": f"{self.shard[0]}/{self.shard[1]}" if self.shard else None,
                    "worker": self.worker}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        return True

    def _refuse(self, path: Path) -> None:
        self.release()
        holders = [path] if path.name != LOCK_FILE else sorted(self.out.glob(".ppds-run-*.lock"))
        who = [_holder(p) for p in holders if self._held(p)] or [_holder(path)]
        raise ConfigError(f"{self.out}: another run is writing this folder ({'; '.join(who)}); wait "
                          "for it to finish (a re-run then resumes), or pass another --out")

    def _held(self, path: Path) -> bool:
        try:
            fd = open_no_follow(path, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except OSError:
            return True
        finally:
            os.close(fd)

    def acquire(self) -> RunLock:
        if fcntl is None:
            return self
        main = self.out / LOCK_FILE
        try:
            if not self._take(main, exclusive=self.shard is None and self.worker is None):
                self._refuse(main)
            if self.shard is not None or self.worker is not None:
                mine = self.out / (f".ppds-run-shard-{self.shard[0]}-of-{self.shard[1]}.lock" if self.shard
                                   else f".ppds-run-worker-{self.worker}.lock")
                if not self._take(mine, exclusive=True):
                    self._refuse(mine)
                self.own = mine if self.worker is not None else None
        except OSError as err:
            if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                log.warning("%s: the file system offers no flock (%s); running without the run lock",
                            self.out, err.strerror)
                self.release()
                return self
            raise
        return self

    def release(self) -> None:
        if self.own is not None and self.fds:  # a worker's own lock file goes with it
            self.own.unlink(missing_ok=True)
            self.own = None
        for fd in self.fds:
            _HELD.discard(fd)
            try:
                os.close(fd)  # closing the last descriptor releases the flock
            except OSError:
                pass
        self.fds = []

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def holders(out: Path) -> list[str]:
    """Who is writing ``out`` now (the run lock's or each shard lock's holder), or []."""
    if fcntl is None:
        return []
    probe = RunLock(out)
    shards = [p for p in sorted(Path(out).glob(".ppds-run-*.lock")) if probe._held(p)]
    if shards:
        return [_holder(p) for p in shards]
    main = Path(out) / LOCK_FILE
    return [_holder(main)] if probe._held(main) else []

