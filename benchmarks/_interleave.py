"""Interleaved timing shared by the benchmarks: ratios measured side by side.

Every variant runs a few steps per round, in an order rotated each round, and
the median over rounds is kept, so drift in machine load hits all variants
alike and their ratios stay comparable.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable
from typing import Protocol


class Timed(Protocol):
    name: str

    def timed(self, steps: int) -> tuple[float, float]:
        """(wall, cpu) seconds per step over ``steps`` steps."""


def interleaved(make: Callable[[str], Timed], names: Iterable[str], rounds: int, steps: int,
                warmup: int, error_width: int = 80) -> dict[str, dict]:
    """{name: {"wall", "cpu"} medians, or {"error"} for a variant that cannot run}."""
    variants, results = [], {}
    for name in names:
        try:
            v = make(name)
            v.timed(warmup)
            variants.append(v)
        except Exception as err:  # a mode that cannot run this model is a result, too
            results[name] = {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:error_width]}"}
    times: dict[str, list[tuple[float, float]]] = {v.name: [] for v in variants}
    for r in range(rounds):
        order = variants[r % len(variants):] + variants[: r % len(variants)] if variants else []
        for v in order:
            times[v.name].append(v.timed(steps))
    for name, ts in times.items():
        results[name] = {"wall": statistics.median(t[0] for t in ts),
                         "cpu": statistics.median(t[1] for t in ts)}
    return results


def auto_cell(res: dict[str, dict], picked: str) -> str:
    """What ``auto`` picked beside the fastest exact mode measured (by wall time):
    the check of its cost model (docs/dp-sgd-engine.md, "Grad-sample modes")."""
    timed = {n: r["wall"] for n, r in res.items() if "wall" in r and n not in ("non-private", "auto")}
    fastest = min(timed, key=timed.get) if timed else "-"
    verdict = "fastest" if picked == fastest else f"{timed[picked] / timed[fastest]:.2f}× the fastest"
    return f"{picked} ({verdict}: {fastest})" if picked in timed else f"{picked} (not measured)"
