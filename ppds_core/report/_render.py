"""The leaderboard's views: a :class:`~._board.Board` as Markdown, HTML, CSV, JSON or LaTeX.

Markdown, HTML, LaTeX and the terminal (:mod:`._terminal`) are compact unless
``full``: of the attack columns they keep the headlines and every raised
violation flag (:func:`_shown`); CSV and JSON always carry every measurement
and every number of it (mean, std, CI ends, seed count, marks).
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

__all__ = ["FORMATS", "FULL_FORMATS", "LEGEND", "cell_text", "render", "render_csv", "render_html",
           "render_json", "render_md"]

FORMATS = ("md", "html", "csv", "json", "tex")
#: formats a run writes in a compact and a full view (``leaderboard-full.*``); tex is compact in a
#: run folder (a paper table), ``--full`` works for it too; csv and json carry every measurement
FULL_FORMATS = ("md", "html")

#: what the marks and numbers mean (Markdown; the other views adapt the markup)
LEGEND = ("↑ higher is better, ↓ lower is better. **Bold**: the best private row of its dataset at "
          "that ε; ≈: best, but within noise (the runner-up lies inside its confidence interval, or "
          "within ± one std over seeds). Never marked: ties, violation flags, and one-sided bounds "
          "(a value at an end of its own interval, e.g. an empirical ε lower bound). Numbers are "
          "mean ± std over seeds, or the value and its confidence interval [lo, hi] (one seed).")


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


def cell_text(e: Entry, bold: tuple[str, str] = ("**", "**")) -> str:
    """An entry with its mark: ``bold`` around the best, `` ≈`` after a best within noise."""
    text = e.text()
    if e.best:
        return f"{bold[0]}{text}{bold[1]}"
    return f"{text} ≈" if e.within_noise else text


def _table_md(board: Board, rows: list[BoardRow], columns: list[Column]) -> list[str]:
    head = ["dataset", "generator", "ε", "ε spent", "seeds"] + [c.header for c in columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.dataset, r.generator, r.epsilon_text, r.spent_text, str(r.seeds)]
        cells += [cell_text(r.entries.get(c.name, Entry())) for c in columns]
        lines.append("| " + " | ".join(x.replace("|", "\\|") for x in cells) + " |")
    return lines


def _reasons_md(board: Board) -> list[str]:
    """One bullet per (status, measurement, reason), naming the cells it applies to."""
    return ["## Failed and skipped", ""] + [
        f"- **{r.status}** `{r.name}` — {r.n_cells} cell{'s' if r.n_cells != 1 else ''} "
        f"({r.cells_text()}): {r.error}" for r in board.reasons]


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
    out += [LEGEND, ""]
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
    if board.reasons:
        out += _reasons_md(board)
    if board.sources:
        out += ["", "Sources: " + ", ".join(f"`{s}`" for s in board.sources)]
    return "\n".join(out) + "\n"


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f0f0f0;cursor:pointer;user-select:none}
td:nth-child(-n+2),th:nth-child(-n+2){text-align:left}
td.best{font-weight:bold;background:#e8f5e9}td.noise{background:#f5f9f5}td.failed{color:#b00020}
td.skipped{color:#888}footer{margin-top:2em;color:#666;font-size:13px}
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
            tds.append(_td_html(r.entries.get(c.name, Entry())))
        out.append("<tr>" + "".join(tds) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _td_html(e: Entry) -> str:
    """One cell; a skip or failure reason is its tooltip, cut short (the list below has it whole)."""
    esc = html.escape
    cls = "best" if e.best else "noise" if e.within_noise else e.status
    title = e.error or ("best, but the runner-up lies within its noise" if e.within_noise else "")
    title = title if len(title) <= 120 else title[:119] + "…"
    title = f' title="{esc(title)}"' if title else ""
    v = f' data-v="{e.mean}"' if e.mean is not None else ""
    body = f"<strong>{esc(e.text())}</strong>" if e.best else esc(e.text()) + (" ≈" if e.within_noise else "")
    return f'<td class="{cls}"{v}{title}>{body}</td>'


def _md_html(text: str) -> str:
    """The legend's Markdown (``**bold**``, `code`) as HTML, escaped."""
    chunks = html.escape(text).split("**")
    return _code_spans("".join(f"<b>{c}</b>" if i % 2 else c for i, c in enumerate(chunks)))


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
        parts.append(f"<p>{_md_html(LEGEND)} Click a column header to sort.</p>")
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
    if board.reasons:
        parts.append("<h2>Failed and skipped</h2><ul>" + "".join(
            f"<li><b>{esc(r.status)}</b> <code>{esc(r.name)}</code> — {r.n_cells} "
            f"cell{'s' if r.n_cells != 1 else ''} ({esc(r.cells_text())}): {esc(r.error)}</li>"
            for r in board.reasons) + "</ul>")
    if board.plots:
        parts.append('<h2>Plots</h2><div class="plots">')
        for p in board.plots:
            data = base64.b64encode(Path(p).read_bytes()).decode()
            parts.append(f'<figure><img alt="{esc(Path(p).stem)}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{esc(Path(p).stem)}</figcaption></figure>")
        parts.append("</div>")
    if board.sources:
        parts.append("<p>Sources: " + ", ".join(f"<code>{esc(s)}</code>" for s in board.sources) + "</p>")
    if board.provenance:
        parts.append('<footer class="provenance">' + "<br>".join(esc(line) for line in board.provenance)
                     + "</footer>")
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
            d[f"{c.name} ci_low"] = e.ci_low
            d[f"{c.name} ci_high"] = e.ci_high
            d[f"{c.name} n_seeds"] = e.n_ok
            d[f"{c.name} status"] = e.status
            d[f"{c.name} best"] = e.best
            d[f"{c.name} within_noise"] = e.within_noise
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
                         "headline": c.headline, "violation": c.violation, "bound": c.bound,
                         "ranked": c.ranked} for c in board.columns],
            "rows": rows, "notes": board.notes, "reasons": [r.to_dict() for r in board.reasons],
            "violations": board.violations, "sources": board.sources, "provenance": board.provenance}
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def render(board: Board, fmt: str, full: bool = False) -> str:
    """``fmt`` text of the board; ``full`` matters for md, html and tex (csv and json hold every column)."""
    if fmt in ("md", "html", "tex"):
        from ._tex import render_tex

        return {"md": render_md, "html": render_html, "tex": render_tex}[fmt](board, full)
    renderers = {"csv": render_csv, "json": render_json}
    if fmt not in renderers:
        raise ConfigError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return renderers[fmt](board)
