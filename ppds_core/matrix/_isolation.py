"""Run one unit of a matrix (a fit, an evaluation) in a child process, under a supervisor.

A plugin is code we did not write: it may hang, call ``sys.exit`` or ``os._exit``,
raise ``KeyboardInterrupt``, abort or segfault. Run in the runner's own process,
any of these ends the whole matrix (with exit 0 for ``sys.exit(0)``). So each
unit runs in a forked child, and the supervisor (the runner) turns whatever the
child does into a :class:`UnitResult`: the unit's value, or one line saying why
it failed — and the matrix goes on.

Why ``fork``: the child inherits the unit's whole context (the EvalContext with
its ``fit_fresh`` closure, tensors, a fitted model) without pickling anything and
without re-importing torch, so a unit costs a few milliseconds more (measured in
docs/matrix.md). The child sends back only plain data: JSON over a pipe (never a
pickle: the runner reads nothing that could run code). Fork caveats, handled here:

- *OpenMP*: a child forked after the parent ran a multi-threaded OpenMP region
  deadlocks in its own next one. The runner keeps itself at one torch thread for
  the run and gives children their thread count back; :func:`child_threads` first
  probes (one fork, milliseconds) that a multi-threaded child works, else children
  get one thread.
- *CUDA* cannot be used in a child forked after the parent initialised it. The
  runner never computes on the GPU itself; ``PYTORCH_NVML_BASED_CUDA_CHECK=1``
  keeps ``torch.cuda.is_available()`` in the parent from initialising CUDA.
- The child is its own process group (a Ctrl-C at the terminal reaches only the
  runner, which then kills the unit and stops the run, resumably) and dies with
  the runner (``PR_SET_PDEATHSIG``): a killed run leaves no unit running on.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from typing import Any

__all__ = ["UnitResult", "UnitError", "run_isolated", "child_threads", "plain", "isolation", "stop_on_sigterm"]

log = logging.getLogger("ppds.matrix")

#: how often the supervisor looks whether the child died with its pipe still open elsewhere
_POLL_S = 0.5
#: how long a child that sent its result may take to exit before it is killed
_EXIT_GRACE_S = 10.0
_PR_SET_PDEATHSIG = 1
#: how long a stopped unit (the run's own Ctrl-C, SIGTERM, a preemption) may take to exit
#: after SIGTERM, e.g. a fit writing its checkpoint, before it is killed
_STOP_GRACE_S = 30.0


class UnitError(Exception):
    """What a unit's own ``Exception`` looked like, rebuilt in the parent from the child's summary."""

    def __init__(self, type_name: str, message: str, tb: str, errno: int | None = None,
                 strerror: str | None = None, filename: str | None = None):
        super().__init__(f"{type_name}: {message}" if type_name else message)
        self.type_name, self.message, self.traceback = type_name, message, tb
        self.errno, self.strerror, self.filename = errno, strerror, filename


@dataclass
class UnitResult:
    """A unit's outcome: ``value`` when it finished, else ``error`` (one line) and ``traceback``."""

    value: Any = None
    error: str | None = None
    traceback: str = ""
    #: the unit's own exception (type, message, errno) when it raised one
    raised: UnitError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def exception(self) -> Exception:
        """The failure as an exception to raise: an ``OSError`` for the unit's own OS error
        (so a full disk stops the run as it did in-process), else a :class:`UnitError`."""
        r = self.raised
        if r is not None and r.errno is not None and r.type_name.endswith("Error"):
            return OSError(r.errno, r.strerror or r.message, r.filename)
        return r if r is not None else UnitError("", self.error or "failed", self.traceback)


def plain(v: Any) -> Any:
    """``v`` as JSON-able data (numpy / torch values through ``tolist``; the rest via ``str``)."""
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [plain(x) for x in v]
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if hasattr(v, "tolist") and callable(v.tolist):
        return plain(v.tolist())
    return str(v)


def _send(conn: Connection, message: Any) -> None:
    conn.send_bytes(json.dumps(plain(message), allow_nan=True).encode())


