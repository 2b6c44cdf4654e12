"""The run's plots: styles a reader can follow, AUC in ROC legends, ε bounds against the claim,
vector copies, and sample grids tiled by torchvision."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ppds_core import ImageSet
from ppds_core.report import plots


def _row(gen, eps, name, value, kind="metric", **extra):
    return {"dataset": "digits", "generator": gen, "epsilon": eps, "epsilon_spent": eps, "seed": 0,
            "kind": kind, "name": name, "evaluator": extra.pop("evaluator", name), "value": value,
            "status": "ok", "higher_is_better": True, "cell": f"{gen}-{eps}",
            "reference_data": gen == "real-data", **extra}


def _scores(run, gen, eps, shift):
    rng = np.random.default_rng(0)
    member = np.arange(200) < 100
    scores = rng.normal(size=200) + shift * member
    rel = f"cells/{gen}-{eps}/scores.npz"
    (run / rel).parent.mkdir(parents=True, exist_ok=True)
    np.savez(run / rel, scores=scores, is_member=member)
    return rel


@pytest.fixture
def run_rows(tmp_path):
    rows = []
    for gen in ("gen-a", "gen-b"):
        for eps in (1.0, 10.0, math.inf):
            rows.append(_row(gen, eps, "downstream-accuracy", 0.5 + (eps if math.isfinite(eps) else 20) / 50))
            rows.append(_row(gen, eps, "mia-auc", 0.5, kind="attack", evaluator="mia",
                             scores=_scores(tmp_path, gen, eps, 1.0 if gen == "gen-a" else 0.0)))
            if math.isfinite(eps):
                rows.append(_row(gen, eps, "mia-epsilon-lb", 0.3 * eps if gen == "gen-a" else 0.0,
                                 kind="attack", evaluator="mia"))
    rows.append(_row("real-data", math.inf, "downstream-accuracy", 0.98))
    for r in rows:
        r["_run_dir"] = str(tmp_path)
    return rows


def test_every_curve_plot_has_an_svg_beside_its_png_and_the_roc_legend_names_each_auc(run_rows, tmp_path):
    out = tmp_path / "plots"
    paths = plots.make_plots(run_rows, out)
    names = {p.name for p in paths}
    assert "roc_digits_mia.png" in names and "epsilon-bounds_digits.png" in names
    assert "privacy-utility_digits_downstream-accuracy.png" in names
    for p in paths:
        assert p.suffix == ".png" and p.with_suffix(".svg").exists(), p
    svg = (out / "roc_digits_mia.svg").read_text()
    # 6 curves, each with its AUC; gen-a's scores separate members by one standard deviation
    assert svg.count("(AUC ") == 6
    assert "gen-a ε=1 (AUC 0.7" in svg and "gen-b ε=1 (AUC 0.5" in svg
    # the real-data row is the utility plot's reference line, not a generator's curve
    assert "real data" in (out / "privacy-utility_digits_downstream-accuracy.svg").read_text()


def test_the_bound_plot_draws_one_point_per_finite_cell_and_attack_and_the_violation_line(run_rows, tmp_path):
    run_rows.append(_row("gen-b", 1.0, "audit-epsilon-lb", 2.5, kind="attack", evaluator="audit"))
    (path,) = plots.epsilon_bound_plots(run_rows, tmp_path)
    svg = path.with_suffix(".svg").read_text()
    assert "violation above" in svg and "mia" in svg and "audit" in svg
    assert "ε spent" in svg


def test_a_generator_keeps_its_colour_and_an_epsilon_its_line_style_in_every_plot(run_rows):
    run_rows.append(_row("gen-a", 3.0, "downstream-accuracy", 0.6))
    styles = plots._Styles(run_rows)
    again = plots._Styles(list(reversed(run_rows)))
    assert styles.colour("gen-a") == again.colour("gen-a") != styles.colour("gen-b")
    assert len({styles.line(e) for e in (1.0, 10.0, math.inf)}) == 3
    assert styles.line(3.0) not in {styles.line(e) for e in (1.0, 10.0, math.inf)}


def test_sample_grids_are_tiled_by_torchvision_with_one_row_per_class(tmp_path, monkeypatch):
    import torchvision.utils

    calls = []
    real = torchvision.utils.make_grid

    def spy(tensor, **kw):
        calls.append((tuple(tensor.shape), kw.get("nrow")))
        return real(tensor, **kw)

    monkeypatch.setattr(torchvision.utils, "make_grid", spy)
    images = ImageSet(torch.rand(30, 1, 8, 8), torch.tensor([0] * 10 + [1] * 15 + [2] * 5),
                      ["a", "b", "c"], "x")
    path = plots.sample_grid(images, tmp_path / "grid.png", per_class=8)
    assert path.exists() and not path.with_suffix(".svg").exists()  # a bitmap stays a bitmap
    # 3 classes × 8 slots (class c has 5 images: 3 blanks), 8 per row
    assert calls == [((24, 1, 8, 8), 8)]
