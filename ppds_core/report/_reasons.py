"""Skipped and failed rows: the columns they belong in, and their reasons grouped.

An evaluator that raises ``SkipMeasurement`` (or whose fit failed) never got to
name its measurements, so its one row carries the evaluator's name
(``reconstruction``) while its measured cells elsewhere carry
``reconstruction-success-rate`` and friends. :func:`expand_evaluator_rows` gives
such a row one copy per measurement name that evaluator produced elsewhere in
the rows (same kind), so the skip sits in the same column as the numbers. An
evaluator measured nowhere keeps its own name: there is nothing else to map to.

:func:`group_reasons` turns the bad rows into one :class:`Reason` per
(status, measurement, reason text) with the cells it applies to: a missing
weights file is one entry, not one 300-character line per cell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..budget import format_epsilon

__all__ = ["Reason", "expand_evaluator_rows", "group_reasons"]

#: the key an expanded row keeps its original name under (the reasons name the evaluator once)
REASON_NAME = "_reason_name"


def expand_evaluator_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with each not-ok evaluator-named row replaced by one row per name it produces elsewhere."""
    produced: dict[tuple[Any, Any], dict[str, dict[str, Any]]] = {}
    for r in rows:
        if r.get("status") == "ok" and r.get("evaluator"):
            names = produced.setdefault((r.get("kind"), r["evaluator"]), {})
            names.setdefault(r["name"], {"headline": r.get("headline"), "role": r.get("role"),
                                         "higher_is_better": r.get("higher_is_better")})
    out = []
    for r in rows:
        names = produced.get((r.get("kind"), r.get("evaluator")))
        if r.get("status") == "ok" or not names or r.get("name") in names:
            out.append(r)
            continue
        for name, keys in names.items():
            # the copies keep the skipped row's measurement id, so the headline rule reads
            # them as one evaluation, with the flags the measured rows carry
            out.append(r | {k: v for k, v in keys.items() if v is not None}
                       | {"name": name, "headline": keys["headline"], REASON_NAME: r["name"]})
    return out


@dataclass
class Reason:
    """One skip or failure reason and the cells (dataset, generator, ε, seed) it applies to."""

    status: str
    name: str
    error: str
    cells: list[tuple[str, str, float, int]] = field(default_factory=list)

    def cells_text(self) -> str:
        """``digits: dp-gan ε=1, 10, ∞; real-data`` — per dataset, per generator, its ε (and
        seeds, when more than one seed is listed)."""
        seeds = {c[3] for c in self.cells}
        parts = []
        for dataset in dict.fromkeys(c[0] for c in self.cells):
            gens = []
            for gen in dict.fromkeys(c[1] for c in self.cells if c[0] == dataset):
                mine = [c for c in self.cells if c[:2] == (dataset, gen)]
                if gen == "real-data":
                    eps = ""
                else:
                    by_eps: dict[float, list[int]] = {}
                    for c in mine:
                        by_eps.setdefault(c[2], []).append(c[3])
                    eps = " ε=" + ", ".join(
                        format_epsilon(e) + (f" (seed{'s' if len(s) > 1 else ''} {', '.join(map(str, s))})"
                                             if len(seeds) > 1 else "")
                        for e, s in by_eps.items())
                if gen == "real-data" and len(seeds) > 1:
                    eps = f" (seeds {', '.join(str(c[3]) for c in mine)})"
                gens.append(f"{gen}{eps}")
            parts.append(f"{dataset}: " + "; ".join(gens))
        return " | ".join(parts)

    @property
    def n_cells(self) -> int:
        return len(self.cells)

    def text(self) -> str:
        """One line: status, measurement, the cells, the reason."""
        n = self.n_cells
        return (f"{self.status}: {self.name} — {n} cell{'s' if n != 1 else ''} "
                f"({self.cells_text()}): {self.error}")

    def to_dict(self) -> dict[str, Any]:
        from ..budget import encode_float

        return {"status": self.status, "name": self.name, "error": self.error,
                "cells": [{"dataset": d, "generator": g, "epsilon": encode_float(e), "seed": s}
                          for d, g, e, s in self.cells]}


def group_reasons(df: pd.DataFrame) -> list[Reason]:
    """One :class:`Reason` per (status, measurement, reason), in the rows' order."""
    bad = df[df["status"].isin(["failed", "skipped"])]
    groups: dict[tuple[str, str, str], Reason] = {}
    for _, r in bad.iterrows():
        original = r.get(REASON_NAME)
        name = original if isinstance(original, str) else str(r["name"])
        error = r["error"] if isinstance(r["error"], str) else "(no reason given)"
        key = (str(r["status"]), name, error)
        reason = groups.setdefault(key, Reason(*key))
        cell = (str(r["dataset"]), str(r["generator"]), float(r["epsilon"]), int(r["seed"]))
        if cell not in reason.cells:
            reason.cells.append(cell)
    return list(groups.values())
