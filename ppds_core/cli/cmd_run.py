"""`ppds run CONFIG --out DIR [--shard I/N | --worker | --launcher slurm|local --workers N] [--smoke]
[--check] [--quiet]`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..matrix.runner import RunSummary

ORDER = 30


def register(sub) -> None:
    p = sub.add_parser("run", help="run a matrix (YAML): fit, sample, measure, attack; resumable")
    p.add_argument("config", help="matrix YAML file (docs/matrix.md)")
    add_run_options(p, out_required=False)
    p.add_argument("--check", action="store_true",
                   help="validate the config and its data, list the cells (with --out DIR: which are "
                        "done there already), run nothing")
    p.add_argument("--retry-skipped", action="store_true",
                   help="recompute skipped measurements too (e.g. after installing missing weights)")
    add_cluster_options(p)
    p.set_defaults(func=_run)


def add_cluster_options(p) -> None:
    """``--worker`` and ``--launcher``: docs/matrix.md, "Running on a cluster"."""
    from .cmd_worker import add_worker_options

    g = p.add_argument_group("workers and clusters (docs/matrix.md, 'Running on a cluster')")
    g.add_argument("--worker", action="store_true",
                   help="write the matrix into DIR, then claim and run its units until none is left "
                        "(start several on one folder)")
    g.add_argument("--launcher", choices=("slurm", "local"),
                   help="submit --workers N workers as a job array with submitit "
                        "(pip install 'ppds[slurm]'); local: as local processes")
    g.add_argument("--workers", type=int, default=1, metavar="N", help="workers to submit (default 1)")
    g.add_argument("--cpu-workers", type=int, metavar="M",
                   help="CPU workers besides the N GPU workers when some generator asks for GPUs "
                        "(default N)")
    g.add_argument("--partition", help="SLURM partition of the workers")
    g.add_argument("--cpu-partition", metavar="PARTITION",
                   help="SLURM partition of the CPU workers, when some generator asks for GPUs "
                        "(default: --partition)")
    g.add_argument("--time", type=float, metavar="MIN", help="each worker job's time limit, minutes "
                   "(default: the generators' resources.time_min, else 720); a worker out of time "
                   "requeues itself")
    g.add_argument("--gpus-per-worker", type=int, metavar="G")
    g.add_argument("--cpus-per-worker", type=int, metavar="C")
    g.add_argument("--mem-gb", type=float, metavar="GB")
    g.add_argument("--no-wait", action="store_true", help="--launcher local: return once submitted")
    g.add_argument("--retry-failed", action="store_true",
                   help="with --worker or --launcher: run the units workers recorded as failed again")
    add_worker_options(g)


def add_run_options(p, out_required: bool, default_out: str | None = None) -> None:
    p.add_argument("--out", metavar="DIR", required=out_required, default=default_out,
                   help="run folder: results.jsonl, cells/, leaderboard.*, plots/, run.log")
    p.add_argument("--shard", metavar="I/N", help="run only shard I of N (1-based; stable by cell hash)")
    p.add_argument("--smoke", action="store_true",
                   help="every plugin cut to a few steps: checks the config end to end quickly")
    p.add_argument("--quiet", action="store_true", help="no progress bars or tables; errors still print")


def print_cells(summary: RunSummary) -> None:
    """The cells, and with ``--out DIR`` what a run into DIR would do with each."""
    from rich.table import Table

    from ..budget import format_epsilon
    from ._output import console

    states = summary.states
    if states is None:
        title = f"{len(summary.cells)} cells would run"
    else:
        done = states.count("done")
        title = f"{len(summary.cells)} cells: {done} done, {len(states) - done} to run"
    t = Table(title=title)
    for h in ("#", "cell folder", "dataset", "public", "generator", "ε", "seed", *(("state",) if states else ())):
        t.add_column(h)
    folders = summary.folders or [None] * len(summary.cells)
    for i, (c, folder) in enumerate(zip(summary.cells, folders, strict=True), 1):
        # the folder the cell's files go to (cells/<id>: recipe + data fingerprint)
        t.add_row(str(i), folder or "—", c.dataset_name, c.dataset.public.name if c.dataset.public else "",
                  c.generator_name, "—" if c.is_reference_data else format_epsilon(c.epsilon, 'ascii'), str(c.seed),
                  *((states[i - 1],) if states else ()))
    console.print(t)


def report_summary(summary: RunSummary, quiet: bool) -> int:
    """The end-of-run output: leaderboard table, what failed, where things are; the exit code."""
    from rich.markup import escape

    from ._output import console, err_console

    out = summary.out
    assert out is not None
    smoke = bool(summary.cells and summary.cells[0].smoke)
    if not quiet and (Path(out) / "results.jsonl").exists():
        try:
            from ..report.leaderboard import build_board, load_rows, print_board

            part = [r for r in load_rows([out]) if bool(r.get("smoke")) == smoke]
            if part:
                board = build_board(part)
                full = f"{'leaderboard-smoke' if smoke else 'leaderboard'}-full.md"
                again = f"ppds leaderboard {out}{' --smoke' if smoke else ''} --full"
                board.full_hint = f"{Path(out) / full}, or `{again}`"
                print_board(board, console)  # Markdown, complete, when stdout is not a terminal
        except Exception as err:  # the table is a courtesy; the files are the result
            err_console.print(f"[yellow]could not render the leaderboard table: {escape(str(err))}[/]")
    if not quiet:
        stem = "leaderboard-smoke" if smoke else "leaderboard"
        console.print(
            f"{len(summary.cells)} cells: {summary.fits} fitted, {summary.loaded} loaded, "
            f"{summary.computed} measurements computed, {summary.cached} cached, "
            f"{summary.skipped} skipped, {len(summary.failed)} failed in {summary.seconds:.1f}s\n"
            f"results: {Path(out) / 'results.jsonl'}   leaderboard: {Path(out) / (stem + '.md')}"
            f"   log: {Path(out) / 'run.log'}", markup=False, highlight=False,
        )
    if summary.failed:
        err_console.print(f"[red]{len(summary.failed)} failed[/] (tracebacks in "
                          f"{escape(str(Path(out) / 'run.log'))}):")
        for f in summary.failed:
            err_console.print(f"  {f['label']} — {f['kind']} {f['name']}: {f['error']}", highlight=False,
                              markup=False)
    return summary.exit_code


def _cluster(args, out: str | None) -> int | None:
    """``--worker`` / ``--launcher``: the exit code, or None for an ordinary run."""
    if not (args.worker or args.launcher):
        return None
    from ..errors import ConfigError

    if out is None or args.check or args.shard:
        raise ConfigError("--worker and --launcher need --out DIR and go without --check and --shard "
                          "(workers share the folder's units instead)")
    from ._output import console

    if args.worker:
        from ..matrix._launch import work_on

        result = work_on(args.config, out, smoke=args.smoke, retry_failed=args.retry_failed,
                         lease_s=args.lease_s, units=args.units, quiet=args.quiet, worker=args.worker_id)
        from .cmd_worker import report

        return report(result, args.quiet)
    from ..matrix._launch import launch

    done = launch(args.config, out, launcher=args.launcher, workers=args.workers, smoke=args.smoke,
                  cpu_workers=args.cpu_workers, partition=args.partition,
                  cpu_partition=args.cpu_partition, time_min=args.time,
                  gpus_per_worker=args.gpus_per_worker, cpus_per_worker=args.cpus_per_worker,
                  mem_gb=args.mem_gb, lease_s=args.lease_s, wait=False if args.no_wait else None,
                  retry_failed=args.retry_failed)
    for a in done.arrays:
        console.print(f"submitted {a['workers']} {a['units']} workers ({a['gpus']} GPUs each): "
                      f"jobs {', '.join(a['job_ids'])}", markup=False, highlight=False)
    console.print(f"follow them with `ppds status {out}`", markup=False, highlight=False)
    failed = [u for r in done.results for u in r["units"] if u["status"] == "failed"]
    return 1 if failed else 0


def _run(args) -> int:
    from ..matrix.runner import run_matrix

    out = str(Path(args.out).expanduser()) if args.out else None  # a quoted '~/x' means home too
    code = _cluster(args, out)
    if code is not None:
        return code
    summary = run_matrix(args.config, out, shard=args.shard, smoke=args.smoke, check=args.check,
                         quiet=args.quiet, retry_skipped=args.retry_skipped)
    if summary.check_only:
        if not args.quiet:
            from rich.markup import escape

            from ._output import console

            print_cells(summary)
            console.print(f"[green]{escape(args.config)}: valid[/]; data available; nothing was run")
        return 0
    return report_summary(summary, args.quiet)
