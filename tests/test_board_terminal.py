"""The leaderboard as people read it (issue 16): a terminal board that fits its width, best marks
per (dataset, ε) that skip ties, flags and bounds, uncertainty on every number, skipped rows in
their measurements' columns, grouped reasons, LaTeX, and the provenance footer."""

from __future__ import annotations

import io
import json
import math

import pandas as pd
import pytest
from rich.cells import cell_len
from rich.console import Console

from ppds_core.cli import main
from ppds_core.evaluation import membership_measurements
from ppds_core.matrix import append_rows
from ppds_core.report._terminal import layout, wrap_header
from ppds_core.report.leaderboard import (
    build_board,
    load_rows,
    render,
    render_rich,
    write_leaderboards,
)


def _row(gen, eps, name, value, hib, *, seed=0, kind="metric", status="ok", error=None, dataset="d",
         evaluator=None, **extra):
    finite = math.isfinite(eps)
    return {"cell": f"{dataset}-{gen}-{eps}-{seed}", "dataset": dataset, "generator": gen, "epsilon": eps,
            "epsilon_spent": eps if finite else math.inf, "delta": 1e-5, "seed": seed, "kind": kind,
            "name": name, "value": value if status == "ok" else None, "higher_is_better": hib,
            "status": status, "error": error, "ppds_version": "0.1.0", "smoke": False, "matrix": "t",
            "measurement": f"{dataset}-{gen}-{eps}-{seed}-{evaluator or name}", "batch": "b",
            "evaluator": evaluator or name, "reference": gen == "real-data" or not finite,
            "reference_data": gen == "real-data"} | extra


def _board(tmp_path, rows, name="run"):
    d = tmp_path / name
    d.mkdir()
    append_rows(d / "results.jsonl", rows)
    return d, build_board(load_rows([d]))


def _entry(board, gen, eps, name, dataset="d"):
    row = next(r for r in board.rows if (r.dataset, r.generator, r.epsilon) == (dataset, gen, eps))
    return row.entries[name]


# --------------------------------------------------------------------------- terminal


def _membership(gen, eps, prefix, scores, member):
    rows = []
    for m in membership_measurements(prefix, scores, member, delta=1e-5,
                                     epsilon_spent=eps if math.isfinite(eps) else None):
        rows.append(_row(gen, eps, m.name, m.value, m.higher_is_better, kind="attack", evaluator=prefix,
                         headline=m.headline, role=m.role, **m.extra))
    return rows


@pytest.fixture
def wide(tmp_path):
    """A quickstart-shaped folder: three generators × two ε + references, long metric names and
    four membership attacks with long prefixes (12 headline attack columns)."""
    import numpy as np

    member = np.r_[np.ones(100, bool), np.zeros(100, bool)]
    rng = np.random.default_rng(0)
    rows = []
    for gen in ("dp-gan", "dp-diffusion", "privimage", "real-data"):
        for eps in ((1.0, 10.0, math.inf) if gen != "real-data" else (math.inf,)):
            for name in ("downstream-accuracy", "precision-domain", "recall-domain", "ssim-nn-private",
                         "psnr-nn-private"):
                rows.append(_row(gen, eps, name, float(rng.random()), True))
            for prefix in ("gan-leaks", "gan-leaks-calibrated", "monte-carlo", "domias"):
                rows += _membership(gen, eps, prefix, rng.random(200), member)
    return _board(tmp_path, rows, "wide")


def _terminal(board, width, full=False):
    buf = io.StringIO()
    Console(file=buf, width=width, force_terminal=True, color_system=None).print(render_rich(board, full))
    return buf.getvalue()


