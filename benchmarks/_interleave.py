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
