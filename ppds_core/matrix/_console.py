"""What a run shows and keeps while it works: progress bars on the terminal, ``run.log`` on disk.

The runner only calls these; nothing here decides what runs. The terminal shows
the bars and the summary (``--quiet``: nothing); every INFO line of ppds and of
the plugins the matrix names goes to ``DIR/run.log`` only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..atomic import NoFollowFileHandler
from ..budget import format_epsilon

__all__ = ["Durations", "Progress", "RunLog", "log_names"]

#: the core's own loggers: everything ppds logs is under "ppds" (a few modules use "ppds_core.*")
CORE_LOGGERS = ("ppds", "ppds_core")


def log_names(plugin_classes: Iterable[type]) -> tuple[str, ...]:
    """The loggers ``run.log`` collects: the core's, then each plugin package's root.

    A plugin that logs under its module name (``logging.getLogger(__name__)``)
    lands in ``run.log`` without the core knowing where plugins live.
    """
    roots = sorted({cls.__module__.split(".")[0] for cls in plugin_classes} - set(CORE_LOGGERS))
    return (*CORE_LOGGERS, *roots)


class Durations:
    """Seconds each kind of unit took, to estimate what is left.

    Keys: ``("fit", generator, private?)`` and ``("eval", evaluator)``; seeded from what
    a run folder already records (``cells/*/fit.json``'s ``fit_seconds``, the ``seconds``
    of ``results.jsonl`` rows) and updated as units finish. ``expect`` is the median of
    the recorded seconds, or None for a unit never seen.
    """

    def __init__(self) -> None:
        self.seen: dict[tuple, list[float]] = {}

    def record(self, key: tuple, seconds: float | None) -> None:
        if isinstance(seconds, int | float) and seconds >= 0:
            self.seen.setdefault(key, []).append(float(seconds))

    def expect(self, key: tuple) -> float | None:
        xs = sorted(self.seen.get(key, ()))
        return xs[len(xs) // 2] if xs else None

    def seed_from(self, out: Path) -> None:
        """What an earlier (interrupted, or changed) run in ``out`` measured."""
        import json

        for fit in out.glob("cells/*/fit.json"):
            try:
                meta = json.loads(fit.read_text())
                private = meta.get("epsilon") not in (None, "inf", float("inf"))
                self.record(("fit", meta["generator"], private), meta.get("fit_seconds"))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        results = out / "results.jsonl"
        if results.exists():
            batches: set[str] = set()
            for line in results.read_text(errors="replace").splitlines():
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if row.get("batch") in batches or row.get("status") == "skipped":
                    continue
                batches.add(row.get("batch"))
                self.record(("eval", row.get("evaluator", row.get("name"))), row.get("seconds"))


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds}s"


