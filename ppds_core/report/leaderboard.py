"""The leaderboard: results rows → one table, rendered as Markdown, HTML, CSV, JSON, LaTeX, terminal.

One row per (dataset, generator, ε), mean ± std over seeds (or a single
seed's confidence interval); one column per measurement name with ↑ / ↓ for
higher / lower is better; the best private row per (dataset, ε) in bold,
unless it is within noise of the runner-up (:mod:`._marks`). Reference rows — the non-private ε = ∞ recipe and
the ``real-data`` row (the private split itself, measured and attacked) — sit in their
own table: they bound what DP generators can reach and must not win a column.

Smoke rows (``--smoke``: training cut to a few steps) are never merged with
real rows: a board is built from one kind only, and a smoke board says so in
its title.

Compact and full views: an attack reports many numbers (AUC, TPR at two FPRs,
balanced accuracy, ε lower bound, violation flag …), so one column each makes
a quickstart's attack table ~60 columns wide. The Markdown, HTML and terminal
views are compact by default: of the attack columns they keep the headline
measurements (``Measurement.headline``, written to each row) and every raised
violation flag; ``full=True`` shows every column. CSV and JSON always carry
every measurement — they are for machines, and the results rows stay the
source of truth.

Layout: :mod:`._board` builds the :class:`Board` from rows (with :mod:`._marks`
for the best marks, :mod:`._reasons` for skipped rows and their reasons,
:mod:`._provenance` for the footer), :mod:`._render` turns it into each file
format (:mod:`._tex` for LaTeX), :mod:`._terminal` into width-fitted rich
tables; this module keeps every public name importable from here and writes a
run folder's boards and plots.
"""

from __future__ import annotations

from pathlib import Path

from ..atomic import atomic_write_text
from ..safe_load import inside
from ._board import (
    SEEDED_NOISE_WARNING,
    SMOKE_TITLE,
    Board,
    BoardRow,
    Column,
    Entry,
    build_board,
    load_rows,
)
from ._render import (
    FORMATS,
    FULL_FORMATS,
    render,
    render_csv,
    render_html,
    render_json,
    render_md,
)
from ._terminal import print_board, render_rich
from ._tex import render_tex

# The public names stay importable from here: the board (ppds_core.report._board) and its
# views (ppds_core.report._render) are split by job, this module writes a run folder's files.
__all__ = ["Board", "BoardRow", "Column", "Entry", "FORMATS", "FULL_FORMATS", "SEEDED_NOISE_WARNING",
           "SMOKE_TITLE", "build_board", "load_rows", "print_board", "render", "render_csv", "render_html",
           "render_json", "render_md", "render_rich", "render_tex", "write_leaderboards"]


def _write(path: Path, text: str) -> Path:
    atomic_write_text(path, text)  # a link planted at the name is replaced, not written through
    return path


def write_leaderboards(run_dir: str | Path) -> list[Path]:
    """Plots and ``leaderboard.{md,html,csv,json,tex}`` of a run folder (smoke rows apart).

    Real rows → ``leaderboard.*`` and ``plots/``; smoke rows →
    ``leaderboard-smoke.*`` and ``plots-smoke/``. The md, html and tex boards
    are compact; ``leaderboard-full.{md,html}`` (``leaderboard-smoke-full.*``)
    beside them show every column, and the csv and json always do. A
    smoke-only folder gets no (empty) ``leaderboard.*``.
    """
    from .plots import make_plots

    run_dir = Path(run_dir)
    if not (run_dir / "results.jsonl").exists():  # e.g. an empty shard, or only fits so far
        return []
    rows = load_rows([run_dir])
    written: list[Path] = []
    for smoke, stem, plots in ((False, "leaderboard", "plots"), (True, "leaderboard-smoke", "plots-smoke")):
        part = [r for r in rows if bool(r.get("smoke")) == smoke]
        if not part and (smoke or rows):  # a smoke-only folder gets no empty real board
            continue
        board = build_board(part)
        board.plots = make_plots(part, inside((run_dir / plots).absolute(), run_dir, "the plots folder"))
        written += board.plots
        for fmt in FORMATS:
            full = fmt if fmt in FULL_FORMATS else "md"  # no leaderboard-full.tex: --full --format tex
            board.full_hint = f"`{stem}-full.{full}` beside this file, or `{stem}.csv` / `{stem}.json`"
            written.append(_write(run_dir / f"{stem}.{fmt}", render(board, fmt)))
            if fmt in FULL_FORMATS:
                written.append(_write(run_dir / f"{stem}-full.{fmt}", render(board, fmt, full=True)))
    return written
