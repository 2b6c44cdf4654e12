"""The leaderboard: results rows → one table, rendered as Markdown, HTML, CSV, JSON.

One row per (dataset, generator, ε), mean ± std over seeds; one column per
measurement name with ↑ / ↓ for higher / lower is better; the best private
row of each column in bold. Reference rows — the non-private ε = ∞ recipe and
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
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..atomic import atomic_write_text
from ..budget import encode_float, format_epsilon
from ..errors import ConfigError
from ..matrix.results import REQUIRED_KEYS, read_results
from ..matrix.row import is_reference, resolve_headlines, role_of
from ..safe_load import inside

__all__ = ["Board", "build_board", "load_rows", "render", "render_rich", "write_leaderboards", "FORMATS",
           "FULL_FORMATS"]

FORMATS = ("md", "html", "csv", "json")
#: formats with a compact and a full view; csv and json always carry every measurement
FULL_FORMATS = ("md", "html")
SMOKE_TITLE = "SMOKE RUN — not a result (every training cut to a few steps)"


@dataclass
class Entry:
    """One table cell: a measurement of one (dataset, generator, ε) over its seeds."""

    mean: float | None = None
    std: float | None = None
    n_ok: int = 0
    n_failed: int = 0
    n_skipped: int = 0
    error: str | None = None
    best: bool = False

    @property
    def status(self) -> str:
        if self.n_ok:
            return "ok"
        if self.n_failed:
            return "failed"
        if self.n_skipped:
            return "skipped"
        return "missing"

    def text(self) -> str:
        if self.status == "ok":
            s = f"{self.mean:.4g}" + (f" ± {self.std:.2g}" if self.std is not None else "")
            bad = self.n_failed + self.n_skipped
            if bad:
                s += f" ({bad}/{bad + self.n_ok} {'failed' if self.n_failed else 'skipped'})"
            return s
        return {"failed": "failed", "skipped": "skipped", "missing": "—"}[self.status]

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "n": self.n_ok, "failed": self.n_failed,
                "skipped": self.n_skipped, "status": self.status, "best": self.best, "error": self.error}


@dataclass
class Column:
    name: str
    kind: str
    higher_is_better: bool | None
    #: a headline measurement of its evaluator (:func:`_headline_names`); the compact view keeps it
    headline: bool = True
    #: a claim check (some row's ``role`` is ``violation``): the compact view keeps it once raised
    violation: bool = False

    @property
    def header(self) -> str:
        arrow = {True: " ↑", False: " ↓"}.get(self.higher_is_better, "")  # type: ignore[arg-type]
        return f"{self.name}{arrow}"


@dataclass
class BoardRow:
    dataset: str
    generator: str
    epsilon: float
    epsilon_spent: float | None
    seeds: int
    reference: bool
    entries: dict[str, Entry] = field(default_factory=dict)

    @property
    def epsilon_text(self) -> str:
        if self.generator == "real-data":
            return "— (real data)"
        return format_epsilon(self.epsilon)

    @property
    def spent_text(self) -> str:
        if self.epsilon_spent is None or self.generator == "real-data":
            return ""
        return format_epsilon(self.epsilon_spent, "spent")


@dataclass
class Board:
    title: str
    smoke: bool
    columns: list[Column]
    rows: list[BoardRow]
    sources: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: raised claim checks (``role == "violation"`` rows above 0), e.g. a claimed ε beaten by an
    #: attack's empirical lower bound
    violations: list[str] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)
    #: rows whose DP noise was derived from the public seed (matrix ``reproducible_noise``)
    seeded_noise: list[str] = field(default_factory=list)
    #: where the compact view's note sends a reader for every column
    full_hint: str = "`ppds leaderboard DIR --full`, or the CSV / JSON"

    @property
    def main_rows(self) -> list[BoardRow]:
        return [r for r in self.rows if not r.reference]

    @property
    def reference_rows(self) -> list[BoardRow]:
        return [r for r in self.rows if r.reference]


# --------------------------------------------------------------------------- building


def load_rows(dirs: list[str | Path]) -> list[dict[str, Any]]:
    """Current rows of every run folder, each tagged with the folder it came from."""
    rows = []
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            raise ConfigError(f"{d}: no such run folder; pass the --out folder of a `ppds run`")
        if not (d / "results.jsonl").exists():
            raise ConfigError(f"{d}: no results.jsonl here; run `ppds run CONFIG --out {d}` first")
        for r in read_results(d):
            _check_row(r, d)
            r["_run_dir"] = str(d)
            rows.append(r)
    return rows


def _check_row(r: dict[str, Any], d: Path) -> None:
    """One ConfigError line for a row this version cannot render (an old schema, a bad ε)."""
    missing = [k for k in REQUIRED_KEYS if k not in r]
    if missing:
        who = f"ppds {r['ppds_version']}" if r.get("ppds_version") else "an older ppds"
        raise ConfigError(
            f"{d / 'results.jsonl'}: a row written by {who} lacks {', '.join(map(repr, missing))}; render "
            f"it with that version, or re-run the matrix with this one (`ppds run CONFIG --out {d}`)")
    for key in ("epsilon", "epsilon_spent"):
        v = r.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
            raise ConfigError(f"{d / 'results.jsonl'}: a row's {key} is {v!r}, not a number or \"inf\"; "
                              "the file was edited by hand or written by another tool")


def _latest_per_measurement(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (cell, kind, name): the last written. A metric whose config changed
    leaves its old rows in results.jsonl; the board shows the current measurement."""
    last: dict[tuple, int] = {}
    for i, r in enumerate(rows):
        last[(r.get("cell"), r.get("kind"), r.get("name"))] = i
    keep = set(last.values())
    return [r for i, r in enumerate(rows) if i in keep]


