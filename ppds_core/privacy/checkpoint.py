"""Requeue-safe fits: checkpoints of a fit's training state, and stopping on a scheduler's signal.

A fit given ``FitContext.checkpoint_dir`` (the matrix runner passes
``<cell>/checkpoint``, ``ppds fit --out DIR`` passes ``DIR/checkpoint``) writes
its whole training state there every ``FitContext.checkpoint_every`` steps and,
when a later fit of the *same plan* finds it, continues from it, so a fit that
was killed, preempted or timed out loses at most that many steps and its
ledger equals an uninterrupted fit's.

What is here (no Lightning; the DP-SGD engine's periodic Lightning checkpoint
lives in ``_checkpoint.py`` and uses the same pieces):

- :func:`plan_key` — the identity of a plan: a hash of everything that must
  agree for a checkpoint to be resumed (config, data fingerprint, budget,
  seed, σ/q/T, …). A checkpoint under another key is ignored (one log line)
  and overwritten by the fit that starts fresh.
- :func:`data_fingerprint` — a hash of the private tensors (the key says
  *which* data, never the data itself).
- :class:`StageCheckpoints` — named state files in the folder for what is not
  a DP-SGD run: a one-shot DP release (DP-MERF's noisy embedding, PrivImage's
  noisy semantic query) is saved right after it is drawn and reused on resume,
  so it is never redrawn (that would be a second spend); a plain training loop
  (DP-MERF's generator) saves its step there. Every file is written atomically
  (``ppds_core.atomic``) and read with the safe loader (``ppds_core.safe_load``:
  tensors and plain containers only; a file holding pickled code is refused in
  one line, never run).
- :func:`preemption` — inside a fit, SIGTERM and SIGUSR1 (a scheduler's
  "you are about to be stopped") set a flag; the fit writes a checkpoint at the
  end of its current step and raises :class:`FitInterrupted`. The previous
  handlers come back when the fit ends.

What a checkpoint never holds: the state of a privacy mechanism's generator
(DP-SGD noise, Poisson sampling) drawn from OS entropy — a reader of the file
could predict the rest of the noise; a resumed fit draws fresh entropy. With
``reproducible_noise`` those states derive from the public seed anyway and are
saved, so a resumed fit is bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import atomic_open
from ..errors import PpdsError
from ..safe_load import load_tensors

__all__ = ["FitInterrupted", "Preemption", "StageCheckpoints", "data_fingerprint", "plan_key",
           "preemption", "remove_checkpoints", "remove_partial_writes", "PREEMPTION_SIGNALS"]

log = logging.getLogger("ppds.privacy")

#: the signals a scheduler sends before it stops a job (Slurm: SIGTERM, or SIGUSR1 with
#: ``--signal``): a fit writes a checkpoint at the end of its current step and stops
PREEMPTION_SIGNALS: tuple[int, ...] = tuple(
    s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGUSR1", None)) if s is not None)


class FitInterrupted(PpdsError):
    """A fit stopped by a preemption signal after writing its checkpoint: not finished.

    Running the same fit again (same plan, same ``checkpoint_dir``) resumes it. The
    CLI prints it as one line and exits 128 + the signal's number (143 for SIGTERM),
    as a process ended by that signal would.
    """

    def __init__(self, message: str, signum: int | None = None, steps_done: int | None = None):
        super().__init__(message)
        self.signum, self.steps_done = signum, steps_done
        self.exit_code = 128 + int(signum) if signum is not None else 1


def _canonical(value: Any) -> Any:
    if hasattr(value, "model_dump"):  # pydantic configs and spends
        return _canonical(value.model_dump(mode="json"))
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, float):
        return repr(value)  # ∞ and NaN too, and no rounding
    if value is None or isinstance(value, bool | int | str):
        return value
    return repr(value)


def plan_key(*parts: Any) -> str:
    """A short hash of ``parts`` (configs, numbers, strings, nested containers): the plan's identity."""
    text = json.dumps(_canonical(list(parts)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def data_fingerprint(*tensors: Any) -> str:
    """A hash of tensors' shapes, dtypes and bytes (the private images and labels)."""
    import torch

    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{tuple(t.shape)}:{t.dtype};".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:32]


def save_tensors_atomic(path: Path, state: Any) -> None:
    """``torch.save(state)`` to ``path`` atomically (temp name in the folder, fsync, rename)."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as fh:
        torch.save(state, fh)


class StageCheckpoints:
    """Named state files of one fit's plan in ``folder`` (None: no checkpoints, all no-ops).

    ``load(name)`` returns the saved state when the file exists and was written under
    the same plan key, else None (a file of another plan is logged and left to be
    overwritten); an unsafe or unreadable file raises ``UnsafeFileError`` in one line.
    """

    def __init__(self, folder: Path | str | None, key: str, every: int = 200) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.key = key
        self.every = max(1, int(every))
        #: the step a resumed loop continued from (set by the loop; None: started fresh)
        self.resumed_from: int | None = None
        #: the names of the states read back from the folder by this fit
        self.reused: set[str] = set()
        remove_partial_writes(self.folder)

    @property
    def enabled(self) -> bool:
        return self.folder is not None

    def path(self, name: str) -> Path:
        if self.folder is None:
            raise RuntimeError("no checkpoint folder")
        return self.folder / f"{name}.pt"

    def load(self, name: str) -> dict[str, Any] | None:
        if self.folder is None:
            return None
        path = self.path(name)
        if not path.is_file():
            return None
        state = load_tensors(path, "fit checkpoint")
        if not isinstance(state, dict) or state.get("plan_key") != self.key:
            log.warning("%s: a checkpoint of a different plan (other config, data, budget or seed); "
                        "not resumed, starting fresh", path)
            return None
        self.reused.add(name)
        return state

    def save(self, name: str, state: dict[str, Any]) -> None:
        if self.folder is None:
            return
        save_tensors_atomic(self.path(name), {**state, "plan_key": self.key})

    def due(self, step: int) -> bool:
        """Whether a loop that just finished ``step`` steps writes a checkpoint now."""
        return self.folder is not None and step > 0 and step % self.every == 0


def remove_partial_writes(folder: Path | str | None) -> None:
    """Delete temp files of writes a kill interrupted (``.<name>.*.partial``, never renamed).

    Such a file may hold a complete state of steps a resumed fit is about to redo with
    fresh noise; left readable, it would show a second branch of those steps.
    """
    if folder is None or not Path(folder).is_dir():
        return
    for stale in Path(folder).glob(".*.partial"):
        stale.unlink(missing_ok=True)


def remove_checkpoints(folder: Path | str | None) -> None:
    """Delete a finished fit's checkpoint folder (its model is saved; a second copy is waste)."""
    if folder is None:
        return
    folder = Path(folder)
    if folder.is_symlink():
        folder.unlink()
    elif folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Preemption:
    """Whether a preemption signal arrived during the fit (``signum``), and what to say."""

    signum: int | None = None
    #: the handler :func:`preemption` installed (None: none installed)
    handler: Any = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def reinstall(self) -> None:
        """Put this fit's handler back in front (Lightning installs its own SIGTERM handler
        at the start of training, which would stop the run *before* the step-end checkpoint;
        it restores ours when training ends)."""
        if self.handler is None or threading.current_thread() is not threading.main_thread():
            return
        for sig in PREEMPTION_SIGNALS:
            signal.signal(sig, self.handler)

    def interrupted(self, step: int, total: int, where: Path | None) -> FitInterrupted:
        name = signal.Signals(self.signum).name if self.signum is not None else "a signal"
        saved = f"checkpoint written to {where}" if where is not None else "no checkpoint folder"
        return FitInterrupted(f"fit stopped by {name} after step {step} of {total} ({saved}); "
                              "run it again with the same plan to resume", self.signum, step)


@contextlib.contextmanager
def preemption(enabled: bool = True) -> Iterator[Preemption]:
    """SIGTERM/SIGUSR1 set ``Preemption.signum`` instead of ending the process, for the block.

    Only in the main thread (elsewhere signals cannot be handled) and only when
    ``enabled`` (a fit with a checkpoint folder); the previous handlers are restored
    on exit, so a runner's own SIGTERM handling applies again outside the fit.
    """
    flag = Preemption()
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def note(signum: int, _frame: Any) -> None:
        if flag.signum is None:
            log.warning("received %s: writing a checkpoint at the end of this step, then stopping",
                        signal.Signals(signum).name)
        flag.signum = signum

    previous = {}
    for sig in PREEMPTION_SIGNALS:
        previous[sig] = signal.signal(sig, note)
    flag.handler = note
    try:
        yield flag
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
