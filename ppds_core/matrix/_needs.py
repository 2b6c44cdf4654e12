"""What a measurement's ``needs`` ask of a cell: one table of (capability, unmet when, why).

An evaluator declares ``needs`` (``ppds_core.interfaces._Evaluator.needs``); a
cell that cannot offer one gets a ``skipped`` row whose error is the reason
here, instead of a run that fails half way. A capability may have several
rows: they are checked in order and the first one that holds is the reason
(so later rows may assume the earlier ones did not hold). A capability with
no row that can hold is always offered. Adding a capability is one row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from ..imageset import Splits
from .cells import Cell
from .fit import FitOutcome

__all__ = ["NEEDS", "KNOWN_NEEDS", "Need", "unmet_need"]


class Need(NamedTuple):
    capability: str
    #: (cell, its fit or None, its splits) → True when the cell cannot offer the capability
    unmet: Callable[[Cell, FitOutcome | None, Splits], bool]
    #: the skipped row's error; ``{generator!r}`` is the generator plugin's name
    reason: str


def _trains_with_dp_sgd(cell: Cell) -> bool:
    return bool(getattr(cell.generator.cls, "trains_with_dp_sgd", False))  # type: ignore[union-attr]


NEEDS: tuple[Need, ...] = (
    Need("dp-sgd", lambda cell, outcome, splits: cell.generator is None,
         "needs DP-SGD parameters; the real-data reference has no generator"),
    Need("dp-sgd", lambda cell, outcome, splits: not _trains_with_dp_sgd(cell),
         "needs DP-SGD parameters; {generator!r} does not train with the DP-SGD engine"),
    Need("dp-sgd", lambda cell, outcome, splits: not cell.budget.is_private,
         "needs DP-SGD parameters; this cell is the non-private (ε=∞) reference"),
    Need("dp-sgd", lambda cell, outcome, splits: outcome is None or outcome.ledger.dp_sgd() is None,
         "needs DP-SGD parameters; the generator's ledger lists no DP-SGD spend"),
    Need("labels", lambda cell, outcome, splits: cell.generator is not None
         and not getattr(cell.generator.cls, "class_conditional", True),
         "needs class-conditional samples; {generator!r} is unconditional"),
    Need("labels", lambda cell, outcome, splits: outcome is not None and outcome.samples.num_classes < 2,
         "needs class-conditional samples; the samples carry a single class"),
    Need("public", lambda cell, outcome, splits: splits.public is None,
         "needs public data; give the dataset a `public:` set in the matrix"),
    # real-data row: the release is the private split, a shadow release its own training
    # subset, so no fit is needed (ctx.generator None; ctx.fit_fresh skips)
    Need("shadow-models", lambda cell, outcome, splits: False, ""),
)

#: every capability this version of ppds can offer
KNOWN_NEEDS = frozenset(n.capability for n in NEEDS)


def unmet_need(needs: frozenset[str] | set[str], cell: Cell, outcome: FitOutcome | None,
               splits: Splits) -> str | None:
    """Why a measurement cannot apply to this cell (None if it can)."""
    for need in sorted(needs):
        if need not in KNOWN_NEEDS:
            return f"needs {need!r}, which this version of ppds cannot provide (known: {sorted(KNOWN_NEEDS)})"
        for row in NEEDS:
            if row.capability == need and row.unmet(cell, outcome, splits):
                generator = cell.generator.cls.name if cell.generator is not None else None
                return row.reason.format(generator=generator)
    return None
