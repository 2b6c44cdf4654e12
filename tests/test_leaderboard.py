"""Leaderboard from results rows: aggregation, best marks, references apart, formats, merge, smoke,
compact and full views."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pandas as pd
import pytest

from ppds_core.cli import main
from ppds_core.errors import ConfigError
from ppds_core.evaluation import membership_measurements
from ppds_core.interfaces import Measurement
from ppds_core.matrix import append_rows
from ppds_core.matrix.results import resolve_headlines
from ppds_core.report.leaderboard import build_board, load_rows, render, write_leaderboards


def _row(gen, eps, seed, name, value, hib, kind="metric", status="ok", error=None, smoke=False, dataset="d"):
    return {"cell": f"{gen}-{eps}-{seed}", "dataset": dataset, "generator": gen, "epsilon": eps,
            "epsilon_spent": eps * 0.9 if math.isfinite(eps) else math.inf, "delta": 1e-5, "seed": seed,
            "kind": kind, "name": name, "value": value if status == "ok" else None, "higher_is_better": hib,
            "status": status, "error": error, "ppds_version": "0.1.0", "smoke": smoke, "matrix": "t",
            "measurement": f"{gen}-{eps}-{seed}-{name}", "batch": "b",
            "reference": gen == "real-data" or not math.isfinite(eps),
            "reference_data": gen == "real-data"}


@pytest.fixture
def dirs(tmp_path):
    a, b, s = tmp_path / "a", tmp_path / "b", tmp_path / "smoke"
    for d in (a, b, s):
        d.mkdir()
    append_rows(a / "results.jsonl", [
        _row("g1", 1.0, 0, "acc", 0.80, True), _row("g1", 1.0, 1, "acc", 0.90, True),
        _row("g1", 1.0, 0, "fid", 30.0, False), _row("g1", 1.0, 1, "fid", 34.0, False),
        _row("g1", 1.0, 0, "auc", 0.51, False, kind="attack"),
        _row("g1", 1.0, 0, "auc-epsilon-violation", 1.0, False, kind="attack") | {"epsilon_lb": 2.5},
        _row("g1", 1.0, 1, "auc-epsilon-violation", 0.0, False, kind="attack") | {"epsilon_lb": 0.1},
        _row("g1", 1.0, 1, "auc", None, False, kind="attack", status="failed", error="RuntimeError: kaboom"),
        _row("g1", math.inf, 0, "acc", 0.99, True), _row("g1", math.inf, 0, "fid", 5.0, False),
        _row("g1", math.inf, 0, "auc", 0.9, False, kind="attack"),
        _row("real-data", math.inf, 0, "acc", 1.0, True), _row("real-data", math.inf, 0, "fid", 0.5, False),
    ])
    append_rows(b / "results.jsonl", [
        _row("g2", 1.0, 0, "acc", 0.70, True), _row("g2", 1.0, 0, "fid", 20.0, False),
        _row("g2", 1.0, 0, "auc", None, False, kind="attack", status="skipped", error="needs DP-SGD parameters"),
    ])
    append_rows(s / "results.jsonl", [_row("g1", 1.0, 0, "acc", 0.1, True, smoke=True)])
    return a, b, s


def test_board_aggregates_marks_best_and_keeps_references_apart(dirs):
    a, b, _ = dirs
    board = build_board(load_rows([a, b]))
    assert [c.header for c in board.columns] == ["acc ↑", "fid ↓", "auc ↓", "auc-epsilon-violation ↓"]
    main = {(r.generator, r.epsilon): r for r in board.main_rows}
    refs = {(r.generator, r.epsilon): r for r in board.reference_rows}
    assert set(main) == {("g1", 1.0), ("g2", 1.0)}
    assert set(refs) == {("g1", math.inf), ("real-data", math.inf)}
    acc = main[("g1", 1.0)].entries["acc"]
    assert acc.mean == pytest.approx(0.85) and acc.std == pytest.approx(0.0707, abs=1e-4) and acc.n_ok == 2
    assert acc.best and not main[("g2", 1.0)].entries["acc"].best
    assert main[("g2", 1.0)].entries["fid"].best and not main[("g1", 1.0)].entries["fid"].best
    # the references beat every private row but never take "best"
    assert not refs[("g1", math.inf)].entries["acc"].best and not refs[("real-data", math.inf)].entries["fid"].best
    auc = main[("g1", 1.0)].entries["auc"]
    assert auc.n_ok == 1 and auc.n_failed == 1 and "1/2 failed" in auc.text()
    assert main[("g2", 1.0)].entries["auc"].text() == "skipped"
    assert any("kaboom" in n for n in board.notes)

    md = render(board, "md")
    main_part, ref_part = md.split("## Reference rows")
    assert "**0.85 ± 0.071**" in main_part and "**20**" in main_part
    assert "real-data" not in main_part and "| ∞ |" not in main_part
    assert "real-data" in ref_part and "| ∞ |" in ref_part
    assert "skipped" in md and "failed" in md
    # a claimed ε beaten by an attack is flagged at the top, naming the cell and the bound
    assert md.index("Privacy claim violated") < md.index("## Utility")
    assert board.violations == ["d / g1 / ε=1 / seed 0 — auc-epsilon-violation: empirical ε ≥ 2.5 > ε spent 0.9"]


def test_all_formats_through_the_cli_merge_two_folders(dirs, tmp_path, capsys):
    a, b, _ = dirs
    for fmt in ("md", "html", "csv", "json"):
        out = tmp_path / f"board.{fmt}"
        assert main(["leaderboard", str(a), str(b), "--format", fmt, "--output", str(out)]) == 0
        assert out.stat().st_size > 0
    csv = pd.read_csv(io.StringIO((tmp_path / "board.csv").read_text()))
    assert set(csv["generator"]) == {"g1", "g2", "real-data"}
    assert csv.loc[csv["generator"] == "g2", "fid best"].item()
    data = json.loads((tmp_path / "board.json").read_text())
    assert data["smoke"] is False and {c["name"] for c in data["columns"]} == {"acc", "fid", "auc", "auc-epsilon-violation"}
    g1 = next(r for r in data["rows"] if r["generator"] == "g1" and r["epsilon"] == 1.0)
    assert g1["values"]["acc"]["best"] and g1["values"]["auc"]["failed"] == 1
    assert any(r["epsilon"] == "inf" and r["reference"] for r in data["rows"])
    html = (tmp_path / "board.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "<style>" in html and "<script>" in html
    assert "<strong>0.85 ± 0.071</strong>" in html and "Reference rows" in html
    assert "data:image/png;base64," in html  # privacy-utility plots embedded, no external file
    assert "src=\"http" not in html and "href=\"http" not in html
    assert main(["leaderboard", str(a), "--format", "md"]) == 0
    assert "# ppds leaderboard" in capsys.readouterr().out


def test_smoke_rows_are_never_merged_into_a_real_board(dirs, capsys):
    a, _, s = dirs
    with pytest.raises(ConfigError, match="refusing to merge smoke"):
        build_board(load_rows([a, s]))
    assert main(["leaderboard", str(a), str(s), "--format", "md"]) == 0
    out = capsys.readouterr().out
    assert "SMOKE" not in out and "0.1 " not in out and "0.85" in out
    assert main(["leaderboard", str(a), str(s), "--format", "md", "--smoke"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# SMOKE RUN") and "0.85" not in out
    assert main(["leaderboard", str(s), "--format", "md"]) == 2
    assert "--smoke" in capsys.readouterr().err


def test_missing_folder_is_a_one_line_error(tmp_path, capsys):
    assert main(["leaderboard", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "no such run folder" in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------- compact and full views


def _evaluation(gen, eps, seed, evaluator, measurements, flags=True):
    """Rows as the runner writes one evaluation: one measurement id, resolved ``headline``
    flags and each measurement's ``role`` — or, with ``flags=False``, rows from before the
    flags existed (no such keys: the leaderboard reads them by the old rules)."""
    rows = []
    for m, head in zip(measurements, resolve_headlines(m.headline for m in measurements), strict=True):
        r = _row(gen, eps, seed, m.name, m.value, m.higher_is_better, kind="attack") | m.extra
        r["measurement"] = f"{gen}-{eps}-{seed}-{evaluator}"
        if flags:
            r["headline"] = head
            r["role"] = m.role
        rows.append(r)
    return rows


@pytest.fixture
def attack_dir(tmp_path):
    """A quickstart-like attack section: two membership attacks of six numbers each (as
    ppds_core.evaluation reports them), one of which beats g1's claimed ε, plus a plugin
    whose rows predate the headline flag."""
    d = tmp_path / "attacks"
    d.mkdir()
    member = np.r_[np.ones(200, bool), np.zeros(200, bool)]
    noise = np.random.default_rng(0).random(400)
    rows = []
    for gen, leaky in (("g1", member.astype(float)), ("g2", noise)):
        rows += [_row(gen, 1.0, 0, "acc", 0.8, True), _row(gen, 1.0, 0, "acc-top2", 0.9, True)]
        rows += _evaluation(gen, 1.0, 0, "mia", membership_measurements(
            "mia", leaky, member, delta=1e-5, epsilon_spent=0.9))
        rows += _evaluation(gen, 1.0, 0, "quiet", membership_measurements(
            "quiet", noise, member, delta=1e-5, epsilon_spent=0.9))
        rows += _evaluation(gen, 1.0, 0, "old", [Measurement("old-score", 0.3, False),
                                                 Measurement("old-detail", 0.1, False)], flags=False)
    append_rows(d / "results.jsonl", rows)
    return d


ALL_ATTACK_COLUMNS = [f"{p}-{s}" for p in ("mia", "quiet") for s in (
    "auc", "tpr@1%fpr", "tpr@0.1%fpr", "balanced-accuracy", "epsilon-lb", "epsilon-violation")] + [
    "old-score", "old-detail"]
COMPACT_ATTACK_COLUMNS = ["mia-auc", "mia-tpr@1%fpr", "mia-epsilon-lb", "mia-epsilon-violation",
                          "quiet-auc", "quiet-tpr@1%fpr", "quiet-epsilon-lb", "old-score"]


def _attack_header(md):
    """Measurement names in the header of the first attack table of a Markdown board."""
    table = md.split("## Attacks (privacy)")[1]
    head = next(line for line in table.splitlines() if line.startswith("| dataset"))
    return [h.strip().removesuffix(" ↓").removesuffix(" ↑") for h in head.strip("| ").split(" | ")[5:]]


def test_headlines_are_the_flagged_rows_or_else_the_first():
    assert resolve_headlines([False, True, False]) == [False, True, False]
    assert resolve_headlines([None, None]) == [True, False]  # a plugin that sets no flag
    assert resolve_headlines([]) == []


def test_compact_view_keeps_headlines_and_raised_violations_full_shows_all(attack_dir):
    board = build_board(load_rows([attack_dir]))
    assert [c.name for c in board.columns if c.kind == "attack"] == ALL_ATTACK_COLUMNS
    compact = render(board, "md")
    assert _attack_header(compact) == COMPACT_ATTACK_COLUMNS
    # dropped: the non-headline numbers and a violation column that never fired (all 0)
    for gone in ("mia-balanced-accuracy", "mia-tpr@0.1%fpr", "quiet-epsilon-violation", "old-detail"):
        assert gone not in compact
    # the violation is flagged exactly as in the full view: banner on top, its column kept
    assert len(board.violations) == 1 and board.violations[0].startswith("d / g1 / ε=1 / seed 0 — mia-epsilon-violation:")
    assert compact.index("Privacy claim violated") < compact.index("## Utility")
    assert "8 of 14 attack columns" in compact and "`ppds leaderboard DIR --full`" in compact
    assert "| acc ↑ | acc-top2 ↑ |" in compact  # metric tables are never cut

    full = render(board, "md", full=True)
    assert _attack_header(full) == ALL_ATTACK_COLUMNS and "Compact view" not in full
    assert "Privacy claim violated" in full
    html_compact, html_full = render(board, "html"), render(board, "html", full=True)
    assert "mia-balanced-accuracy" not in html_compact and "mia-epsilon-violation" in html_compact
    assert "mia-balanced-accuracy" in html_full and "<code>ppds leaderboard DIR --full</code>" in html_compact


def test_cli_full_flag_and_machine_formats_carry_every_measurement(attack_dir, tmp_path, capsys):
    assert main(["leaderboard", str(attack_dir), "--format", "md"]) == 0
    assert _attack_header(capsys.readouterr().out) == COMPACT_ATTACK_COLUMNS
    assert main(["leaderboard", str(attack_dir), "--format", "md", "--full"]) == 0
    assert _attack_header(capsys.readouterr().out) == ALL_ATTACK_COLUMNS
    assert main(["leaderboard", str(attack_dir)]) == 0  # the terminal table, compact
    term = capsys.readouterr().out
    assert "mia-epsilon-violation" in term and "mia-balanced-accuracy" not in term and "--full" in term
    assert main(["leaderboard", str(attack_dir), "--full"]) == 0
    assert "mia-balanced-accuracy" in capsys.readouterr().out
    for fmt in ("csv", "json"):
        texts = []
        for extra in ([], ["--full"]):
            assert main(["leaderboard", str(attack_dir), "--format", fmt, *extra]) == 0
            texts.append(capsys.readouterr().out)
        assert texts[0] == texts[1]  # --full changes nothing: they always hold every measurement
    data = json.loads(texts[1])
    assert [c["name"] for c in data["columns"] if c["kind"] == "attack"] == ALL_ATTACK_COLUMNS
    heads = {c["name"] for c in data["columns"] if c["kind"] == "attack" and c["headline"]}
    assert heads == set(COMPACT_ATTACK_COLUMNS) - {"mia-epsilon-violation"}
    assert main(["leaderboard", str(attack_dir), "--format", "csv"]) == 0
    csv = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert all(name in csv.columns and f"{name} status" in csv.columns for name in ALL_ATTACK_COLUMNS)


def test_run_folder_gets_a_compact_board_and_a_full_one(attack_dir):
    written = {p.name for p in write_leaderboards(attack_dir)}
    assert {"leaderboard.md", "leaderboard-full.md", "leaderboard.html", "leaderboard-full.html",
            "leaderboard.csv", "leaderboard.json"} <= written
    compact = (attack_dir / "leaderboard.md").read_text()
    assert _attack_header(compact) == COMPACT_ATTACK_COLUMNS and "`leaderboard-full.md`" in compact
    assert _attack_header((attack_dir / "leaderboard-full.md").read_text()) == ALL_ATTACK_COLUMNS
    assert "<code>leaderboard-full.html</code>" in (attack_dir / "leaderboard.html").read_text()
    csv = pd.read_csv(attack_dir / "leaderboard.csv")
    assert set(ALL_ATTACK_COLUMNS) <= set(csv.columns)


# --------------------------------------------------------------------------- violation role


def _flags(tmp_path, *rows):
    d = tmp_path / "flags"
    d.mkdir()
    """A board of one attack evaluation: its headline ``auc`` and the given (name, value, keys) rows."""
    base = [_row("g1", 1.0, 0, "acc", 0.8, True), _row("g1", 1.0, 0, "auc", 0.6, False, kind="attack")
            | {"headline": True, "measurement": "m-attack"}]
    append_rows(d / "results.jsonl", base + [
        _row("g1", 1.0, 0, name, value, False, kind="attack") | extra | {"measurement": "m-attack"}
        for name, value, extra in rows])
    return build_board(load_rows([d]))


def test_a_violation_role_is_flagged_and_kept_in_view_whatever_its_name(tmp_path):
    board = _flags(tmp_path, ("canary-check", 1.0, {"role": "violation", "headline": False}))
    assert board.violations == ["d / g1 / ε=1 / seed 0 — canary-check"]
    compact = render(board, "md")
    assert "Privacy claim violated" in compact and "canary-check" in _attack_header(compact)


def test_a_value_named_like_a_violation_is_not_flagged(tmp_path):
    board = _flags(tmp_path, ("auc-epsilon-violation", 1.0, {"role": "value", "headline": False}))
    assert board.violations == []
    assert "auc-epsilon-violation" not in _attack_header(render(board, "md"))


def test_rows_from_before_the_role_are_read_by_the_old_naming_rule(tmp_path):
    d = tmp_path / "old"
    d.mkdir()
    rows = [_row("g1", 1.0, 0, "acc", 0.8, True),
            _row("g1", 1.0, 0, "auc", 0.6, False, kind="attack") | {"measurement": "m-attack"},
            _row("g1", 1.0, 0, "x-rero-violation@mu=2", 1.0, False, kind="attack") | {"measurement": "m-attack"}]
    # as an older ppds wrote them, not through ResultRow: no `role` key
    (d / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert all("role" not in r for r in load_rows([d]))
    board = build_board(load_rows([d]))
    assert board.violations == ["d / g1 / ε=1 / seed 0 — x-rero-violation@mu=2"]
    assert "x-rero-violation@mu=2" in _attack_header(render(board, "md"))
