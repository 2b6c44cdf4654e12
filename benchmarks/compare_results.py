"""Did a refactor change any number? Compare two runs' ``results.jsonl`` row by row.

Usage::

    python benchmarks/compare_results.py BEFORE/results.jsonl AFTER/results.jsonl

Run both with ``reproducible_noise: true`` (the default draws DP noise from OS
entropy, so two default runs differ by design). Rows are matched on
(cell, dataset, generator, ε, seed, kind, name); per matched row the script
compares ``status`` and ``value`` bit for bit (``float.hex``) and, with
``--extras``, every other key except the ones that measure time or identify a
run. It prints one line per difference and a summary, and exits 1 if
anything differs (0 if the two runs agree), so it can gate the next refactor.

Why bit for bit: a behaviour-preserving change keeps the same float operations
in the same order; ``math.isclose`` would hide a changed RNG stream or a
reordered sum that moves a privacy number by one ulp.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

#: keys that differ between two honest runs of one commit (wall time, run ids, versions)
VOLATILE = frozenset({
    "seconds", "fit_seconds", "started", "finished", "batch", "ppds_version", "time", "timestamp",
    "measurement", "error", "host", "pid",
})
KEY = ("cell", "dataset", "generator", "epsilon", "seed", "kind", "name")


def _rows(path: Path) -> dict[tuple, dict[str, Any]]:
    rows: dict[tuple, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn line: the reader ignores it too
        rows[tuple(str(r.get(k)) for k in KEY)] = r  # the last batch wins, as in read_rows
    return rows


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a.hex() == b.hex()
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def compare(before: Path, after: Path, extras: bool = False) -> list[str]:
    """One message per difference between the two result files (empty: identical)."""
    a, b = _rows(before), _rows(after)
    out = [f"only in before: {' / '.join(k)}" for k in sorted(a.keys() - b.keys())]
    out += [f"only in after: {' / '.join(k)}" for k in sorted(b.keys() - a.keys())]
    for k in sorted(a.keys() & b.keys()):
        ra, rb = a[k], b[k]
        fields = ["status", "value"]
        if extras:
            fields += sorted((ra.keys() | rb.keys()) - VOLATILE - set(fields) - set(KEY))
        for f in fields:
            if not _same(ra.get(f), rb.get(f)):
                out.append(f"{' / '.join(k)}: {f} {ra.get(f)!r} → {rb.get(f)!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    p.add_argument("--extras", action="store_true", help="also compare every non-volatile extra key")
    args = p.parse_args(argv)
    diffs = compare(args.before, args.after, args.extras)
    n = len(_rows(args.before))
    for d in diffs:
        print(d)
    print(f"{n} rows before, {len(_rows(args.after))} after: "
          + ("identical" if not diffs else f"{len(diffs)} difference(s)"))
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
