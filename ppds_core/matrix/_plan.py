"""The units of a run folder and what each waits for: what workers claim and status reports.

A matrix is split into units, each recorded on its own and run by whichever
worker claims it (``_claims``):

- ``fit-<cell>``: the cell's generator fit (done: ``cells/<cell>/fit.json``);
- ``shadow-<cell>-<key>``: one shadow fit an attack will ask for, when its
  ``Attack.shadow_plan`` names them ahead (LiRA does): done when
  ``cells/<cell>/shadows/<key>/fit.json`` exists, the cache ``fit_fresh`` reads
  (the plan of a finished attack is not computed again: its subsets can be
  large to hash; the shadow fits found on disk are listed done instead);
- ``eval-<measurement>``: one (cell, evaluator) measurement (done: a final row,
  by the same rules as the sequential run, :func:`._pending.pending`); it needs
  the cell's fit and its shadows;
- ``unloaded-<key>``: a cell whose dataset failed to load (records its failed rows).

Shadow fits do not wait for the cell's fit: they train the same recipe on other
subsets, so N workers fit a cell and its shadows at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..imageset import Splits
from ._fitting import shadow_key
from ._pending import evaluators_of, pending
from .cells import Cell, measurement_id
from .config import ResolvedMatrix, ResolvedPlugin

__all__ = ["Unit", "plan_units", "ShadowPlans", "UNIT_KINDS"]

log = logging.getLogger("ppds.matrix")

#: the order workers take units in: fits first (long, and everything else waits for them)
UNIT_KINDS = ("unloaded", "fit", "shadow", "eval")


@dataclass
class Unit:
    """One claimable piece of a run."""

    id: str
    kind: str
    cell: Cell
    cell_id: str | None
    done: bool
    #: unit ids that must be finished (done or failed) first
    needs: list[str] = field(default_factory=list)
    evaluator: ResolvedPlugin | None = None
    mid: str | None = None
    #: a shadow unit's (key, index in its attack's shadow_plan)
    shadow: tuple[str, int] | None = None
    #: the generator's resources ask for a GPU (``resources: {gpus: …}``)
    gpu: bool = False

    @property
    def label(self) -> str:
        what = {"fit": f"fit {self.cell.generator_name}", "unloaded": "load data",
                "shadow": f"shadow fit {self.shadow[1] + 1} of {self.evaluator.name}"
                          if self.shadow and self.evaluator else f"shadow fit {(self.shadow or ('',))[0]}",
                "eval": f"{self.evaluator.kind if self.evaluator else ''} "
                        f"{self.evaluator.name if self.evaluator else ''}"}[self.kind]
        return f"{self.cell.label()}: {what}"

    @property
    def duration_key(self) -> tuple:
        """The ``_console.Durations`` key of the kind of unit (a shadow fit times as a fit)."""
        if self.kind in ("fit", "shadow"):
            return ("fit", self.cell.generator_name, self.cell.budget.is_private)
        return ("eval", self.evaluator.name if self.evaluator else "")


class ShadowPlans:
    """Each (cell, attack)'s shadow keys, computed once per process (the subsets can be large)."""

    def __init__(self) -> None:
        self.keys: dict[str, list[str]] = {}

    def of(self, ev: ResolvedPlugin, splits: Splits, cell: Cell, mid: str) -> list[str]:
        if mid not in self.keys:
            plan: list[Any] = []
            hook = getattr(ev.cls, "shadow_plan", None)
            if hook is not None and not cell.is_reference_data:
                try:
                    plan = ev.cls(ev.config).shadow_plan(splits, cell.seed)  # type: ignore[attr-defined]
                except Exception as err:  # noqa: BLE001 - the measurement itself reports it
                    log.info("%s: %s names no shadow fits ahead (%s)", cell.label(), ev.name, err)
                    plan = []
            self.keys[mid] = [shadow_key(private, seed) for private, seed in plan]
        return self.keys[mid]


def _cell_units(matrix: ResolvedMatrix, cell: Cell, splits: Splits, cell_id: str, out: Path,
                done: dict[str, Any], shadows: ShadowPlans) -> list[Unit]:
    cell_dir = out / "cells" / cell_id
    evaluators = evaluators_of(matrix, cell)
    fitted, todo = pending(cell, cell_id, evaluators, done, cell_dir)
    left = {mid for _, mid in todo}
    res = cell.generator.resources if cell.generator is not None else None
    gpu = bool(res is not None and res.gpus > 0)
    units: list[Unit] = []
    fit_id = f"fit-{cell_id}"
    if not cell.is_reference_data:
        units.append(Unit(fit_id, "fit", cell, cell_id, fitted, gpu=gpu))
    seen: set[str] = set()
    for ev in evaluators:
        mid = measurement_id(cell_id, ev, cell.smoke)
        unit = Unit(f"eval-{mid}", "eval", cell, cell_id, mid not in left, evaluator=ev, mid=mid)
        if not fitted:
            unit.needs.append(fit_id)
        if not unit.done:  # a finished attack's plan is not computed again (below: its shadows on disk)
            for k, key in enumerate(shadows.of(ev, splits, cell, mid)):
                sid = f"shadow-{cell_id}-{key}"
                shadow_done = (cell_dir / "shadows" / key / "fit.json").exists()
                if sid not in seen:
                    seen.add(sid)
                    units.append(Unit(sid, "shadow", cell, cell_id, shadow_done, evaluator=ev, mid=mid,
                                      shadow=(key, k), gpu=gpu))
                if not shadow_done:
                    unit.needs.append(sid)
        units.append(unit)
    for done_fit in sorted(cell_dir.glob("shadows/*/fit.json")):  # shadow fits already on disk
        key = done_fit.parent.name
        if f"shadow-{cell_id}-{key}" not in seen:
            units.append(Unit(f"shadow-{cell_id}-{key}", "shadow", cell, cell_id, True, shadow=(key, -1), gpu=gpu))
    return units


def plan_units(matrix: ResolvedMatrix, cells: list[Cell], splits_of: Callable[[Cell], tuple[Splits, str]],
               out: Path, done: dict[str, Any], shadows: ShadowPlans) -> list[Unit]:
    """Every unit of ``cells`` with whether it is done, in the order workers take them."""
    units: list[Unit] = []
    for cell in cells:
        try:
            splits, fingerprint = splits_of(cell)
        except Exception:  # noqa: BLE001 - the unit records the dataset's failure in the cell's rows
            units.append(Unit(f"unloaded-{cell.key[:16]}", "unloaded", cell, None, False))
            continue
        units += _cell_units(matrix, cell, splits, cell.cell_id(fingerprint), Path(out), done, shadows)
    order = {kind: i for i, kind in enumerate(UNIT_KINDS)}
    return sorted(units, key=lambda u: order[u.kind])  # stable: file order within a kind
