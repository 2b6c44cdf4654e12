"""`ppds worker DIR [--config CONFIG [--smoke]] [--units all|gpu|cpu] [--lease-s S] [--id ID]
[--retry-failed] [--quiet]`."""

from __future__ import annotations

ORDER = 31


def register(sub) -> None:
    p = sub.add_parser(
        "worker", help="claim and run units of a shared run folder until none is left",
        description="Join the run in DIR (its provenance.json holds the matrix): repeatedly claim "
                    "the next unclaimed unit (a cell's fit, a shadow fit, one measurement), run it, "
                    "record it; exit when nothing is left. Start any number on one folder "
                    "(docs/matrix.md, 'Running on a cluster').")
    p.add_argument("dir", metavar="DIR", help="the run folder (written by `ppds run CONFIG --out DIR`)")
    p.add_argument("--config", metavar="CONFIG",
                   help="first write this matrix into DIR (as `ppds run CONFIG --out DIR --worker` "
                        "does); without it DIR must hold one already")
    p.add_argument("--smoke", action="store_true", help="with --config: the smoke version of the matrix")
    add_worker_options(p)
    p.add_argument("--retry-failed", action="store_true",
                   help="first forget the units workers recorded as failed, so they run again "
                        "(only while no other worker runs on DIR)")
    p.add_argument("--quiet", action="store_true", help="no line per unit")
    p.set_defaults(func=_worker)


def add_worker_options(p) -> None:
    p.add_argument("--units", choices=("all", "gpu", "cpu"), default="all",
                   help="which units to take: gpu = fits of generators whose `resources` ask for "
                        "GPUs, cpu = everything else (default: all)")
    p.add_argument("--lease-s", type=float, default=60.0, metavar="S",
                   help="a claim not renewed for S seconds is a dead worker's and is taken over "
                        "(default 60)")
    p.add_argument("--id", dest="worker_id", metavar="ID",
                   help="this worker's name in claims and `ppds status` (default: host and pid, "
                        "or the SLURM array task)")


def _worker(args) -> int:
    from pathlib import Path

    from ..matrix._launch import prepare_folder
    from ..matrix._worker import run_worker

    out = Path(args.dir).expanduser()
    if args.config:
        prepare_folder(args.config, out, smoke=args.smoke, retry_failed=args.retry_failed)
    elif args.smoke:
        from ..errors import ConfigError

        raise ConfigError("--smoke goes with --config (the folder's matrix says whether it is a smoke run)")
    result = run_worker(out, worker=args.worker_id, lease_s=args.lease_s, units=args.units,
                        quiet=args.quiet, retry_failed=args.retry_failed and not args.config)
    return report(result, args.quiet)


def report(result, quiet: bool) -> int:
    """A worker's last line (its units, failures, wait); exit 1 when a unit it ran failed."""
    from ._output import console

    if not quiet:
        failed = sum(u["status"] == "failed" for u in result.units)
        console.print(f"worker {result.worker}: {len(result.units)} units ({failed} failed), waited "
                      f"{result.waited_s:.0f}s; nothing left"
                      + ("; leaderboard written" if result.wrote_boards else ""), markup=False,
                      highlight=False)
    return 1 if any(u["status"] == "failed" for u in result.units) else 0
