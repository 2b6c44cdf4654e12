"""The README's time split of a run: fits / shadow fits / attacks / metrics, summed over units.

Reads only what ``ppds run`` wrote: every ``cells/*/fit.json`` (the generator fits, by
generator), every ``cells/*/shadows/*/fit.json`` (the attacks' shadow fits), and the
``seconds`` of each measurement in ``results.jsonl`` (its current rows, through
``ppds_core.matrix.read_results``; one measurement writes several rows that share its
``measurement`` id and its seconds, so each is counted once), by kind and evaluator. In a sequential run (no ``workers/`` folder) an attack fits its shadows inside
its own measurement, so each cell's shadow seconds come off that cell's longest attack
measurement (LiRA's, the one that asked for them); workers run them as units of their own.
Wall time from start to end is the run's own (``time`` or the first and last
lines of ``run.log``); what the sums leave out of it is start-up, data, boards and plots.

    .venv/bin/python docs/tools/time_split.py runs/quickstart
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from datetime import datetime
from pathlib import Path

from ppds_core.matrix import read_results


def _log_span(log: Path) -> float | None:
    """Seconds between the first and the last timestamped line of ``run.log``."""
    stamps = []
    for line in log.read_text().splitlines():
        try:
            stamps.append(datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f"))
        except ValueError:
            continue
    return (stamps[-1] - stamps[0]).total_seconds() if len(stamps) > 1 else None


def main(run: Path) -> None:
    fits: dict[str, float] = defaultdict(float)
    for fit in sorted((run / "cells").glob("*/fit.json")):
        info = json.loads(fit.read_text())
        fits[info["generator"]] += float(info["fit_seconds"])
    shadow_by_cell: dict[str, float] = defaultdict(float)
    shadows = sorted((run / "cells").glob("*/shadows/*/fit.json"))
    for f in shadows:
        shadow_by_cell[f.parents[2].name] += float(json.loads(f.read_text())["fit_seconds"])
    shadow_s = sum(shadow_by_cell.values())
    measured: dict[str, tuple[str, str, str, float]] = {}
    for row in read_results(run):
        if row.get("seconds") is not None and row.get("measurement"):
            measured[row["measurement"]] = (row["cell"], row["kind"], row["evaluator"], float(row["seconds"]))
    if not (run / "workers").is_dir():  # the shadow fits ran inside their attack's measurement
        for cell, seconds in shadow_by_cell.items():
            mine = [k for k, m in measured.items() if m[0] == cell and m[1] == "attack"]
            if mine:
                k = max(mine, key=lambda k: measured[k][3])
                c, kind, ev, s = measured[k]
                measured[k] = (c, kind, ev, max(0.0, s - seconds))
    by_kind: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for _, kind, evaluator, seconds in measured.values():
        by_kind[kind][evaluator] += seconds
    fit_s = sum(fits.values())
    attack_s = sum(by_kind["attack"].values())
    metric_s = sum(by_kind["metric"].values())
    total = fit_s + shadow_s + attack_s + metric_s
    span = _log_span(run / "run.log")
    print(f"units summed: {total:.0f} s" + (f" of the run.log span {span:.0f} s" if span else ""))
    print(f"fits {fit_s + shadow_s:.0f} s: generator fits {fit_s:.0f} s ("
          + ", ".join(f"{g} {s:.0f} s" for g, s in sorted(fits.items())) + f"), "
          f"{len(shadows)} shadow fits {shadow_s:.0f} s")
    print("(attacks below without their shadow fits)")
    for kind, total_kind in (("attack", attack_s), ("metric", metric_s)):
        parts = sorted(by_kind[kind].items(), key=lambda kv: -kv[1])
        print(f"{kind}s {total_kind:.0f} s: " + ", ".join(f"{e} {s:.0f} s" for e, s in parts))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
