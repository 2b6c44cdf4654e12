"""``ppds status DIR``: what a run folder holds and what is left, without running anything.

The folder describes itself: ``provenance.json`` keeps the matrix as given (and
whether it was a smoke run), so the cells, their folders and their evaluators
are rebuilt from it exactly as the run did, and :mod:`._pending` says per cell
what a run into the folder would still do (the same code the run uses to skip
finished work). Failed rows give each failure's first line; the run lock says
whether a run is writing the folder now, and who; the ETA sums the recorded
median seconds of each kind of unit still to run (:class:`._console.Durations`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..budget import format_epsilon
from ..errors import ConfigError
from ._console import Durations
from ._lock import holders
from ._pending import check_cells, done_measurements, evaluators_of, pending

__all__ = ["run_status"]


def _matrix_of(out: Path):
    from .config import load_matrix, parse_yaml

    path = out / "provenance.json"
    try:
        prov = json.loads(path.read_text())
        given = prov["matrix_given"]
        smoke = bool(prov.get("matrix_resolved", {}).get("smoke", False))
    except FileNotFoundError:
        raise ConfigError(f"{out}: no provenance.json, so not the folder of a `ppds run` (or one "
                          "written before ppds kept it); pass the --out folder of a run") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ConfigError(f"{path}: unreadable ({err}); a run into the folder rewrites it") from None
    config = parse_yaml(given, f"{path}: matrix_given") if isinstance(given, str) else given
    return load_matrix(config, smoke=smoke)


def _first_line(text: Any) -> str:
    lines = str(text or "").strip().splitlines()
    return lines[0][:200] if lines else ""


def run_status(out: str | Path) -> dict[str, Any]:
    """Per cell: its folder, state, pending units and failures; totals, writers and an ETA."""
    from .cells import expand_cells
    from .results import read_results

    out = Path(out)
    if not out.is_dir():
        raise ConfigError(f"{out}: no such folder; pass the --out folder of a `ppds run`")
    matrix = _matrix_of(out)
    cells = expand_cells(matrix)
    states, folders = check_cells(matrix, cells, out)
    rows = read_results(out)
    done = done_measurements(out)
    durations = Durations()
    durations.seed_from(out)
    left, untimed, cell_rows = 0.0, 0, []
    for cell, state, folder in zip(cells, states or [], folders, strict=True):
        failed = [{"name": r.get("name"), "error": _first_line(r.get("error"))}
                  for r in rows if r.get("cell") == folder and r.get("status") == "failed"]
        units: list[tuple] = []
        if folder is not None:
            evaluators = evaluators_of(matrix, cell)
            fitted, todo = pending(cell, folder, evaluators, done, out / "cells" / folder)
            if not fitted:
                units.append(("fit", cell.generator_name, cell.epsilon != float("inf")))
            units += [("eval", e.name) for e, _ in todo]
        for key in units:
            seconds = durations.expect(key)
            left, untimed = (left + seconds, untimed) if seconds is not None else (left, untimed + 1)
        cell_rows.append({
            "cell": folder, "dataset": cell.dataset_name, "generator": cell.generator_name,
            "epsilon": None if cell.is_reference_data else format_epsilon(cell.epsilon, "ascii"),
            "seed": cell.seed, "state": state, "units_left": len(units),
            "failed": failed})
    n_done = sum(c["state"] == "done" for c in cell_rows)
    return {"folder": str(out), "matrix": matrix.config.name, "smoke": bool(cells and cells[0].smoke),
            "cells": cell_rows, "done": n_done, "to_run": len(cell_rows) - n_done,
            "with_failures": sum(bool(c["failed"]) for c in cell_rows),
            "running": holders(out), "eta_seconds": round(left, 1), "untimed_units": untimed}
