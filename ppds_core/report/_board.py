"""The leaderboard's model: results rows → a :class:`Board` (aggregated over seeds, best marked).

One :class:`BoardRow` per (dataset, generator, ε) with one :class:`Entry` per
measurement name (mean, std over seeds, the rows' ``ci_low`` / ``ci_high``);
reference rows (ε = ∞, real data) are flagged, never marked best; best marks
are per (dataset, ε) (:mod:`._marks`). A skipped evaluator's row sits in the
columns of the names that evaluator measures elsewhere, and the reasons are
grouped (:mod:`._reasons`). Smoke rows are never merged with real rows. The
rows' own fields decide what is a reference, a headline and a violation flag
(:mod:`ppds_core.matrix.row`); this module only aggregates them. Rendering
lives in :mod:`._render`, :mod:`._tex` and :mod:`._terminal`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..budget import format_epsilon
from ..errors import ConfigError
from ..matrix.results import REQUIRED_KEYS, read_results
from ..matrix.row import is_reference, resolve_headlines, role_of
from ._entry import Entry, fmt_interval, fmt_value
from ._marks import is_bound, mark_best
from ._provenance import provenance_line
from ._reasons import Reason, expand_evaluator_rows, group_reasons

__all__ = ["Board", "BoardRow", "Column", "Entry", "Reason", "SEEDED_NOISE_WARNING", "SMOKE_TITLE",
           "build_board", "fmt_interval", "fmt_value", "load_rows"]

SMOKE_TITLE = "SMOKE RUN — not a result (every training cut to a few steps)"


@dataclass
class Column:
    name: str
    kind: str
    higher_is_better: bool | None
    #: a headline measurement of its evaluator (:func:`_headline_names`); the compact view keeps it
    headline: bool = True
    #: a claim check (some row's ``role`` is ``violation``): the compact view keeps it once raised
    violation: bool = False
    #: a one-sided bound (some row's value is an end of its own interval, e.g. an ε lower bound)
    bound: bool = False
    #: the plugin that measured it (the terminal shows one headline per evaluator first)
    evaluator: str | None = None

    @property
    def ranked(self) -> bool:
        """Whether a best mark means anything: a direction, and neither a flag nor a bound."""
        return self.higher_is_better is not None and not self.violation and not self.bound

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
    #: skip and failure reasons, one per (measurement, reason) with the cells it applies to
    reasons: list[Reason] = field(default_factory=list)
    #: one line per source folder with a ``provenance.json`` (versions, git revision, host, date)
    provenance: list[str] = field(default_factory=list)

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
    board.provenance = [line for d in board.sources if (line := provenance_line(d))]
    rows = _latest_per_measurement(expand_evaluator_rows(rows))
    df = _frame(rows)
    board.columns = _columns(df, _headline_names(rows))
    board.rows = _board_rows(df)
    mark_best(board)
    board.reasons = group_reasons(df)
    board.notes = [r.text() for r in board.reasons]
    _collect_violations(board, df)
    _collect_seeded_noise(board, df)
    return board


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The rows as a frame, with each row's ``reference`` and ``role`` read once (older rows
    included) and a variant tag on generators that ran more than one recipe."""
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
    return df


def _columns(df: pd.DataFrame, headlines: set[str]) -> list[Column]:
    """One column per measurement name, metrics first, each knowing if it is a headline or a claim check."""
    seen: dict[str, Column] = {}
    for _, r in df.sort_values("_order_kind", kind="stable").iterrows():
        name = r["name"]
        hib = r.get("higher_is_better")
        hib = None if hib is None or (isinstance(hib, float) and math.isnan(hib)) else bool(hib)
        if name not in seen:
            ev = r.get("evaluator")
            seen[name] = Column(name, r["kind"], hib, headline=name in headlines,
                                evaluator=ev if isinstance(ev, str) else None)
        elif seen[name].higher_is_better is None and hib is not None:
            seen[name].higher_is_better = hib
        seen[name].violation |= r["role"] == "violation"
        seen[name].bound |= r["status"] == "ok" and is_bound(r)
    return list(seen.values())


def _board_rows(df: pd.DataFrame) -> list[BoardRow]:
    """One row per (dataset, generator, ε) in matrix order, real data last; entries over seeds."""
    out = []
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
                ci_low=_mean_of(m, "ci_low", ok.index), ci_high=_mean_of(m, "ci_high", ok.index),
            )
        out.append(row)
    return out


def _mean_of(m: pd.DataFrame, key: str, index) -> float | None:
    """Mean of a numeric extra (``ci_low``, ``ci_high``) over the ok rows that carry it."""
    if key not in m:
        return None
    v = pd.to_numeric(m.loc[index, key], errors="coerce").dropna()
    return float(v.mean()) if len(v) else None


#: what the board says above the tables when some ledger's noise came from the public seed
SEEDED_NOISE_WARNING = ("Noise seeded from a public seed (`reproducible_noise: true`): the ε of these "
                        "rows does not hold against anyone who reads the config")


def _collect_seeded_noise(board: Board, df: pd.DataFrame) -> None:
    if "reproducible_noise" not in df:
        return
    seeded = df[df["reproducible_noise"].fillna(False).astype(bool)]
    labels = seeded[["dataset", "generator", "epsilon"]].drop_duplicates().itertuples(index=False)
    board.seeded_noise = [f"{d} / {g} / ε={format_epsilon(e)}" for d, g, e in labels]


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
            detail = f": empirical ε ≥ {format_epsilon(lb, 'lower')} > ε spent {format_epsilon(float(spent), 'spent')}"
        elif isinstance(r.get("raised"), list | str) and r.get("raised"):
            raised = r["raised"] if isinstance(r["raised"], str) else ", ".join(map(str, r["raised"]))
            detail = f": {raised}"
        who = r.get("evaluator")  # the plugin that raised it; the name itself for old rows
        who = who if isinstance(who, str) and who else r["name"]
        board.violations.append(f"{r['dataset']} / {r['generator']} / ε={eps} / seed {r['seed']} — {who}{detail}")
