"""docs/results.md's table of a multi-seed run: mean ± std over seeds per (generator, ε).

Reads only what ``ppds run`` wrote into the folder: ``results.jsonl`` (through
``ppds_core.matrix.read_results``, then the last row per cell and measurement name, as
the leaderboard keeps it) and each
cell's ``fit.json``: the fit's wall seconds (``fit_seconds``: training, privacy spends
included), the wall seconds of drawing the synthetic images after it (``seconds`` −
``fit_seconds``), and CPU seconds where the generator records them in ``train_info``. The standard deviation is over seeds (ddof 1);
a cell whose measurement is not ``ok`` is counted and named, never averaged in.

    .venv/bin/python docs/tools/results_table.py runs/mnist5k
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from ppds_core.matrix import read_results

#: (measurement, column title); the title's arrow says which way is better
COLUMNS = [("downstream-accuracy", "downstream accuracy ↑"), ("precision-domain", "precision (k = 4) ↑"),
           ("recall-domain", "recall (k = 4) ↑"), ("fd-domain", "fd-domain ↓")]
ORDER = ["dp-merf", "dp-gan", "dp-diffusion", "privimage", "real-data"]


def _eps(e: float) -> str:
    return "∞" if math.isinf(e) else f"{e:g}"


def _mean_std(values: list[float], digits: int) -> str:
    if not values:
        return "—"
    m = statistics.fmean(values)
    if len(values) == 1:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _fit_times(run: Path) -> dict[tuple[str, float], list[tuple[float, float, float | None]]]:
    """(generator, ε) → [(fit wall s, sampling wall s, CPU s or None)] over the cells' fit.json files."""
    times: dict[tuple[str, float], list[tuple[float, float, float | None]]] = defaultdict(list)
    for fit in sorted((run / "cells").glob("*/fit.json")):
        info = json.loads(fit.read_text())
        eps = float(info["epsilon"])  # "inf" parses too
        cpu = (info.get("train_info") or {}).get("cpu_seconds")
        fit_s = float(info["fit_seconds"])
        times[(info["generator"], eps)].append((fit_s, float(info.get("seconds", fit_s)) - fit_s, cpu))
    return times


def main(run: Path) -> None:
    rows = [r for r in read_results(run) if not r.get("smoke")]
    # one row per (cell, name), the last written, as the leaderboard keeps it: a metric whose
    # config changed between runs into the folder leaves its older rows behind
    rows = list({(r["cell"], r["name"]): r for r in rows}.values())
    values: dict[tuple[str, float, str], list[float]] = defaultdict(list)
    missing: dict[tuple[str, float, str], list[str]] = defaultdict(list)
    seeds: dict[tuple[str, float], set[int]] = defaultdict(set)
    for r in rows:
        key = (r["generator"], float(r["epsilon"]), r["name"])
        seeds[key[:2]].add(int(r["seed"]))
        if r["status"] == "ok" and r["value"] is not None:
            values[key].append(float(r["value"]))
        else:
            missing[key].append(f"seed {r['seed']} {r['status']}")
    times = _fit_times(run)
    head = ["generator", "ε", "seeds", *(t for _, t in COLUMNS), "fit wall s (min–max)", "sampling wall s", "fit CPU s"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    keys = sorted(seeds, key=lambda k: (ORDER.index(k[0]) if k[0] in ORDER else len(ORDER), k[0], k[1]))
    for gen, eps in keys:
        cells = []
        for name, _ in COLUMNS:
            text = _mean_std(values[(gen, eps, name)], 1 if name == "fd-domain" else 3)
            if missing[(gen, eps, name)]:
                text += f" ({', '.join(missing[(gen, eps, name)])})"
            cells.append(text)
        fits = times.get((gen, eps), [])
        walls = [w for w, _, _ in fits]
        draws = [d for _, d, _ in fits]
        cpus = [c for _, _, c in fits if c is not None]
        wall = f"{statistics.fmean(walls):.0f} ({min(walls):.0f}–{max(walls):.0f})" if walls else "—"
        draw = f"{statistics.fmean(draws):.0f}" if draws else "—"
        cpu = f"{statistics.fmean(cpus):.0f}" if cpus else "—"
        print(f"| {gen} | {'—' if gen == 'real-data' else _eps(eps)} | {len(seeds[(gen, eps)])} | "
              + " | ".join(cells) + f" | {wall} | {draw} | {cpu} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
