"""Which entry of a column is the best private row at its dataset and ε, and whether that is noise.

A mark is only meaningful between private rows that spent the same ε on the same
dataset, and only where the number ranks anything: a column with a direction
(``higher_is_better``), that is neither a claim check (``role == "violation"``,
0 or 1) nor a one-sided bound (:func:`is_bound`: a row whose value is an end of its
own interval, such as an empirical ε lower bound — a smaller lower bound proves less,
it does not show less leakage). A column where every candidate ties (all zeros) gets
no mark. When the runner-up lies inside the winner's noise band (its CI for one seed,
mean ± std over seeds: :meth:`Entry.interval`) the winner is marked ``within_noise``
instead of ``best``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._board import Board, Entry

__all__ = ["is_bound", "mark_best"]


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, int | float) or math.isnan(x):
        return None
    return float(x)


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)


def is_bound(row: Any) -> bool:
    """A row whose value is one end of a proper interval it carries (``ci_low`` < ``ci_high``,
    the value equal to one of them): a one-sided bound, not an estimate with an error bar."""
    value, lo, hi = (_number(row.get(k)) for k in ("value", "ci_low", "ci_high"))
    if value is None or lo is None or hi is None:  # one end only: a one-sided CI of an estimate
        return False
    return lo < hi and (_same(value, lo) or _same(value, hi))


def _mark(cand: list[Entry], higher_is_better: bool) -> None:
    """Mark the winners among one (dataset, ε)'s entries of one column."""
    pick = max if higher_is_better else min
    best = pick(e.mean for e in cand)  # type: ignore[type-var]
    winners = [e for e in cand if _same(e.mean, best)]  # type: ignore[arg-type]
    rest = [e for e in cand if not _same(e.mean, best)]  # type: ignore[arg-type]
    if not rest:  # every row ties (a column of zeros): nothing is best
        return
    runner_up = pick(e.mean for e in rest)  # type: ignore[type-var]
    for e in winners:
        band = e.interval()
        if band is not None and band[0] <= runner_up <= band[1]:
            e.within_noise = True
        else:
            e.best = True


def mark_best(board: Board) -> None:
    """Set ``best`` / ``within_noise`` on the private rows' entries, per (dataset, ε) and column."""
    groups: dict[tuple[str, float], list] = {}
    for r in board.main_rows:
        groups.setdefault((r.dataset, r.epsilon), []).append(r)
    for col in board.columns:
        if not col.ranked:
            continue
        for rows in groups.values():
            cand = [e for r in rows if (e := r.entries.get(col.name)) is not None and e.mean is not None]
            if len(cand) >= 2:
                _mark(cand, bool(col.higher_is_better))