class Progress:
    """Rich progress bars for cells, training steps and each unit of a cell, with the time
    left estimated from recorded durations (or nothing, with --quiet).

    The runner tells it the cells ahead (:meth:`plan`: each cell's fit and evaluators)
    and each unit as it starts and ends; the cells bar then shows ``≈ M:SS left``: the
    sum of the expected seconds of every unit not yet run (a unit of a kind never
    timed counts as ``+?``). The unit line says what runs now (a fit, an evaluator,
    LiRA's k-th shadow fit) and how long such a unit took before.
    """

    def __init__(self, quiet: bool, total: int):
        self.bar = None
        self.durations = Durations()
        self.ahead: list[tuple[tuple | None, list[tuple]]] = []
        if quiet:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        from ..cli._output import err_console

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=err_console, transient=False)
        self.bar.start()
        self.cells = self.bar.add_task("cells", total=total)
        self.train = self.bar.add_task("training", total=1, visible=False)
        self.unit = self.bar.add_task("unit", total=None, visible=False)
        self.label = ""

    # -- the plan and the estimate ------------------------------------------------------

    def plan(self, ahead: list[tuple[tuple | None, list[tuple]]]) -> None:
        """The cells still to run, in order: (fit key or None, [evaluator keys])."""
        self.ahead = list(ahead)
        self._describe()

    def left(self) -> tuple[float, int]:
        """(expected seconds of the units ahead, how many of them were never timed)."""
        total, unknown = 0.0, 0
        for fit, evals in self.ahead:
            for key in ([fit] if fit else []) + list(evals):
                t = self.durations.expect(key)
                if t is None:
                    unknown += 1
                else:
                    total += t
        return total, unknown

    def _describe(self) -> None:
        if not self.bar:
            return
        seconds, unknown = self.left()
        eta = ""
        if seconds or unknown:
            eta = f" · ≈ {_clock(seconds)} left" + (f" + {unknown} untimed" if unknown else "")
        self.bar.update(self.cells, description=f"cells{' · ' + self.label if self.label else ''}{eta}")

    # -- cells --------------------------------------------------------------------------

    def cell(self, label: str) -> None:
        if self.bar:
            self.label = label
            self._describe()

    def cell_done(self) -> None:
        if self.ahead:
            self.ahead.pop(0)
        if self.bar:
            self.bar.advance(self.cells)
            self._describe()

    def skip_fit(self) -> None:
        """The current cell's fit will not run (loaded, cached, or the real-data row)."""
        if self.ahead:
            self.ahead[0] = (None, self.ahead[0][1])
            self._describe()

    def keep_evaluators(self, keys: list[tuple]) -> None:
        """Only these evaluators of the current cell will run (the rest are cached)."""
        if self.ahead:
            self.ahead[0] = (self.ahead[0][0], list(keys))
            self._describe()

    # -- units --------------------------------------------------------------------------

    def unit_start(self, key: tuple, what: str) -> None:
        if not self.bar:
            return
        t = self.durations.expect(key)
        hint = f" (took {_clock(t)} before)" if t is not None else ""
        self.bar.reset(self.unit, total=None, visible=True, description=f"  {what}{hint}")

    def unit_note(self, note: str) -> None:
        """A step inside the running unit (e.g. 'shadow 3 of 8 fitted')."""
        if self.bar:
            task = self.bar.tasks[self.unit]
            base = task.description.split(" · ")[0]
            self.bar.update(self.unit, description=f"{base} · {note}")

    def unit_done(self, key: tuple, seconds: float) -> None:
        self.durations.record(key, seconds)
        if self.ahead:
            fit, evals = self.ahead[0]
            if key == fit:
                self.ahead[0] = (None, evals)
            elif key in evals:
                evals = list(evals)
                evals.remove(key)
                self.ahead[0] = (fit, evals)
        if self.bar:
            self.bar.update(self.unit, visible=False)
            self._describe()

    def training(self, label: str) -> Callable[[int, int, dict[str, Any]], None] | None:
        if not self.bar:
            return None
        bar, task = self.bar, self.train
        bar.reset(task, total=1, visible=True, description=f"  training {label}")

        def report(step: int, total: int, info: dict[str, Any]) -> None:
            extra = ""
            if isinstance(info.get("epsilon"), int | float):
                extra = f" ε={format_epsilon(info['epsilon'], 'spent')}"
            elif isinstance(info.get("epsilon_rdp_upper"), int | float):
                extra = f" ε≤{format_epsilon(info['epsilon_rdp_upper'], 'spent')}"
            bar.update(task, completed=step, total=max(total, 1), description=f"  training {label}{extra}")

        return report

    def training_done(self) -> None:
        if self.bar:
            self.bar.update(self.train, visible=False)

    def stop(self) -> None:
        if self.bar:
            self.bar.stop()


class RunLog:
    """Python logging of ``ppds`` (and the plugins' packages, :func:`log_names`) into ``DIR/run.log``."""

    def __init__(self, out: Path, names: tuple[str, ...] = CORE_LOGGERS):
        self.names = names
        self.handler = NoFollowFileHandler(out / "run.log", encoding="utf-8")  # a link there: refused
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.saved: list[tuple[logging.Logger, int, bool]] = []

    def __enter__(self) -> RunLog:
        for name in self.names:
            lg = logging.getLogger(name)
            self.saved.append((lg, lg.level, lg.propagate))
            lg.addHandler(self.handler)
            if lg.level == logging.NOTSET or lg.level > logging.INFO:
                lg.setLevel(logging.INFO)
            # the terminal shows progress bars and the summary; INFO lines go to run.log only
            # (some libraries install a root handler that would echo them)
            lg.propagate = False
        return self

    def __exit__(self, *exc) -> None:
        for lg, level, propagate in self.saved:
            lg.removeHandler(self.handler)
            lg.setLevel(level)
            lg.propagate = propagate
        self.handler.close()

