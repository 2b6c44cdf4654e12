"""Start-up time of the ``ppds`` command: light commands must not pay for torch.

What is timed: wall-clock time of a fresh ``python -m ppds_core.cli ARGS`` process
(interpreter start, imports, argument parsing, the command, exit), output to
/dev/null; the median of ``--rounds`` runs per command, the commands interleaved
round by round. ``plugins list`` is timed twice: with a warm plugin cache (a
private cache folder, filled by one untimed run first) and cold (an empty cache
folder every run: every plugin imported, as before the cache existed). The
"torch" column says whether the command imported torch (one extra run with
``-X importtime``).

To time another checkout, put it first on ``PYTHONPATH`` (ppds_core, and the
first-party plugins as ``ppds_plugins``) and run this script with the same
interpreter.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time

COMMANDS: list[tuple[str, list[str], bool]] = [  # (label, argv, cold plugin cache)
    ("ppds --version", ["--version"], False),
    ("ppds --help", ["--help"], False),
    ("ppds bounds rero --kappa 0.01 --mu 1", ["bounds", "rero", "--kappa", "0.01", "--mu", "1"], False),
    ("ppds bounds epsilon (prv, σ 1, q 0.01, 1000 steps)",
     ["bounds", "epsilon", "--noise-multiplier", "1", "--sample-rate", "0.01", "--steps", "1000",
      "--delta", "1e-5"], False),
    ("ppds plugins list (warm cache)", ["plugins", "list"], False),
    ("ppds plugins list (cold cache)", ["plugins", "list"], True),
]


def _env(cache: str) -> dict[str, str]:
    return dict(os.environ, PPDS_CACHE_DIR=cache, COLUMNS="200")


def run_once(argv: list[str], cache: str, importtime: bool = False) -> tuple[float, str]:
    cmd = [sys.executable, *(["-X", "importtime"] if importtime else []), "-m", "ppds_core.cli", *argv]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          env=_env(cache), timeout=600)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    return seconds, done.stderr


def imports_torch(argv: list[str], cache: str) -> bool:
    _, err = run_once(argv, cache, importtime=True)
    return re.search(r"\|\s+torch\s*$", err, re.MULTILINE) is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="runs per command (default 5)")
    args, _ = parser.parse_known_args(argv)  # run.py passes every benchmark's options through
    times: dict[str, list[float]] = {label: [] for label, _, _ in COMMANDS}
    with tempfile.TemporaryDirectory() as warm:
        run_once(["plugins", "list"], warm)  # fills the warm cache
        for _ in range(args.rounds):
            for label, cmd, cold in COMMANDS:
                if cold:
                    with tempfile.TemporaryDirectory() as empty:
                        times[label].append(run_once(cmd, empty)[0])
                else:
                    times[label].append(run_once(cmd, warm)[0])
        torch = {label: imports_torch(cmd, warm) for label, cmd, cold in COMMANDS if not cold}
    load = os.getloadavg()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} "
          f"(1 / 5 / 15 min); Python {platform.python_version()}; median of {args.rounds} runs\n")
    print("| command | median s | min s | max s | imports torch |")
    print("| --- | --- | --- | --- | --- |")
    for label, _, cold in COMMANDS:
        t = times[label]
        flag = "yes" if cold or torch[label] else "no"  # a cold cache imports every plugin
        print(f"| {label} | {statistics.median(t):.2f} | {min(t):.2f} | {max(t):.2f} | {flag} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
