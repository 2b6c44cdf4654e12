"""``make bench``: run every ``benchmarks/bench_*.py`` in turn and print their tables.

Each benchmark is a standalone script (its own interpreter, so one cannot
warm caches or leak threads into the next) that prints a Markdown table.
Extra arguments are passed to every benchmark; ``-k NAME`` runs only the
benchmarks whose file name contains NAME.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", dest="select", default="", help="run benchmarks whose name contains this")
    args, passthrough = parser.parse_known_args(argv)
    scripts = sorted(p for p in HERE.glob("bench_*.py") if args.select in p.stem)
    if not scripts:
        print(f"no benchmarks/bench_*.py matches {args.select!r}", file=sys.stderr)
        return 2
    failed = []
    for script in scripts:
        print(f"\n## {script.stem}\n", flush=True)
        start = time.perf_counter()
        rc = subprocess.call([sys.executable, str(script), *passthrough])
        print(f"\n({script.name}: exit {rc}, {time.perf_counter() - start:.0f} s)", flush=True)
        if rc != 0:
            failed.append(script.name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
