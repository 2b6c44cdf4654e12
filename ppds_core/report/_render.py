"""The leaderboard's views: a :class:`~._board.Board` as Markdown, HTML, CSV, JSON or rich tables.

Markdown, HTML and the terminal are compact unless ``full``: of the attack
columns they keep the headlines and every raised violation flag
(:func:`_shown`); CSV and JSON always carry every measurement.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import pandas as pd

from ..budget import encode_float, format_epsilon
from ..errors import ConfigError
from ._board import SEEDED_NOISE_WARNING, Board, BoardRow, Column, Entry

__all__ = ["FORMATS", "FULL_FORMATS", "render", "render_csv", "render_html", "render_json", "render_md",
           "render_rich"]

FORMATS = ("md", "html", "csv", "json")
#: formats with a compact and a full view; csv and json always carry every measurement
FULL_FORMATS = ("md", "html")


_SECTIONS = (("metric", "Utility and other metrics"), ("attack", "Attacks (privacy)"))


def _raised(board: Board, col: Column) -> bool:
    """Any row's mean above 0: one seed's violation is enough to keep the column in view."""
    return any((e := r.entries.get(col.name)) is not None and (e.mean or 0) > 0 for r in board.rows)


def _shown(board: Board, col: Column, full: bool) -> bool:
    """Whether a view shows a column. Compact: metrics all (one to three numbers each);
    of the attacks, the headlines and any raised violation flag — never hide a violation."""
    return full or col.kind != "attack" or col.headline or (col.violation and _raised(board, col))


def _sections(board: Board, full: bool = True) -> list[tuple[str, list[Column]]]:
    """Metric columns and attack columns, as separate tables (attacks report many numbers each)."""
    out = []
    for kind, title in _SECTIONS:
        cols = [c for c in board.columns if c.kind == kind and _shown(board, c, full)]
        if cols:
            out.append((title, cols))
    rest = [c for c in board.columns if c.kind not in {k for k, _ in _SECTIONS}]
    if rest:
        out.append(("Other", rest))
    return out


def _tables(board: Board, rows: list[BoardRow], full: bool) -> list[tuple[str, list[BoardRow], list[Column]]]:
    """(section title, its rows, its columns) for one group of rows (private or reference).
    The compact view also drops a column no row of the table has an entry in: e.g. an
    attack that only the ε = ∞ references skipped leaves a column of dashes otherwise."""
    out = []
    for title, cols in _sections(board, full):
        part = [r for r in rows if any(c.name in r.entries for c in cols)]
        if not full:
            cols = [c for c in cols if any(c.name in r.entries for r in part)]
        out.append((title, part, cols))
    return out


def _compact_note(board: Board, full: bool) -> str | None:
    """One line saying the view is compact and where every column is; None if nothing is hidden."""
    attack = [c for c in board.columns if c.kind == "attack"]
    shown = [c for c in attack if _shown(board, c, full)]
    if full or len(shown) == len(attack):
        return None
    return (f"Compact view: each attack's headline measurements and any raised violation flag "
            f"({len(shown)} of {len(attack)} attack columns). Every column: {board.full_hint}.")


def _table_md(board: Board, rows: list[BoardRow], columns: list[Column]) -> list[str]:
    head = ["dataset", "generator", "ε", "ε spent", "seeds"] + [c.header for c in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.dataset, r.generator, r.epsilon_text, r.spent_text, str(r.seeds)]
        for c in columns:
            e = r.entries.get(c.name, Entry())
            cells.append(f"**{e.text()}**" if e.best else e.text())
        lines.append("| " + " | ".join(x.replace("|", "\\|") for x in cells) + " |")
    return lines


def render_md(board: Board, full: bool = False) -> str:
    out = [f"# {board.title}", ""]
    if board.smoke:
        out += ["> **Smoke run.** Training was cut to a few steps to check the matrix end to end; "
                "these numbers say nothing about the methods.", ""]
    if not board.rows:
        return "\n".join(out + ["No results yet.", ""])
    if board.violations:
        out += ["> **⚠ Privacy claim violated.** An attack's empirical ε lower bound (95 % confidence) "
                "exceeds the ε the ledger claims:", ">"] + [f"> - {v}" for v in board.violations] + [""]
    if board.seeded_noise:
        out += [f"> **{SEEDED_NOISE_WARNING}:** " + ", ".join(board.seeded_noise) + ".", ""]
    out += ["↑ higher is better, ↓ lower is better; **bold** = best private row of its dataset; "
            "mean ± std over seeds.", ""]
    note = _compact_note(board, full)
    out += [note, ""] if note else []
    for title, rows, cols in _tables(board, board.main_rows, full):
        out += [f"## {title}", ""] + (_table_md(board, rows, cols) if rows else ["No private rows."]) + [""]
    if board.reference_rows:
        out += ["## Reference rows", "",
                "Not competitors: ε = ∞ is each recipe without DP; `real-data` evaluates the metrics "
                "on the private split itself and attacks it as the release (the leakage ceiling).", ""]
        for title, rows, cols in _tables(board, board.reference_rows, full):
            if rows:
                out += [f"### {title}", ""] + _table_md(board, rows, cols) + [""]
    if board.notes:
        out += ["## Failed and skipped", ""] + [f"- {n}" for n in board.notes]
    if board.sources:
        out += ["", "Sources: " + ", ".join(f"`{s}`" for s in board.sources)]
    return "\n".join(out) + "\n"


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f0f0f0;cursor:pointer;user-select:none}
td:nth-child(-n+2),th:nth-child(-n+2){text-align:left}
td.best{font-weight:bold;background:#e8f5e9}td.failed{color:#b00020}td.skipped{color:#888}
.smoke{background:#fff3cd;border:1px solid #e0c060;padding:.6em}
img{max-width:480px;margin:4px;border:1px solid #ddd}
.plots{display:flex;flex-wrap:wrap}"""

