"""What is left to do in a cell: shared by the run and by ``ppds run --check --out DIR``.

A cell is *done* when its model is fitted (``fit.json``; the real-data row needs
none) and every measurement its evaluators would write already has a final row
(``ok`` or ``skipped``; ``ok`` only with ``--retry-skipped``). A cell that is not
fitted recomputes everything: a refit draws new DP noise, so old measurements do
not describe the new model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cells import Cell, measurement_id
from .config import ResolvedMatrix, ResolvedPlugin

if TYPE_CHECKING:
    from ..imageset import Splits

__all__ = ["DONE", "done_measurements", "evaluators_of", "pending", "cell_folders", "cell_states",
           "check_cells"]

#: row statuses that count as done: a re-run leaves them alone (failed ones are retried)
DONE = ("ok", "skipped")


def done_measurements(out: Path, retry_skipped: bool = False) -> dict[str, str]:
    """measurement id → status of the rows a run into ``out`` would not recompute."""
    from .results import read_results

    final = ("ok",) if retry_skipped else DONE
    return {r["measurement"]: r["status"] for r in read_results(out)
            if r.get("measurement") and r.get("status") in final}


def evaluators_of(matrix: ResolvedMatrix, cell: Cell) -> list[ResolvedPlugin]:
    """The evaluators that apply to ``cell`` (a generators / epsilons filter leaves out the rest)."""
    return [e for e in matrix.evaluators if e.selects(cell.generator_name, cell.epsilon)]


def pending(cell: Cell, cell_id: str, evaluators: list[ResolvedPlugin], done: dict[str, Any],
            cell_dir: Path) -> tuple[bool, list[tuple[ResolvedPlugin, str]]]:
    """(fitted, [(evaluator, measurement id) still to compute]) for one cell."""
    todo = [(e, measurement_id(cell_id, e, cell.smoke)) for e in evaluators]
    fitted = cell.is_reference_data or (cell_dir / "fit.json").exists()
    if fitted:  # a refit (its folder deleted, or never finished) recomputes every measurement
        todo = [(e, mid) for e, mid in todo if mid not in done]
    return fitted, todo


def cell_folders(cells: list[Cell], splits_of: Callable[[Cell], Splits]) -> list[str | None]:
    """Each cell's folder name under ``cells/`` (its id: the recipe and the data's
    fingerprint), or None where its dataset fails to load."""
    fingerprints: dict[int, str | None] = {}
    folders: list[str | None] = []
    for cell in cells:
        if cell.dataset_index not in fingerprints:
            try:
                fingerprints[cell.dataset_index] = splits_of(cell).fingerprint()
            except Exception:  # noqa: BLE001 - the run records it in the cell's rows
                fingerprints[cell.dataset_index] = None
        fingerprint = fingerprints[cell.dataset_index]
        folders.append(None if fingerprint is None else cell.cell_id(fingerprint))
    return folders


def cell_states(matrix: ResolvedMatrix, cells: list[Cell], out: Path,
                folders: list[str | None], retry_skipped: bool = False) -> list[str]:
    """One phrase per cell for ``--check --out DIR``: what a run into ``out`` would do."""
    done = done_measurements(out, retry_skipped) if out.is_dir() else {}
    states = []
    for cell, cell_id in zip(cells, folders, strict=True):
        if cell_id is None:
            states.append("would run (its dataset failed to load)")
            continue
        evaluators = evaluators_of(matrix, cell)
        fitted, todo = pending(cell, cell_id, evaluators, done, out / "cells" / cell_id)
        if fitted and not todo:
            states.append("done")
        elif not fitted or (cell.is_reference_data and len(todo) == len(evaluators)):
            states.append("would run")
        else:  # the real-data row has no fit to keep
            kept = "" if cell.is_reference_data else "fitted; "
            states.append(f"{kept}{len(todo)} of {len(evaluators)} measurements would run")
    return states


def check_cells(matrix: ResolvedMatrix, cells: list[Cell], out: Path | None,
                retry_skipped: bool = False) -> tuple[list[str] | None, list[str | None]]:
    """``--check``: refuse a δ ≥ 1/N (exit 2); return each cell's state with ``out`` (else
    None) and each cell's folder name; each dataset is loaded once for all three."""
    from ._data import check_deltas, load_splits

    loaded: dict[int, Splits] = {}

    def splits_of(cell: Cell) -> Splits:
        if cell.dataset_index not in loaded:
            loaded[cell.dataset_index] = load_splits(cell.dataset)
        return loaded[cell.dataset_index]

    check_deltas(matrix, cells, splits_of)
    folders = cell_folders(cells, splits_of)
    states = cell_states(matrix, cells, out, folders, retry_skipped) if out is not None else None
    return states, folders
