"""``ppds status DIR``: what a run folder holds and what is left, without running anything.

The folder describes itself: ``provenance.json`` keeps the matrix as given (and
whether it was a smoke run), so the cells, their folders and their evaluators
are rebuilt from it exactly as the run did, and :mod:`._pending` says per cell
what a run into the folder would still do (the same code the run uses to skip
finished work). Per unit (a fit, a shadow fit, a measurement: ``_plan``) it says
done, running (by which worker, since when, from ``claims/``), stale (a claim
whose worker stopped renewing it), failed (the first line of its error) or
pending. The run lock says whether a run is writing the folder now, and who;
the ETA sums the recorded median seconds of each kind of unit still to run
(:class:`._console.Durations`), and divides by the workers running now.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..budget import format_epsilon
from ..errors import ConfigError
from ._claims import claim_records, failed_units
from ._console import Durations
from ._lock import holders
from ._pending import done_measurements
from ._plan import ShadowPlans, Unit, plan_units

__all__ = ["run_status", "matrix_of"]


def matrix_of(out: Path):
    """The matrix of a run folder, rebuilt from its ``provenance.json`` (smoke or not)."""
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


def _unit_state(unit: Unit, claims: dict[str, dict[str, Any]], failed: dict[str, str],
                row_errors: dict[str, str]) -> dict[str, Any]:
    """done / running (by which worker, since when) / stale (a silent worker's claim) / failed
    (first line of its error) / pending, for one unit."""
    entry: dict[str, Any] = {"unit": unit.id, "kind": unit.kind, "label": unit.label}
    claim = claims.get(unit.id)
    if unit.done:
        entry["state"] = "done"
    elif claim is not None:
        entry.update(state="stale" if claim.get("stale") else "running", worker=claim.get("worker"),
                     host=claim.get("host"), pid=claim.get("pid"), since=claim.get("started"),
                     heartbeat_age_s=claim.get("age_s"))
    elif unit.id in failed or (unit.mid is not None and unit.mid in row_errors):
        entry.update(state="failed", error=_first_line(failed.get(unit.id) or row_errors.get(unit.mid or "")))
    else:
        entry["state"] = "pending"
    return entry


def run_status(out: str | Path) -> dict[str, Any]:
    """Per cell: its folder, state, each unit's state and failures; totals, writers and an ETA."""
    from ._data import load_splits
    from ._pending import cell_folders, cell_states
    from .cells import expand_cells
    from .results import read_results

    out = Path(out)
    if not out.is_dir():
        raise ConfigError(f"{out}: no such folder; pass the --out folder of a `ppds run`")
    matrix = matrix_of(out)
    cells = expand_cells(matrix)
    loaded: dict[int, tuple] = {}

    def splits_of(cell):
        if cell.dataset_index not in loaded:
            splits = load_splits(cell.dataset)
            loaded[cell.dataset_index] = (splits, splits.fingerprint())
        return loaded[cell.dataset_index]

    folders = cell_folders(cells, lambda c: splits_of(c)[0])
    states = cell_states(matrix, cells, out, folders)
    rows = read_results(out)
    row_errors = {r["measurement"]: r.get("error") for r in rows
                  if r.get("status") == "failed" and r.get("measurement")}
    units = plan_units(matrix, cells, splits_of, out, done_measurements(out), ShadowPlans())
    claims, failed = claim_records(out), failed_units(out)
    durations = Durations()
    durations.seed_from(out)
    left, untimed, cell_rows, by_cell = 0.0, 0, [], {}
    for u in units:
        by_cell.setdefault(id(u.cell), []).append(u)
    for cell, state, folder in zip(cells, states, folders, strict=True):
        mine = [_unit_state(u, claims, failed, row_errors) for u in by_cell.get(id(cell), [])]
        for u in by_cell.get(id(cell), []):
            if not u.done:
                seconds = durations.expect(u.duration_key)
                left, untimed = (left + seconds, untimed) if seconds is not None else (left, untimed + 1)
        cell_rows.append({
            "cell": folder, "dataset": cell.dataset_name, "generator": cell.generator_name,
            "epsilon": None if cell.is_reference_data else format_epsilon(cell.epsilon, "ascii"),
            "seed": cell.seed, "state": state, "units_left": sum(u["state"] != "done" for u in mine),
            "units": mine,
            "failed": [{"name": r.get("name"), "error": _first_line(r.get("error"))}
                       for r in rows if r.get("cell") == folder and r.get("status") == "failed"]})
    every = [u for c in cell_rows for u in c["units"]]
    counts = {s: sum(u["state"] == s for u in every) for s in ("done", "running", "stale", "failed", "pending")}
    workers = sorted({u["worker"] for u in every if u["state"] == "running"})
    n_done = sum(c["state"] == "done" for c in cell_rows)
    return {"folder": str(out), "matrix": matrix.config.name, "smoke": bool(cells and cells[0].smoke),
            "cells": cell_rows, "done": n_done, "to_run": len(cell_rows) - n_done,
            "with_failures": sum(bool(c["failed"]) for c in cell_rows), "units": counts,
            "workers": workers, "running": holders(out), "eta_seconds": round(left, 3),
            "eta_parallel_seconds": round(left / max(len(workers), 1), 3), "untimed_units": untimed}