@pytest.mark.parametrize("width", [80, 120])
def test_terminal_board_fits_its_width_and_cuts_no_measurement_name(wide, width):
    _, board = wide
    text = _terminal(board, width)
    assert "…" not in text and max(cell_len(line) for line in text.splitlines()) <= width
    tables = layout(board, width)
    shown = [c.name for t in tables for c in t.columns]
    hidden = {c.name for t in tables for c in t.hidden}
    assert shown and hidden  # a handful of columns, not all 12 attack headlines
    for t in tables:
        for c, w in zip(t.columns, t.widths, strict=True):
            lines = wrap_header(c.header, w)
            assert "".join(lines) == c.header and all(line in text for line in lines)
    for name in hidden:  # every column left out is named in full
        assert name in text.replace("\n", " ")
    # rows are (generator, ε), like the Markdown board: a generator starts a line
    assert any(line.startswith("dp-diffusion") for line in text.splitlines())
    # round robin: each attack's first headline comes before any attack's second
    attack = [c.name for t in tables if "Attacks" in t.title for c in t.columns]
    firsts = [f"{p}-auc" for p in ("gan-leaks", "gan-leaks-calibrated", "monte-carlo", "domias")]
    assert attack[0] == "gan-leaks-auc" and "gan-leaks-calibrated-auc" in attack
    assert set(attack) <= set(firsts) if width == 80 else set(firsts) < set(attack)


def test_terminal_full_shows_every_column_in_tables_that_fit(wide):
    _, board = wide
    text = _terminal(board, 80, full=True)
    assert max(cell_len(line) for line in text.splitlines()) <= 80 and "…" not in text
    shown = {c.name for t in layout(board, 80, full=True) for c in t.columns}
    assert shown == {c.name for c in board.columns}
    assert "(2/" in text  # split into several tables


def test_wrap_header_breaks_after_hyphens_only():
    assert wrap_header("reconstruction-success-rate ↓", 15) == ["reconstruction-", "success-rate ↓"]
    assert wrap_header("auc ↓", 3) == ["auc ↓"]  # a piece is never cut
    assert "".join(wrap_header("gan-leaks-calibrated-tpr@1%fpr ↓", 11)) == "gan-leaks-calibrated-tpr@1%fpr ↓"


