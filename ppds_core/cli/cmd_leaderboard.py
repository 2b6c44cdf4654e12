"""`ppds leaderboard DIR [DIR …] [--format md|html|csv|json|tex] [--output FILE] [--smoke] [--full]`.

The table (terminal, md, html, tex) is compact by default: each attack reports
many numbers, so only its headline measurements and any raised violation flag
get a column; ``--full`` shows every one. csv and json always carry everything.
Without ``--format`` a terminal gets tables fitted to its width and a pipe or
file gets the complete Markdown board.
"""

from __future__ import annotations

import shlex
import sys
import tempfile
from pathlib import Path

from ..errors import ConfigError
from ._output import console

FORMATS = ("md", "html", "csv", "json", "tex")  # report.leaderboard.FORMATS, without importing pandas

ORDER = 40


def register(sub) -> None:
    p = sub.add_parser(
        "leaderboard", help="render the results in one or more run folders",
        description="Render the results in one or more run folders. The attack table is compact by default: "
                    "each attack's headline measurements (e.g. AUC, TPR at 1 % FPR, empirical ε lower "
                    "bound) and every raised violation flag; --full shows every measurement. csv and json "
                    "always carry every measurement.")
    p.add_argument("dirs", nargs="+", metavar="DIR", help="run folders (several are merged into one board)")
    p.add_argument("--format", choices=FORMATS,
                   help="md, html, csv, json or tex (LaTeX, booktabs); default: tables fitted to the terminal, "
                        "or the Markdown board when standard output is not a terminal")
    p.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of standard output")
    p.add_argument("--smoke", action="store_true", help="show the smoke-run rows (never mixed with real ones)")
    p.add_argument("--title", help="title of the board")
    p.add_argument("--full", action="store_true",
                   help="one column per attack measurement (terminal, md, html, tex); default: headlines only")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from ..report.leaderboard import build_board, load_rows, print_board, render

    rows = load_rows(args.dirs)
    part = [r for r in rows if bool(r.get("smoke")) == args.smoke]
    if not part:
        other = len(rows) - len(part)
        hint = (f"; {other} {'real' if args.smoke else 'smoke-run'} rows are there "
                f"({'drop' if args.smoke else 'add'} --smoke to see them)") if other else ""
        raise ConfigError(f"no {'smoke-run' if args.smoke else 'real'} results in {', '.join(args.dirs)}{hint}")
    board = build_board(part, title=args.title)
    again = ["ppds", "leaderboard", *args.dirs, *(["--smoke"] if args.smoke else []), "--full"]
    board.full_hint = f"`{shlex.join(again)}`, or --format csv / json"
    if args.format is None:
        print_board(board, console, full=args.full)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        if args.format == "html":
            from ..report.plots import make_plots

            board.plots = make_plots(part, Path(tmp))
        text = render(board, args.format, full=args.full)
    if args.output:
        target = Path(args.output).expanduser()
        if target.is_dir():
            raise ConfigError(f"--output {target}: is a folder; pass a file name, e.g. {target / 'board.md'}")
        try:
            target.write_text(text, encoding="utf-8")
        except OSError as err:
            raise ConfigError(f"--output {target}: cannot write ({err.strerror})") from None
    else:
        sys.stdout.write(text)
    return 0
