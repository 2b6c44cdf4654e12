"""``ppds worker DIR``: claim the next unit of a shared run folder, run it, record it, repeat.

Any number of workers (a SLURM array, a Kubernetes Job's replicas, N shells)
share one folder. Each loops: re-read what the folder records (``_plan``: done
from ``fit.json`` and ``results.jsonl``, failed from ``claims/*.failed``), take
the first unit that is not finished, whose needs are finished and that no live
worker holds (``_claims``: an exclusive create with a lease), check again that
it is not done, run it through the very code of the sequential run
(:class:`._units.UnitRunner`: isolated in a child process, a plugin's crash is
that unit's failed row) and release it. A worker waits (polling) only while
everything left is held by other workers or waits for units they hold, and
exits when nothing is left; the one that finds the queue empty writes the
leaderboards. A fit killed with its worker (``kill -9``, a scheduler's time
limit, preemption) resumes from its checkpoint in the next worker to claim it,
once its lease has expired.

Each worker appends what it did to ``DIR/workers/<id>.jsonl`` (start, every unit
with its times and status, exit), which ``ppds status`` and the tests read.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from .._version import __version__
from ..atomic import open_no_follow
from ..device import resolve_device
from ..errors import ConfigError, RunStorageError
from ._boards import write_boards
from ._claims import Claims, clear_failed, failed_units
from ._console import Progress, RunLog, log_names
from ._data import check_datasets_available, check_deltas
from ._isolation import isolation, run_isolated, stop_on_sigterm
from ._lock import RunLock
from ._pending import done_measurements
from ._plan import ShadowPlans, Unit, plan_units
from ._units import STORAGE_ERRNOS, UnitRunner
from .cells import expand_cells

__all__ = ["run_worker", "WorkerResult", "UNIT_FILTERS", "worker_id"]

log = logging.getLogger("ppds.matrix")

#: ``--units``: which units a worker takes (gpu: fits of generators whose resources ask for GPUs)
UNIT_FILTERS = ("all", "gpu", "cpu")


def worker_id(given: str | None = None) -> str:
    """A file-name-safe id: the one given, else host, SLURM array task or pid."""
    if given is None:
        task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
        tail = f"{task[0]}_{task[1]}" if all(task) else str(os.getpid())
        given = f"{socket.gethostname().split('.')[0]}-{tail}"
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", given)[:64].lstrip(".") or "worker"
    return safe


@dataclass
class WorkerResult:
    """What one worker did: the run summary of its units, and each unit it ran."""

    summary: Any
    worker: str
    units: list[dict[str, Any]] = field(default_factory=list)
    waited_s: float = 0.0
    wrote_boards: bool = False


class _Worker:
    def __init__(self, runner: UnitRunner, claims: Claims, cells: list, unit_filter: str, poll_s: float,
                 record: Path, quiet: bool):
        self.runner, self.claims, self.cells = runner, claims, cells
        self.filter, self.poll_s, self.record, self.quiet = unit_filter, poll_s, record, quiet
        self.shadows = ShadowPlans()
        self.result = WorkerResult(runner.summary, claims.worker)
        self.loaded: tuple[str, Any] | None = None  # (cell id, (outcome, samples)) of the last eval
        self.all_finished = False

    def _wanted(self, unit: Unit) -> bool:
        return self.filter == "all" or unit.gpu == (self.filter == "gpu")  # only fits ask for GPUs

    def _plan(self) -> tuple[list[Unit], set[str]]:
        out = self.runner.out
        self.runner.done = done_measurements(out)
        units = plan_units(self.runner.matrix, self.cells, self.runner.data, out, self.runner.done,
                           self.shadows)
        failed = set(failed_units(out))
        return units, {u.id for u in units if u.done or u.id in failed}

    def loop(self) -> None:
        while True:
            units, finished = self._plan()
            left = [u for u in units if u.id not in finished]
            self.all_finished = not left
            mine = [u for u in left if self._wanted(u)]
            if not mine:
                return
            if not any(self._try(u) for u in mine if all(n in finished for n in u.needs)):
                t0 = time.monotonic()  # all held by others, or waiting for what they hold
                time.sleep(self.poll_s)
                self.result.waited_s += time.monotonic() - t0

    def _try(self, unit: Unit) -> bool:
        claim = self.claims.try_claim(unit.id, unit.label)
        if claim is None:
            return False
        try:
            units, finished = self._plan()  # claimed: is it still to do? (done-ness is the folder's)
            fresh = next((u for u in units if u.id == unit.id), None)
            if fresh is None or fresh.id in finished or not all(n in finished for n in fresh.needs):
                return True
            self._run(fresh)
        finally:
            claim.release()
        return True

    def _note(self, event: dict[str, Any]) -> None:
        line = (json.dumps({"worker": self.claims.worker, **event}, default=str) + "\n").encode()
        fd = open_no_follow(self.record, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def _run(self, unit: Unit) -> None:
        started, t0 = time.time(), time.perf_counter()
        if not self.quiet:
            print(f"[{self.claims.worker}] {unit.label} …", flush=True)
        error = getattr(self, f"_run_{unit.kind}")(unit)
        seconds = time.perf_counter() - t0
        status = "ok" if error is None else "failed"
        if error is not None:
            self.claims.mark_failed(unit.id, error)
        entry = {"unit": unit.id, "kind": unit.kind, "label": unit.label, "start": started,
                 "end": time.time(), "seconds": round(seconds, 3), "status": status}
        self.result.units.append(entry)
        self._note({"event": "unit", **entry})
        log.info("[%s] %s: %s in %.1fs", self.claims.worker, unit.label, status, seconds)
        if not self.quiet:
            print(f"[{self.claims.worker}] {unit.label}: {status} in {seconds:.1f}s", flush=True)

    def _last_failure(self, n_before: int) -> str | None:
        failed = self.runner.summary.failed[n_before:]
        return failed[0]["error"] if failed else None

    def _run_unloaded(self, unit: Unit) -> str | None:
        n = len(self.runner.summary.failed)
        self.runner.open_cell(unit.cell)  # records the dataset's failure in the cell's rows
        return self._last_failure(n) or "the dataset failed to load"

    def _run_fit(self, unit: Unit) -> str | None:
        runner, n = self.runner, len(self.runner.summary.failed)
        oc = runner.open_cell(unit.cell)
        if oc is None:
            return self._last_failure(n)
        runner.enter_cell(oc)
        if runner.fit_cell(oc, [e for e, _ in oc.todo]) is not None:
            return None
        error = self._last_failure(n) or "generator fit failed"
        for _, mid in oc.todo:  # their failed rows are written: no worker tries to measure them
            self.claims.mark_failed(f"eval-{mid}", error)
        return error

    def _run_shadow(self, unit: Unit) -> str | None:
        runner = self.runner
        oc = runner.open_cell(unit.cell)
        if oc is None or unit.evaluator is None or unit.shadow is None:
            return "the cell's dataset failed to load"
        runner.enter_cell(oc)
        ev = unit.evaluator
        plan = ev.cls(ev.config).shadow_plan(oc.splits, oc.cell.seed)  # type: ignore[attr-defined]
        private, seed = plan[unit.shadow[1]]
        fit_fresh = runner.fits.shadow_fitter(oc.cell, oc.splits, oc.cell_dir,
                                              SimpleNamespace(shadow_samples=64))  # type: ignore[arg-type]

        def fit(_send) -> None:  # in the unit's child process, like the evaluator that asks for it
            fit_fresh(private, seed)

        gen = oc.cell.generator
        result = run_isolated(fit, timeout_min=gen.timeout_min if gen else None, threads=runner.threads)
        if not result.ok:
            log.error("%s: the shadow fit failed: %s\n%s", unit.label, result.error, result.traceback)
            if isinstance(result.exception(), OSError):
                raise result.exception()  # a full disk stops the worker as it stops a run
            return str(result.error)
        runner.summary.shadow_fits += 1
        return None

    def _run_eval(self, unit: Unit) -> str | None:
        runner, n = self.runner, len(self.runner.summary.failed)
        oc = runner.open_cell(unit.cell)
        if oc is None or unit.evaluator is None or unit.mid is None:
            return self._last_failure(n) or "the cell's dataset failed to load"
        runner.enter_cell(oc)
        if self.loaded is not None and self.loaded[0] == oc.cell_id:
            fitted = self.loaded[1]
        else:
            fitted = runner.fit_cell(oc, [unit.evaluator])
            if fitted is None:
                return self._last_failure(n) or "generator fit failed"
            self.loaded = (oc.cell_id, fitted)
        rows = runner.evaluate(oc, unit.evaluator, unit.mid, *fitted)
        bad = [r for r in rows if r["status"] == "failed"]
        return str(bad[0]["error"]) if bad else None


def _take_lock(out: Path, wid: str, retry_failed: bool) -> RunLock:
    if retry_failed:  # only while no other worker runs: clearing under them could duplicate work
        with RunLock(out).acquire():
            clear_failed(out)
    return RunLock(out, worker=wid).acquire()


def run_worker(out: str | Path, *, worker: str | None = None, lease_s: float = 60.0,
               poll_s: float | None = None, units: str = "all", quiet: bool = True,
               retry_failed: bool = False, sigterm_stops: bool = True) -> WorkerResult:
    """Work on the run folder ``out`` until nothing is left that this worker may take.

    The folder must hold ``provenance.json`` (written by ``ppds run`` or
    ``ppds run CONFIG --out DIR --worker``): the matrix is rebuilt from it.
    ``units`` picks what this worker takes (``all``, ``gpu``: fits of generators
    whose ``resources`` ask for GPUs, ``cpu``: the rest). ``lease_s``: a claim not
    renewed for that long is a dead worker's and is taken over. ``sigterm_stops``: SIGTERM
    stops the worker (exit 143, its claim released); a submitit job leaves SIGTERM to submitit,
    which requeues it on the preemption signal instead.
    """
    from ._status import matrix_of
    from .runner import RunSummary, _storage_message

    if units not in UNIT_FILTERS:
        raise ConfigError(f"--units {units!r}: expected one of {', '.join(UNIT_FILTERS)}")
    if not lease_s > 0:
        raise ConfigError(f"--lease-s {lease_s}: a lease is a positive number of seconds, e.g. 60")
    out = Path(out)
    if not out.is_dir():
        raise ConfigError(f"{out}: no such folder; pass the --out folder of a `ppds run`")
    matrix = matrix_of(out)
    cells = expand_cells(matrix)
    check_datasets_available(matrix)
    wid = worker_id(worker)
    summary = RunSummary(out=out, cells=cells)
    lock = _take_lock(out, wid, retry_failed)
    (out / "workers").mkdir(exist_ok=True)
    t0 = time.perf_counter()
    with lock, RunLog(out, log_names(matrix.plugin_classes())), isolation(matrix.config.threads) as threads, \
            (stop_on_sigterm() if sigterm_stops else contextlib.nullcontext()):
        log.info("ppds %s: worker %s on %s (pid %d), units %s, lease %gs", __version__, wid, out,
                 os.getpid(), units, lease_s)
        runner = UnitRunner(matrix, out, Progress(True, len(cells)), summary, threads=threads,
                            device=resolve_device(matrix.config.trainer))
        check_deltas(matrix, cells, lambda c: runner.data(c)[0])
        claims = Claims(out, wid, lease_s)
        w = _Worker(runner, claims, cells, units, poll_s if poll_s is not None else min(lease_s / 10, 2.0),
                    out / "workers" / f"{wid}.jsonl", quiet)
        w._note({"event": "start", "at": time.time(), "pid": os.getpid(), "host": socket.gethostname(),
                 "units": units})
        try:
            w.loop()
            summary.seconds = time.perf_counter() - t0
            if w.all_finished:
                w.result.wrote_boards = _boards(out, summary)
        except OSError as err:
            if err.errno in STORAGE_ERRNOS | {errno.EACCES}:
                raise RunStorageError(_storage_message(out, err)) from None
            raise
        finally:
            w._note({"event": "exit", "at": time.time(), "units_run": len(w.result.units),
                     "waited_s": round(w.result.waited_s, 2)})
    return w.result


def _boards(out: Path, summary: Any) -> bool:
    """Render the leaderboards once all is finished; several workers finishing together take
    turns, and a board newer than the results is left alone."""
    from .runner import RunSummary

    fd = open_no_follow(out / ".ppds-board.lock", os.O_RDWR | os.O_CREAT)
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX)
        quiet = RunSummary(out=out, cells=summary.cells)  # nothing new: write only if out of date
        write_boards(out, quiet)
        summary.outputs, summary.failed = quiet.outputs, summary.failed + quiet.failed
        return bool(quiet.outputs)
    finally:
        os.close(fd)
