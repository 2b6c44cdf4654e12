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

__all__ = ["Progress", "RunLog", "log_names"]

#: the core's own loggers: everything ppds logs is under "ppds" (a few modules use "ppds_core.*")
CORE_LOGGERS = ("ppds", "ppds_core")


def log_names(plugin_classes: Iterable[type]) -> tuple[str, ...]:
    """The loggers ``run.log`` collects: the core's, then each plugin package's root.

    A plugin that logs under its module name (``logging.getLogger(__name__)``)
    lands in ``run.log`` without the core knowing where plugins live.
    """
    roots = sorted({cls.__module__.split(".")[0] for cls in plugin_classes} - set(CORE_LOGGERS))
    return (*CORE_LOGGERS, *roots)


class Progress:
    """Rich progress bars for cells and training steps (or nothing, with --quiet)."""

    def __init__(self, quiet: bool, total: int):
        self.bar = None
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

    def cell(self, label: str) -> None:
        if self.bar:
            self.bar.update(self.cells, description=f"cells · {label}")

    def cell_done(self) -> None:
        if self.bar:
            self.bar.advance(self.cells)

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

