"""The board in a terminal: rows = (generator, ε), a handful of headline columns that fit its width.

Like the Markdown board, one row per (generator, ε) — private rows, then the
references after a gap — and one table per dataset and section (metrics,
attacks). The columns are chosen for the width the console gives
(:func:`layout`): raised violation flags first, then one headline per evaluator
(round robin, so each attack shows its first headline before any shows its
second), never a column no row measured; the rest are named in a line below,
with where to find them (``--full`` shows every column, in as many tables as
the width needs). A measurement name is never cut: a header wraps at its
hyphens (:func:`wrap_header`) and every column is at least as wide as its
longest piece; cells wrap rather than end in ``…``. Cells hold the value with
its mark (``*`` best, ``≈`` best within noise) and, on a second line, ``± std``
or the ``[lo, hi]`` interval.

``ppds leaderboard`` prints this only on a terminal; piped, it prints the
Markdown board (:func:`print_board`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ._board import Board, BoardRow, Column, Entry
from ._render import _compact_note, _raised, _tables, render

__all__ = ["TermTable", "layout", "print_board", "render_rich", "wrap_header"]

#: the separator and padding rich adds between two columns (box SIMPLE_HEAD, no edge)
_GAP = 3
_LEGEND = ("* best private row of its dataset at that ε; ≈ best, but within noise (runner-up inside its "
           "CI or ± one std); never marked: ties, violation flags, one-sided bounds; ↑/↓ higher/lower "
           "is better; second line: ± std over seeds, or [lo, hi] (one seed's CI); the last rows, "
           "after a gap, are references (ε = ∞, real data), never marked.")


def wrap_header(header: str, width: int) -> list[str]:
    """``header`` in lines of at most ``width`` (or its longest piece), broken after hyphens only,
    so the lines joined give the header back: ``reconstruction-`` / ``success-rate ↓``."""
    name, arrow = (header[:-2], header[-2:]) if header.endswith((" ↑", " ↓")) else (header, "")
    pieces = re.findall(r"[^-]*-|[^-]+$", name) or [""]
    pieces[-1] += arrow
    lines: list[str] = []
    for piece in pieces:
        if lines and len(lines[-1]) + len(piece) <= width:
            lines[-1] += piece
        else:
            lines.append(piece)
    return lines


def _piece_width(header: str) -> int:
    return max(len(p) for p in wrap_header(header, 0))


def _cell_lines(e: Entry) -> list[str]:
    mark = "*" if e.best else "≈" if e.within_noise else ""
    unc = e.uncertainty_text()
    if e.ci_high is None and e.ci_low == e.mean and e.std is None:
        unc = ""  # "0 [≥ 0]": a one-sided interval ending at the value says nothing here
    return [e.value_text() + mark] + ([unc] if unc else [])


#: a header taller than this many lines gets a wider column instead
_HEADER_LINES = 3


def _width(board_rows: list[BoardRow], col: Column) -> int:
    """The column's width: its cells and its longest header piece, widened until the header
    wraps into at most :data:`_HEADER_LINES` lines."""
    cells = [line for r in board_rows for line in _cell_lines(r.entries.get(col.name, Entry()))]
    w = max([_piece_width(col.header), *map(len, cells)])
    while len(wrap_header(col.header, w)) > _HEADER_LINES:
        w += 1
    return w


@dataclass
class TermTable:
    """One terminal table: its rows (private, then references), the columns shown and their widths."""

    title: str
    rows: list[BoardRow]
    n_private: int
    columns: list[Column]
    widths: list[int]
    #: columns of this table left out to fit the width
    hidden: list[Column] = field(default_factory=list)
    #: columns no row of this table measured (skipped or failed everywhere), left out
    empty: list[Column] = field(default_factory=list)


def _labels(rows: list[BoardRow]) -> list[int]:
    return [max(len("generator"), *(len(r.generator) for r in rows)), max(3, *(len(_eps(r)) for r in rows))]


def _eps(r: BoardRow) -> str:
    return "—" if r.generator == "real-data" else r.epsilon_text


def _priority(board: Board, cols: list[Column]) -> list[Column]:
    """Raised flags first, then round robin over evaluators (each one's first headline, then seconds)."""
    rank: dict[str, int] = {}
    seen: dict[str | None, int] = {}
    for c in cols:
        key = c.evaluator or c.name
        rank[c.name] = seen.get(key, 0)
        seen[key] = rank[c.name] + 1
    order = {c.name: i for i, c in enumerate(cols)}
    return sorted(cols, key=lambda c: (not (c.violation and _raised(board, c)), rank[c.name], order[c.name]))


def _fit(labels: list[int], cols: list[tuple[Column, int]], width: int) -> list[list[tuple[Column, int]]]:
    """Consecutive chunks of ``cols`` whose tables fit ``width`` (a lone column that does not fit
    gets a table of its own: rich wraps its cells rather than cut them)."""
    chunks: list[list[tuple[Column, int]]] = [[]]
    used = sum(labels) + _GAP * (len(labels) - 1)
    for col, w in cols:
        if chunks[-1] and used + _GAP + w > width:
            chunks.append([])
            used = sum(labels) + _GAP * (len(labels) - 1)
        chunks[-1].append((col, w))
        used += _GAP + w
    return chunks


def layout(board: Board, width: int, full: bool = False) -> list[TermTable]:
    """The terminal tables for ``width`` columns: compact (what fits, by :func:`_priority`) or
    ``full`` (every column, split into as many tables as needed)."""
    out = []
    for dataset in dict.fromkeys(r.dataset for r in board.rows):
        mine = [r for r in board.rows if r.dataset == dataset]
        rows = [r for r in mine if not r.reference] + [r for r in mine if r.reference]
        for title, part, cols in _tables(board, rows, full):
            if not part or not cols:
                continue
            labels = _labels(part)
            empty = [] if full else [c for c in cols if not any(
                r.entries.get(c.name, Entry()).status == "ok" for r in part)]
            live = [(c, _width(part, c)) for c in cols if c not in empty]
            heading = f"{board.title} — {dataset} — {title}"
            np_ = sum(not r.reference for r in part)
            if full:
                chunks = _fit(labels, live, width)
                for i, chunk in enumerate(chunks):
                    suffix = f" ({i + 1}/{len(chunks)})" if len(chunks) > 1 else ""
                    out.append(TermTable(heading + suffix, part, np_, [c for c, _ in chunk],
                                         [w for _, w in chunk]))
                continue
            chosen, used = set(), sum(labels) + _GAP * (len(labels) - 1)
            widths = {c.name: w for c, w in live}
            for c in _priority(board, [c for c, _ in live]):
                if not chosen or used + _GAP + widths[c.name] <= width:
                    chosen.add(c.name)
                    used += _GAP + widths[c.name]
            shown = [c for c, _ in live if c.name in chosen]
            out.append(TermTable(heading, part, np_, shown, [widths[c.name] for c in shown],
                                 hidden=[c for c, _ in live if c.name not in chosen], empty=empty))
    return out


def _rich_table(t: TermTable):
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)  # the title goes above it, unwrapped
    table.add_column("generator", overflow="fold")
    table.add_column("ε", justify="right", overflow="fold")
    for c, w in zip(t.columns, t.widths, strict=True):
        table.add_column(Text("\n".join(wrap_header(c.header, w))), justify="right", min_width=w,
                         overflow="fold")
    for i, r in enumerate(t.rows):
        cells = []
        for c in t.columns:
            e = r.entries.get(c.name, Entry())
            style = ("bold green" if e.best else "yellow" if e.within_noise
                     else {"failed": "red", "skipped": "dim", "missing": "dim"}.get(e.status, ""))
            cells.append(Text("\n".join(_cell_lines(e)), style=style))
        table.add_row(Text(r.generator), Text(_eps(r)), *cells, end_section=i == t.n_private - 1)
    return table