def _exit_reason(code: Any) -> str:
    if code is None:
        code = 0
    if isinstance(code, int):
        return f"the plugin exited the process with code {code}"
    return f"the plugin exited the process (sys.exit({code!r}))"


def _status_reason(status: int) -> str:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        hint = " (from outside, or the system ran out of memory)" if sig == signal.SIGKILL else ""
        return f"the unit's process was killed by {name}{hint}"
    return _exit_reason(os.WEXITSTATUS(status) if os.WIFEXITED(status) else status)


def _set_torch_threads(threads: int | None) -> None:
    torch = sys.modules.get("torch")
    if torch is not None and threads is not None:
        torch.set_num_threads(threads)


def _child_setup(parent: int, threads: int | None) -> None:
    os.setpgid(0, 0)  # terminal signals (Ctrl-C) go to the runner, which decides
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
        if os.getppid() != parent:  # the runner died before the line above took effect
            os._exit(1)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL if sig == signal.SIGTERM else signal.default_int_handler)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # a background process group reading the terminal would be stopped
    os.close(devnull)
    _set_torch_threads(threads)


def _child(work: Callable[[Callable[[Any], None]], Any], conn: Connection) -> None:
    """The child's whole life: run ``work``, send one result line, never return."""
    try:
        def progress(message: Any) -> None:
            _send(conn, ["progress", message])

        try:
            payload: list[Any] = ["done", work(progress)]
        except SystemExit as exc:
            payload = ["failed", _exit_reason(exc.code), ""]
        except KeyboardInterrupt:
            payload = ["failed", "the plugin raised KeyboardInterrupt", traceback.format_exc()]
        except BaseException as exc:  # noqa: BLE001 - everything a unit raises is its result
            payload = ["raised", type(exc).__name__, str(exc), traceback.format_exc(),
                       getattr(exc, "errno", None), getattr(exc, "strerror", None),
                       str(exc.filename) if getattr(exc, "filename", None) else None]
        try:
            _send(conn, payload)
        except BaseException as exc:  # noqa: BLE001 - e.g. a value JSON cannot carry
            _send(conn, ["failed", f"could not send the result back: {type(exc).__name__}: {exc}", ""])
    except BaseException:  # noqa: BLE001 - nothing may escape into the parent's code path
        pass
    finally:
        for h in logging.getLogger().handlers + logging.getLogger("ppds").handlers:
            try:
                h.flush()
            except Exception:  # noqa: BLE001
                pass
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(0)


def _kill(pid: int) -> None:
    for kill, target in ((os.killpg, pid), (os.kill, pid)):
        try:
            kill(target, signal.SIGKILL)
            return
        except (ProcessLookupError, PermissionError):
            continue


def _stop(pid: int) -> None:
    """SIGTERM to the unit's group, SIGKILL after :data:`_STOP_GRACE_S`: a fit that handles it
    (a scheduler's preemption signal) checkpoints at the end of its step and exits; any
    other unit dies at once (SIGTERM is the default action in a unit's process)."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass
    _reap(pid, _STOP_GRACE_S)
    try:  # what it started, if anything of its group is left (never a bare pid: it is reaped)
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _reap(pid: int, grace_s: float) -> int:
    """The child's wait status, killing it (and its group) if it outstays ``grace_s``."""
    deadline, nap = time.monotonic() + grace_s, 0.0005
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() >= deadline:
            _kill(pid)
            return os.waitpid(pid, 0)[1]
        time.sleep(nap)
        nap = min(nap * 2, 0.05)