def _headline_names(rows: list[dict[str, Any]]) -> set[str]:
    """Names that are a headline in some measurement. The runner writes a resolved
    ``headline`` on every row; rows from before the flag get the same rule here (the
    first row of each measurement), so an old run folder still renders compactly."""
    groups: dict[Any, list[dict[str, Any]]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(r.get("measurement") or ("row", i), []).append(r)
    names = set()
    for group in groups.values():
        flags = resolve_headlines(r.get("headline") for r in group)
        names.update(r["name"] for r, flag in zip(group, flags, strict=True) if flag)
    return names


def build_board(rows: list[dict[str, Any]], title: str | None = None) -> Board:
    """Aggregate rows over seeds into a :class:`Board`; refuses smoke and real rows together."""
    smoke_flags = {bool(r.get("smoke")) for r in rows}
    if len(smoke_flags) > 1:
        raise ConfigError("refusing to merge smoke-run rows with real rows into one leaderboard; "
                          "render them separately (`ppds leaderboard DIR --smoke` shows the smoke rows)")
    smoke = smoke_flags == {True}
    matrices = sorted({str(r.get("matrix")) for r in rows if r.get("matrix")})
    if title is None:
        title = "ppds leaderboard" + (f" — {', '.join(matrices)}" if matrices else "")
    if smoke:
        title = f"{SMOKE_TITLE} — {title}"
    board = Board(title=title, smoke=smoke, columns=[], rows=[],
                  sources=sorted({r["_run_dir"] for r in rows if "_run_dir" in r}))
    if not rows:
        return board
    rows = _latest_per_measurement(rows)
    headlines = _headline_names(rows)
    df = pd.DataFrame(rows)
    df["reference"] = [is_reference(r) for r in rows]
    df["role"] = [role_of(r) for r in rows]
    if "variant" not in df:
        df["variant"] = ""
    df["variant"] = df["variant"].fillna("")
    variants = df.groupby(["dataset", "generator"])["variant"].nunique()
    df["generator"] = [
        f"{g} [{v[:6]}]" if v and variants.get((d, g), 1) > 1 else g
        for d, g, v in zip(df["dataset"], df["generator"], df["variant"], strict=True)
    ]
    df["_order_kind"] = df["kind"].map({"metric": 0, "attack": 1}).fillna(2)

    seen: dict[str, Column] = {}
    for _, r in df.sort_values("_order_kind", kind="stable").iterrows():
        name = r["name"]
        hib = r.get("higher_is_better")
        hib = None if hib is None or (isinstance(hib, float) and math.isnan(hib)) else bool(hib)
        if name not in seen:
            seen[name] = Column(name, r["kind"], hib, headline=name in headlines)
        elif seen[name].higher_is_better is None and hib is not None:
            seen[name].higher_is_better = hib
        seen[name].violation |= r["role"] == "violation"
    board.columns = list(seen.values())

    datasets = list(dict.fromkeys(df["dataset"]))
    generators = list(dict.fromkeys(g for g in df["generator"] if g != "real-data")) + ["real-data"]
    keys = df[["dataset", "generator", "epsilon"]].drop_duplicates().itertuples(index=False)
    ordered = sorted(keys, key=lambda k: (datasets.index(k[0]), generators.index(k[1]), k[2]))
    for dataset, generator, eps in ordered:
        part = df[(df["dataset"] == dataset) & (df["generator"] == generator) & (df["epsilon"] == eps)]
        spent = pd.to_numeric(part["epsilon_spent"], errors="coerce").dropna()
        row = BoardRow(dataset, generator, float(eps), float(spent.mean()) if len(spent) else None,
                       int(part["seed"].nunique()), bool(part["reference"].any()))
        for name, m in part.groupby("name", sort=False):
            ok = pd.to_numeric(m.loc[m["status"] == "ok", "value"], errors="coerce").dropna()
            errors = m.loc[m["status"] != "ok", "error"].dropna()
            row.entries[name] = Entry(
                mean=float(ok.mean()) if len(ok) else None,
                std=float(ok.std(ddof=1)) if len(ok) > 1 else None,
                n_ok=len(ok), n_failed=int((m["status"] == "failed").sum()),
                n_skipped=int((m["status"] == "skipped").sum()),
                error=str(errors.iloc[0]) if len(errors) else None,
            )
        board.rows.append(row)
    _mark_best(board)
    _collect_notes(board, df)
    _collect_violations(board, df)
    _collect_seeded_noise(board, df)
    return board


#: what the board says above the tables when some ledger's noise came from the public seed
SEEDED_NOISE_WARNING = ("Noise seeded from a public seed (`reproducible_noise: true`): the ε of these "
                        "rows does not hold against anyone who reads the config")


def _collect_seeded_noise(board: Board, df: pd.DataFrame) -> None:
    if "reproducible_noise" not in df:
        return
    seeded = df[df["reproducible_noise"].fillna(False).astype(bool)]
    labels = seeded[["dataset", "generator", "epsilon"]].drop_duplicates().itertuples(index=False)
    board.seeded_noise = [f"{d} / {g} / ε={format_epsilon(e)}" for d, g, e in labels]


def _mark_best(board: Board) -> None:
    for col in board.columns:
        if col.higher_is_better is None:
            continue
        for dataset in dict.fromkeys(r.dataset for r in board.main_rows):
            cand = [r.entries[col.name] for r in board.main_rows
                    if r.dataset == dataset and col.name in r.entries and r.entries[col.name].mean is not None]
            if not cand:
                continue
            pick = max if col.higher_is_better else min
            best = pick(e.mean for e in cand)  # type: ignore[type-var]
            for e in cand:
                e.best = math.isclose(e.mean, best, rel_tol=1e-12, abs_tol=1e-15)  # type: ignore[arg-type]


def _collect_violations(board: Board, df: pd.DataFrame) -> None:
    """Flag, never hide, a raised claim check: a row whose ``role`` is ``violation`` (a claimed ε
    that an attack's empirical lower bound exceeds, from ppds_core.evaluation.membership; the
    audit's noise, clipping or trade-off test; a reconstruction rate above its ReRo bound)."""
    hits = df[(df["role"] == "violation") & (df["status"] == "ok")]
    hits = hits[pd.to_numeric(hits["value"], errors="coerce") > 0]
    for _, r in hits.iterrows():
        eps = format_epsilon(r["epsilon"])
        lb = r.get("epsilon_lb")
        spent = r.get("epsilon_spent")
        detail = ""
        if isinstance(lb, int | float) and not (isinstance(lb, float) and math.isnan(lb)):
            detail = f": empirical ε ≥ {format_epsilon(lb, 'spent')} > ε spent {format_epsilon(float(spent), 'spent')}"
        elif isinstance(r.get("raised"), list | str) and r.get("raised"):
            raised = r["raised"] if isinstance(r["raised"], str) else ", ".join(map(str, r["raised"]))
            detail = f": {raised}"
        board.violations.append(
            f"{r['dataset']} / {r['generator']} / ε={eps} / seed {r['seed']} — "
            f"{r['name'].removesuffix('-epsilon-violation').removesuffix('-violation')}{detail}"
        )


def _collect_notes(board: Board, df: pd.DataFrame) -> None:
    bad = df[df["status"].isin(["failed", "skipped"])]
    seen = set()
    for _, r in bad.iterrows():
        eps = format_epsilon(r["epsilon"])
        note = f"{r['status']}: {r['dataset']} / {r['generator']} / ε={eps} / seed {r['seed']} — {r['name']}: {r['error']}"
        if note not in seen:
            seen.add(note)
            board.notes.append(note)


# --------------------------------------------------------------------------- rendering


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


# --------------------------------------------------------------------------- files


def _write(path: Path, text: str) -> Path:
    atomic_write_text(path, text)  # a link planted at the name is replaced, not written through
    return path


def write_leaderboards(run_dir: str | Path) -> list[Path]:
    """Plots and ``leaderboard.{md,html,csv,json}`` of a run folder (smoke rows apart).

    Real rows → ``leaderboard.*`` and ``plots/``; smoke rows →
    ``leaderboard-smoke.*`` and ``plots-smoke/``. The md and html boards are
    compact; ``leaderboard-full.{md,html}`` (``leaderboard-smoke-full.*``)
    beside them show every column, and the csv and json always do.
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
        board.plots = make_plots(part, inside(run_dir / plots, run_dir, "the plots folder"))
        written += board.plots
        for fmt in FORMATS:
            board.full_hint = f"`{stem}-full.{fmt}` beside this file, or `{stem}.csv` / `{stem}.json`"
            written.append(_write(run_dir / f"{stem}.{fmt}", render(board, fmt)))
            if fmt in FULL_FORMATS:
                written.append(_write(run_dir / f"{stem}-full.{fmt}", render(board, fmt, full=True)))
    return written