_JS = """document.querySelectorAll('table.sortable th').forEach(function(th,i){th.addEventListener('click',
function(){var t=th.closest('table'),b=t.tBodies[0],rs=Array.from(b.rows),asc=th.dataset.asc!=='1';
th.dataset.asc=asc?'1':'0';rs.sort(function(x,y){var a=x.cells[i].dataset.v||x.cells[i].textContent,
c=y.cells[i].dataset.v||y.cells[i].textContent,fa=parseFloat(a),fc=parseFloat(c);
var r=(!isNaN(fa)&&!isNaN(fc))?fa-fc:a.localeCompare(c);return asc?r:-r;});
rs.forEach(function(r){b.appendChild(r);});});});"""


def _table_html(board: Board, rows: list[BoardRow], columns: list[Column]) -> str:
    esc = html.escape
    head = ["dataset", "generator", "ε", "ε spent", "seeds"] + [c.header for c in columns]
    out = ['<table class="sortable"><thead><tr>' + "".join(f"<th>{esc(h)}</th>" for h in head)
           + "</tr></thead><tbody>"]
    for r in rows:
        eps_v = format_epsilon(r.epsilon, "sort")
        tds = [f"<td>{esc(r.dataset)}</td>", f"<td>{esc(r.generator)}</td>",
               f'<td data-v="{eps_v}">{esc(r.epsilon_text)}</td>', f"<td>{esc(r.spent_text)}</td>",
               f"<td>{r.seeds}</td>"]
        for c in columns:
            e = r.entries.get(c.name, Entry())
            cls = "best" if e.best else e.status
            title = f' title="{esc(e.error)}"' if e.error else ""
            v = f' data-v="{e.mean}"' if e.mean is not None else ""
            body = f"<strong>{esc(e.text())}</strong>" if e.best else esc(e.text())
            tds.append(f'<td class="{cls}"{v}{title}>{body}</td>')
        out.append("<tr>" + "".join(tds) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _code_spans(text: str) -> str:
    """Markdown-style `code` in an already escaped line → <code>…</code>."""
    chunks = text.split("`")
    return "".join(f"<code>{c}</code>" if i % 2 else c for i, c in enumerate(chunks))


def render_html(board: Board, full: bool = False) -> str:
    esc = html.escape
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{esc(board.title)}</title>",
             f"<style>{_CSS}</style></head><body>", f"<h1>{esc(board.title)}</h1>"]
    if board.smoke:
        parts.append('<p class="smoke"><b>Smoke run.</b> Training was cut to a few steps to check the matrix '
                     "end to end; these numbers say nothing about the methods.</p>")
    if not board.rows:
        parts.append("<p>No results yet.</p>")
    else:
        if board.violations:
            parts.append('<div class="smoke"><b>⚠ Privacy claim violated.</b> An attack\'s empirical ε lower '
                         "bound (95 % confidence) exceeds the ε the ledger claims:<ul>"
                         + "".join(f"<li>{esc(v)}</li>" for v in board.violations) + "</ul></div>")
        if board.seeded_noise:
            parts.append(f'<div class="smoke"><b>{_code_spans(esc(SEEDED_NOISE_WARNING))}:</b> '
                         + esc(", ".join(board.seeded_noise)) + ".</div>")
        parts.append("<p>↑ higher is better, ↓ lower is better; <b>bold</b> = best private row of its dataset; "
                     "mean ± std over seeds. Click a column header to sort.</p>")
        note = _compact_note(board, full)
        if note:
            parts.append(f"<p>{_code_spans(esc(note))}</p>")
        for title, rows, cols in _tables(board, board.main_rows, full):
            parts.append(f"<h2>{esc(title)}</h2>")
            parts.append(_table_html(board, rows, cols) if rows else "<p>No private rows.</p>")
        if board.reference_rows:
            parts.append("<h2>Reference rows</h2><p>Not competitors: ε = ∞ is each recipe without DP; "
                         "<code>real-data</code> evaluates the metrics on the private split itself and attacks "
                         "it as the release (the leakage ceiling).</p>")
            for title, rows, cols in _tables(board, board.reference_rows, full):
                if rows:
                    parts.append(f"<h3>{esc(title)}</h3>" + _table_html(board, rows, cols))
    if board.notes:
        parts.append("<h2>Failed and skipped</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in board.notes) + "</ul>")
    if board.plots:
        parts.append('<h2>Plots</h2><div class="plots">')
        for p in board.plots:
            data = base64.b64encode(Path(p).read_bytes()).decode()
            parts.append(f'<figure><img alt="{esc(Path(p).stem)}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{esc(Path(p).stem)}</figcaption></figure>")
        parts.append("</div>")
    if board.sources:
        parts.append("<p>Sources: " + ", ".join(f"<code>{esc(s)}</code>" for s in board.sources) + "</p>")
    parts.append(f"<script>{_JS}</script></body></html>")
    return "\n".join(parts) + "\n"


def _flat(board: Board) -> list[dict[str, Any]]:
    out = []
    for r in board.rows:
        d: dict[str, Any] = {"dataset": r.dataset, "generator": r.generator,
                             "epsilon": encode_float(r.epsilon),
                             "epsilon_spent": encode_float(r.epsilon_spent),
                             "seeds": r.seeds, "reference": r.reference, "smoke": board.smoke}
        for c in board.columns:
            e = r.entries.get(c.name, Entry())
            d[c.name] = e.mean
            d[f"{c.name} std"] = e.std
            d[f"{c.name} status"] = e.status
            d[f"{c.name} best"] = e.best
        out.append(d)
    return out


def render_csv(board: Board) -> str:
    return pd.DataFrame(_flat(board)).to_csv(index=False)


def render_json(board: Board) -> str:
    rows = []
    for r, flat in zip(board.rows, _flat(board), strict=True):
        rows.append({k: flat[k] for k in ("dataset", "generator", "epsilon", "epsilon_spent", "seeds", "reference")}
                    | {"values": {c.name: r.entries.get(c.name, Entry()).to_dict() for c in board.columns}})
    data = {"title": board.title, "smoke": board.smoke,
            "columns": [{"name": c.name, "kind": c.kind, "higher_is_better": c.higher_is_better,
                         "headline": c.headline} for c in board.columns],
            "rows": rows, "notes": board.notes, "violations": board.violations, "sources": board.sources}
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def render(board: Board, fmt: str, full: bool = False) -> str:
    """``fmt`` text of the board; ``full`` matters for md and html only (csv and json hold every column)."""
    if fmt in FULL_FORMATS:
        return {"md": render_md, "html": render_html}[fmt](board, full)
    renderers = {"csv": render_csv, "json": render_json}
    if fmt not in renderers:
        raise ConfigError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return renderers[fmt](board)


def render_rich(board: Board, full: bool = False):
    """Rich tables for the terminal, transposed: one row per measurement, one column per
    (generator, ε) — a matrix has few cells but attacks report many numbers each.
    Compact unless ``full`` (see :func:`_compact_note`)."""
    from rich.console import Group
    from rich.table import Table

    tables = []
    for dataset in dict.fromkeys(r.dataset for r in board.rows):
        rows = [r for r in board.rows if r.dataset == dataset]
        rows = [r for r in rows if not r.reference] + [r for r in rows if r.reference]
        t = Table(title=f"{board.title} — {dataset}" if len(board.rows) else board.title, show_lines=False)
        t.add_column("measurement")
        for r in rows:
            ref = " (ref)" if r.reference else ""
            t.add_column(f"{r.generator}\nε={r.epsilon_text}{ref}" if r.generator != "real-data" else "real-data\n(ref)",
                         justify="right")
        t.add_row("ε spent", *[r.spent_text for r in rows], end_section=True)
        for _title, _rows, cols in _tables(board, rows, full):
            for j, c in enumerate(cols):
                cells = []
                for r in rows:
                    e = r.entries.get(c.name, Entry())
                    style = {"failed": "red", "skipped": "dim"}.get(e.status)
                    text = e.text()
                    cells.append(f"[bold green]{text}[/]" if e.best else f"[{style}]{text}[/]" if style else text)
                t.add_row(c.header, *cells, end_section=j == len(cols) - 1)
        tables.append(t)
    from rich.text import Text

    note = _compact_note(board, full)
    if note:
        tables.append(Text(note.replace("`", ""), style="dim"))
    if board.violations:
        tables.append(Text("⚠ privacy claim violated (empirical ε lower bound > ε spent):\n  "
                           + "\n  ".join(board.violations), style="bold red"))
    return Group(*tables)