def run_isolated(work: Callable[[Callable[[Any], None]], Any], *, timeout_min: float | None = None,
                 threads: int | None = None,
                 on_progress: Callable[[Any], None] | None = None) -> UnitResult:
    """Run ``work(progress)`` in a forked child; its JSON-able return value comes back.

    ``progress(message)`` in the child calls ``on_progress(message)`` here. A unit
    still running after ``timeout_min`` minutes is killed with everything it started.
    Only the parent's own interrupt (Ctrl-C, SIGTERM) propagates: the child is
    killed first, so nothing of it outlives the run.
    """
    reader, writer = Pipe(duplex=False)
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; coverage does not follow a fork
        reader.close()
        try:
            _child_setup(parent, threads)
        except BaseException:  # noqa: BLE001
            os._exit(1)
        _child(work, writer)
    writer.close()
    try:
        os.setpgid(pid, pid)  # also from here: no window in which a kill misses the group
    except OSError:
        pass
    limit = timeout_min * 60 if timeout_min is not None and math.isfinite(timeout_min) else None
    deadline = time.monotonic() + limit if limit is not None else None
    payload: list[Any] | None = None
    timed_out = exited = False
    status = 0
    try:
        while payload is None:
            wait = _POLL_S if deadline is None else min(_POLL_S, max(deadline - time.monotonic(), 0))
            if reader.poll(wait):
                try:
                    message = json.loads(reader.recv_bytes())
                except EOFError:  # the child is gone without a word: its status says why
                    break
                if message[0] == "progress":
                    if on_progress is not None:
                        on_progress(message[1])
                    continue
                payload = message
            else:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:  # died, while something it started holds the pipe open
                    _kill(pid)  # that group too (killpg reaches it while any member lives)
                    exited = True
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    timed_out = True
                    break
    except BaseException:  # the runner's own Ctrl-C / SIGTERM: the unit goes with it,
        _stop(pid)  # a fit first writing its checkpoint (ppds_core.privacy.checkpoint.preemption)
        raise
    finally:
        reader.close()
    if timed_out:
        _kill(pid)
        _reap(pid, 0)
        return UnitResult(error=f"timed out after {timeout_min:g} min (timeout_min); the unit's "
                          "process was killed")
    if not exited:
        status = _reap(pid, _EXIT_GRACE_S)
    if payload is None:
        return UnitResult(error=_status_reason(status))
    if payload[0] == "done":
        return UnitResult(value=payload[1])
    if payload[0] == "raised":
        raised = UnitError(*payload[1:])
        return UnitResult(error=str(raised), traceback=raised.traceback, raised=raised)
    return UnitResult(error=payload[1], traceback=payload[2])


def child_threads(wanted: int) -> int:
    """``wanted`` if a child forked now can run torch on that many threads, else 1.

    GNU OpenMP does not survive a fork after a multi-threaded region: the child's
    next parallel region waits for ever on threads it does not have. One probe
    child (milliseconds) runs a small parallel op with a short limit.
    """
    if wanted <= 1 or "torch" not in sys.modules:
        return max(wanted, 1)

    def probe(_progress: Callable[[Any], None]) -> int:
        import torch

        a = torch.ones(256, 256)
        return int((a @ a).sum().item() > 0)

    result = run_isolated(probe, timeout_min=0.05, threads=wanted)  # ms when it works
    if result.ok and result.value == 1:
        return wanted
    log.warning("torch with %d threads hangs in a forked unit (this process ran OpenMP with "
                "several threads before the run); every unit runs on 1 thread", wanted)
    return 1


@contextmanager
def isolation(wanted_threads: int | None) -> Iterator[int]:
    """Ready this process to fork units for a run; yields the torch threads each unit gets.

    The runner itself stays at one torch thread (it only loads data and models and
    writes rows), so it never starts the OpenMP team a forked unit would hang on.
    """
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")  # is_available() without CUDA init
    import torch

    before = torch.get_num_threads()
    wanted = wanted_threads or before
    torch.set_num_threads(1)
    try:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            log.warning("CUDA was initialised in the runner before the run: units forked from it "
                        "cannot use the GPU (they fail saying so); run the matrix in a fresh process")
        yield child_threads(wanted)
    finally:
        torch.set_num_threads(wanted_threads or before)


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """SIGTERM stops the run like Ctrl-C: the running unit is killed, every finished row
    stays, and the process exits 143 (128 + SIGTERM); a re-run resumes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: Any) -> None:
        log.error("stopped by %s; run the same command again to resume", signal.Signals(signum).name)
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