class _TerminalBoard:
    """A rich renderable that lays the board out for the width it is given when printed."""

    def __init__(self, board: Board, full: bool):
        self.board, self.full = board, full

    def __rich_console__(self, console, options):
        from rich.text import Text

        board = self.board
        if not board.rows:
            yield Text(f"{board.title}\nNo results yet.")
            return
        if board.violations:
            yield Text("⚠ privacy claim violated (empirical ε lower bound > ε spent):\n  "
                       + "\n  ".join(board.violations), style="bold red")
        tables = layout(board, options.max_width, self.full)
        for t in tables:
            if t.columns:  # a table whose every column went unmeasured is only named below
                yield Text(t.title, style="bold")
                yield _rich_table(t)
        yield Text(_LEGEND, style="dim")
        note = _compact_note(board, self.full)
        if note:
            yield Text(note.replace("`", ""), style="dim")
        hidden = list(dict.fromkeys(c.name for t in tables for c in t.hidden))
        if hidden:
            more = "" if note else f" Every column: {board.full_hint.replace('`', '')}."
            yield Text(f"Left out to fit {options.max_width} columns: {', '.join(hidden)}.{more}", style="dim")
        empty = list(dict.fromkeys(c.name for t in tables for c in t.empty))
        if empty:
            yield Text(f"Not measured in any row (skipped or failed): {', '.join(empty)}.", style="dim")
        if board.reasons:
            n = len(board.reasons)
            yield Text(f"{n} skip/failure reason{'s' if n != 1 else ''}: under “Failed and skipped” in the "
                       "Markdown or HTML board (--format md).", style="dim")


def render_rich(board: Board, full: bool = False):
    """A renderable for ``console.print``: the terminal board at the console's width."""
    return _TerminalBoard(board, full)


def print_board(board: Board, console, full: bool = False) -> None:
    """The board on ``console``'s output: the terminal tables on a terminal, else the complete
    Markdown (never cut to a width: a pipe or a file has none)."""
    if console.is_terminal:
        console.print(render_rich(board, full))
    else:
        console.file.write(render(board, "md", full=full))
