"""`ppds run CONFIG --out DIR [--shard I/N] [--smoke] [--check] [--quiet]`."""

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
    p.set_defaults(func=_run)


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


def _run(args) -> int:
    from ..matrix.runner import run_matrix

    out = str(Path(args.out).expanduser()) if args.out else None  # a quoted '~/x' means home too
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