def test_piped_output_is_the_complete_markdown(wide, capsys):
    d, board = wide
    assert main(["leaderboard", str(d)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# ppds leaderboard") and "| dataset | generator | ε |" in out
    assert "…" not in out and max(map(len, out.splitlines())) > 200  # never cut to a width
    tables = [line for line in out.splitlines() if line.startswith("| ")]
    assert all(line.endswith(" |") for line in tables)
    assert "gan-leaks-calibrated-tpr@1%fpr ↓" in out


# --------------------------------------------------------------------------- best marks


def test_best_is_marked_per_dataset_and_epsilon_never_on_ties_flags_or_bounds(tmp_path):
    rows = []
    for gen, acc1, acc10 in (("g1", 0.8, 0.6), ("g2", 0.7, 0.9)):
        rows += [_row(gen, 1.0, "acc", acc1, True), _row(gen, 10.0, "acc", acc10, True),
                 _row(gen, 1.0, "zero", 0.0, False),
                 _row(gen, 1.0, "flag", 1.0 if gen == "g2" else 0.0, False, kind="attack", role="violation"),
                 _row(gen, 1.0, "eps-lb", 0.5 if gen == "g1" else 2.0, False, kind="attack",
                      ci_low=0.5 if gen == "g1" else 2.0, ci_high=4.0)]
    rows += [_row("g1", math.inf, "acc", 0.99, True), _row("real-data", math.inf, "acc", 1.0, True)]
    _, board = _board(tmp_path, rows)
    # the old rule marked only g2 at ε = 10 (best of the dataset); now each ε has its winner
    assert _entry(board, "g1", 1.0, "acc").best and not _entry(board, "g2", 1.0, "acc").best
    assert _entry(board, "g2", 10.0, "acc").best and not _entry(board, "g1", 10.0, "acc").best
    assert not _entry(board, "g1", math.inf, "acc").best and not _entry(board, "real-data", math.inf, "acc").best
    for name in ("zero", "flag", "eps-lb"):  # a tie, a claim check, a one-sided bound
        marked = [r for r in board.main_rows if (e := r.entries.get(name)) and (e.best or e.within_noise)]
        assert not marked and sum(name in r.entries for r in board.main_rows) == 2, name
    cols = {c.name: c for c in board.columns}
    assert cols["eps-lb"].bound and not cols["eps-lb"].ranked and not cols["flag"].ranked
    assert cols["zero"].ranked  # ranked, but a tie marks nothing
    md = render(board, "md")
    assert "| **0.8** |" in md and "| **0.9** |" in md and "**0**" not in md and "**1**" not in md


def test_a_ci_is_shown_and_a_best_inside_noise_is_not_bold(tmp_path):
    rows = [_row("g1", 1.0, "auc", 0.50, False, kind="attack", ci_low=0.45, ci_high=0.55),
            _row("g2", 1.0, "auc", 0.53, False, kind="attack", ci_low=0.48, ci_high=0.58),
            _row("g1", 10.0, "auc", 0.30, False, kind="attack", ci_low=0.25, ci_high=0.35),
            _row("g2", 10.0, "auc", 0.53, False, kind="attack", ci_low=0.48, ci_high=0.58)]
    for seed, (a, b) in enumerate(((0.80, 0.70), (0.82, 0.71))):  # two seeds: mean ± std
        rows += [_row("g1", 1.0, "acc", a, True, seed=seed), _row("g2", 1.0, "acc", b, True, seed=seed)]
    _, board = _board(tmp_path, rows)
    close, clear = _entry(board, "g1", 1.0, "auc"), _entry(board, "g1", 10.0, "auc")
    assert close.within_noise and not close.best  # 0.53 lies inside [0.45, 0.55]
    assert clear.best and not clear.within_noise
    acc = _entry(board, "g1", 1.0, "acc")
    assert acc.best and acc.std == pytest.approx(0.01414, abs=1e-4)
    md = render(board, "md")
    assert "| 0.5 [0.45, 0.55] ≈ |" in md and "| **0.3 [0.25, 0.35]** |" in md
    assert "**0.81 ± 0.014**" in md and "within noise" in md  # the legend says what ≈ means
    assert "[0.45, 0.55]" in _terminal(board, 80)
    csv = pd.read_csv(io.StringIO(render(board, "csv")))
    g1 = csv[(csv["generator"] == "g1") & (csv["epsilon"] == 1.0)].iloc[0]
    assert (g1["auc ci_low"], g1["auc ci_high"], g1["auc within_noise"]) == (0.45, 0.55, True)
    assert g1["acc n_seeds"] == 2 and g1["acc std"] == pytest.approx(0.01414, abs=1e-4)
    values = next(r for r in json.loads(render(board, "json"))["rows"]
                  if r["generator"] == "g1" and r["epsilon"] == 1.0)["values"]
    assert values["auc"]["ci_low"] == 0.45 and values["auc"]["within_noise"] and values["acc"]["n_seeds"] == 2


# --------------------------------------------------------------------------- skipped rows, reasons


def test_a_skipped_evaluator_sits_in_its_measurements_columns_and_reasons_are_grouped(tmp_path):
    why = "needs DP-SGD parameters; this cell is the non-private reference"
    weights = "weights not found at /somewhere/inception.pth; download it " + "x" * 200
    rows = []
    for gen in ("g1", "g2", "g3"):
        rows += [_row(gen, 1.0, "recon-rate", 0.1 if gen == "g1" else 0.2, False, kind="attack",
                      evaluator="recon", headline=True),
                 _row(gen, 1.0, "recon-mse", 0.3, True, kind="attack", evaluator="recon", headline=False),
                 _row(gen, math.inf, "recon", None, False, kind="attack", status="skipped", error=why),
                 _row(gen, 1.0, "acc", 0.5, True)]
        rows += [_row(gen, eps, "fid", None, False, status="skipped", error=weights) for eps in (1.0, math.inf)]
    _, board = _board(tmp_path, rows)
    assert "recon" not in {c.name for c in board.columns}
    ref = _entry(board, "g1", math.inf, "recon-rate")
    assert ref.status == "skipped" and _entry(board, "g1", math.inf, "recon-mse").status == "skipped"
    md = render(board, "md")
    ref_attacks = md.split("## Reference rows")[1].split("### Attacks (privacy)")[1]
    assert "recon-rate ↓" in ref_attacks and "skipped" in ref_attacks
    assert "recon-mse" not in md  # not a headline: the compact view leaves it out, skipped or not
    # one entry per (measurement, reason), with the cells it applies to
    assert len(board.reasons) == 2 and md.count(weights) == 1 and md.count(why) == 1
    fid = next(r for r in board.reasons if r.name == "fid")
    assert fid.n_cells == 6 and fid.cells_text() == "d: g1 ε=1, ∞; g2 ε=1, ∞; g3 ε=1, ∞"
    assert "— 3 cells (d: g1 ε=∞; g2 ε=∞; g3 ε=∞)" in md
    html = render(board, "html")
    assert html.count(weights) == 1 and "<code>recon</code>" in html  # cells' tooltips are cut short
    assert json.loads(render(board, "json"))["reasons"][0]["cells"][0]["generator"] == "g1"


# --------------------------------------------------------------------------- LaTeX, provenance


def test_latex_has_booktabs_rules_and_escapes_names(tmp_path, capsys):
    rows = [_row(g, 1.0, "tpr@1%fpr", v, False, kind="attack") for g, v in (("my_gen", 0.1), ("g&2", 0.2))]
    rows += [_row("my_gen", math.inf, "tpr@1%fpr", 0.3, False, kind="attack")]
    d, board = _board(tmp_path, rows)
    tex = render(board, "tex")
    assert tex.count(r"\toprule") == 2 and tex.count(r"\midrule") == 2 and tex.count(r"\bottomrule") == 2
    assert tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}") == 2
    assert r"my\_gen" in tex and r"g\&2" in tex and r"tpr@1\%fpr $\downarrow$" in tex
    assert r"$\varepsilon$" in tex and r"$\infty$" in tex and r"\textbf{0.1}" in tex
    body = "\n".join(line for line in tex.splitlines() if not line.startswith("%"))
    for raw in ("my_gen", "1%fpr", "g&2", "ε", "∞", "↓"):  # nothing unescaped outside the comments
        assert raw not in body, raw
    assert main(["leaderboard", str(d), "--format", "tex"]) == 0
    assert capsys.readouterr().out == tex
    assert (d / "leaderboard.tex") in write_leaderboards(d)


def test_the_html_footer_shows_provenance_only_when_there_is_one(tmp_path):
    d, board = _board(tmp_path, [_row("g1", 1.0, "acc", 0.5, True)])
    assert board.provenance == [] and "<footer" not in render(board, "html")
    (d / "provenance.json").write_text(json.dumps({
        "versions": {"python": "3.11.9", "torch": "2.4.0", "ppds": "0.1.0", "plugins": {"ppds": "0.1.0"}},
        "git_revision": "1c91d81-dirty", "host": {"node": "node7", "machine": "x86_64", "cpu_count": 2},
        "created": "2026-12-03T14:00:00Z", "cuda": None, "gpu": ["NVIDIA H200"], "matrix_given": {"name": "t"}}))
    html = render(build_board(load_rows([d])), "html")
    footer = html.split('<footer class="provenance">')[1].split("</footer>")[0]
    assert "ppds 0.1.0, python 3.11.9, torch 2.4.0" in footer and "git 1c91d81-dirty" in footer
    assert "node7" in footer and "2026-12-03" in footer and "GPU NVIDIA H200" in footer and "CUDA" not in footer
    for junk in ("{not json", "[1, 2]", json.dumps({"versions": "x", "host": ["<script>"], "gpu": [{}]})):
        (d / "provenance.json").write_text(junk)
        assert "<footer" not in render(build_board(load_rows([d])), "html")
    (d / "provenance.json").write_text(json.dumps({"host": "<b>x</b>"}))
    assert "&lt;b&gt;x&lt;/b&gt;" in render(build_board(load_rows([d])), "html")
