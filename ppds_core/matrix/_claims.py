"""Claims of units by workers: ``DIR/claims/<unit>.claim``, an exclusive create with a lease.

A worker (``ppds worker DIR``) claims a unit by creating its claim file with
``O_CREAT | O_EXCL``, which exactly one process wins, also across machines on a
shared file system that honours it (NFSv3+ does). The file holds the worker's id,
host, pid and start time; while the unit runs a heartbeat thread touches it (its
mtime, through the open descriptor, so a claim renamed away is never refreshed
by mistake). A claim whose mtime is older than the lease (``lease_s``) belongs to
a dead worker (killed, preempted, its node lost) and may be taken over:

1. rename the stale file to a unique name — of several workers that judged it
   stale, exactly one rename succeeds;
2. check that the renamed file is the very inode judged stale (not a claim its
   rightful owner made meanwhile); if not, link it back and give up;
3. create the claim again with ``O_EXCL``.

A claim never decides whether a unit is *done*: that is the run folder's own
record (``fit.json``, rows of ``results.jsonl``), which a worker re-reads after
claiming, so a duplicated claim costs time, never a duplicated row. A unit that
failed leaves ``<unit>.failed`` (its error's first line), so the workers of a
folder do not retry it for ever; ``ppds run`` (sequential) and ``--retry-failed``
clear those markers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text

__all__ = ["Claims", "Claim", "CLAIMS_DIR", "claim_records", "failed_units", "clear_failed"]

log = logging.getLogger("ppds.matrix")

CLAIMS_DIR = "claims"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


@dataclass
class Claim:
    """A unit this worker holds; :meth:`release` gives it up (the heartbeat stops)."""

    unit: str
    path: Path
    fd: int
    claims: Claims

    def release(self) -> None:
        self.claims._stop(self)
        try:
            if os.fstat(self.fd).st_ino == os.stat(self.path).st_ino:
                self.path.unlink()
        except OSError:
            pass  # taken over (we were judged dead) or already gone: not ours to delete
        with contextlib.suppress(OSError):
            os.close(self.fd)


class Claims:
    """The claims folder of one run, seen by one worker."""

    def __init__(self, out: Path, worker: str, lease_s: float = 60.0):
        self.dir = Path(out) / CLAIMS_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        self.worker = worker
        self.lease_s = float(lease_s)
        self._held: Claim | None = None
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def path(self, unit: str) -> Path:
        return self.dir / f"{unit}.claim"

    def try_claim(self, unit: str, label: str = "") -> Claim | None:
        """The unit's claim, or None while another live worker holds it."""
        path = self.path(unit)
        for _ in range(2):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
            except FileExistsError:
                if not self._take_over_stale(path):
                    return None
                continue
            info = {"unit": unit, "label": label, "worker": self.worker, "host": socket.gethostname(),
                    "pid": os.getpid(), "started": _now(), "started_ts": time.time(), "lease_s": self.lease_s}
            os.write(fd, json.dumps(info).encode())
            os.fsync(fd)
            claim = Claim(unit, path, fd, self)
            self._start(claim)
            return claim
        return None

    def _take_over_stale(self, path: Path) -> bool:
        try:
            st = path.stat()
        except FileNotFoundError:
            return True  # released meanwhile: try the create again
        if time.time() - st.st_mtime <= self.lease_s:
            return False
        aside = path.with_name(f"{path.name}.stale-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return False  # another worker won the rename; it takes the unit
        if os.stat(aside).st_ino != st.st_ino:  # a live claim made since we looked: put it back
            with contextlib.suppress(OSError):
                os.link(aside, path)
            aside.unlink(missing_ok=True)
            return False
        log.warning("%s: the claim of a worker that stopped renewing it (lease %gs) is taken over by %s",
                    path.name, self.lease_s, self.worker)
        aside.unlink(missing_ok=True)
        return True

    # -- the heartbeat -------------------------------------------------------------------

    def _start(self, claim: Claim) -> None:
        self._held = claim
        self._wake.clear()
        self._thread = threading.Thread(target=self._beat, args=(claim,), daemon=True,
                                        name=f"ppds-lease-{claim.unit[:20]}")
        self._thread.start()

    def _beat(self, claim: Claim) -> None:
        period = max(min(self.lease_s / 4, 10.0), 0.2)
        while not self._wake.wait(period):
            try:
                os.utime(claim.fd)  # this inode, wherever its name went
            except OSError as err:
                log.warning("could not renew the claim %s: %s", claim.path.name, err)

    def _stop(self, claim: Claim) -> None:
        if self._held is claim:
            self._wake.set()
            if self._thread is not None:
                self._thread.join()
            self._held = self._thread = None

    # -- failures --------------------------------------------------------------------------

    def mark_failed(self, unit: str, error: str) -> None:
        first = (str(error).strip().splitlines() or ["failed"])[0][:300]
        atomic_write_text(self.dir / f"{unit}.failed",
                          json.dumps({"unit": unit, "worker": self.worker, "error": first, "at": _now()}))


def failed_units(out: Path) -> dict[str, str]:
    """unit id → first line of its error, for every unit a worker recorded as failed."""
    found = {}
    for p in (Path(out) / CLAIMS_DIR).glob("*.failed"):
        try:
            found[p.name[: -len(".failed")]] = str(json.loads(p.read_text()).get("error", ""))
        except (OSError, ValueError, AttributeError):
            found[p.name[: -len(".failed")]] = "failed"
    return found


def clear_failed(out: Path, claims_too: bool = False) -> int:
    """Forget the failure markers (the next workers retry those units), and with ``claims_too``
    the claims (only under the folder's exclusive lock: then no worker runs and every claim is a
    dead one's); how many files there were."""
    folder = Path(out) / CLAIMS_DIR
    found = list(folder.glob("*.failed")) + (list(folder.glob("*.claim*")) if claims_too else [])
    for p in found:
        p.unlink(missing_ok=True)
    return len(found)


def claim_records(out: Path, lease_s: float | None = None) -> dict[str, dict[str, Any]]:
    """unit id → its claim (worker, host, pid, started) with ``age_s`` since the last heartbeat
    and ``stale`` (older than ``lease_s``, when given)."""
    records = {}
    for p in (Path(out) / CLAIMS_DIR).glob("*.claim"):
        try:
            info = json.loads(p.read_text() or "{}")
            age = time.time() - p.stat().st_mtime
        except (OSError, ValueError):
            continue  # released while we looked, or not yet written
        if isinstance(info, dict):
            info["age_s"] = round(age, 1)
            lease = lease_s if lease_s is not None else info.get("lease_s")
            info["stale"] = isinstance(lease, int | float) and age > lease
            records[p.name[: -len(".claim")]] = info
    return records
