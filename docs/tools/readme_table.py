"""The README's selection of a run's leaderboard, as Markdown, from its ``leaderboard.csv``.

Columns: the utility headlines, the ReRo bound and each attack's headline (AUCs with
their 95 % CI); rows in the board's order. Reads only what ``ppds run`` wrote.

    .venv/bin/python docs/tools/readme_table.py runs/quickstart
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

COLUMNS = ["downstream-accuracy ↑", "fd-domain ↓", "precision-domain ↑", "recall-domain ↑",
           "rero-bound ↓", "lira-auc ↓", "gan-leaks-auc ↓", "monte-carlo-auc ↓", "domias-auc ↓",
           "reconstruction-success-rate ↓", "dpsgd-audit-epsilon-lb ↓", "dpsgd-audit-violation ↓"]


def _num(x: str) -> str:
    v = float(x)
    return "∞" if math.isinf(v) else f"{v:.3g}"


def cell(row: dict[str, str], name: str) -> str:
    status = row.get(f"{name} status", "")
    if status in ("", "absent", "missing") or (not row.get(name) and status == "ok"):
        return "—"
    if status != "ok":
        return status
    text = _num(row[name])
    lo, hi = row.get(f"{name} ci_low"), row.get(f"{name} ci_high")
    if name.endswith("-auc") and lo and hi:
        text += f" [{float(lo):.2f}, {float(hi):.2f}]"
    return text


def main(run: Path) -> None:
    with (run / "leaderboard.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    names = [c.rsplit(" ", 1)[0] for c in COLUMNS]
    print("| generator | ε | ε spent | " + " | ".join(COLUMNS) + " |")
    print("|---" * (3 + len(COLUMNS)) + "|")
    for r in rows:
        real = r["generator"] == "real-data"
        eps = "—" if real else _num(r["epsilon"])
        spent = "—" if real else _num(r["epsilon_spent"])
        print(f"| {r['generator']} | {eps} | {spent} | " + " | ".join(cell(r, n) for n in names) + " |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
