"""Plots of a run: privacy–utility curves, attack ROC curves, empirical ε lower bounds
against the claimed ε, and sample grids (the real data's beside the generators').

Matplotlib with the Agg backend (no display needed, safe in worker processes).
Every curve plot is written as a 150-dpi PNG (what the HTML board embeds) and an
SVG beside it (for papers); a generator keeps one colour in every plot and an ε
one line style and marker, so a reader can follow a cell from plot to plot.
ROC curves use log-log axes because what matters for membership inference is
the true-positive rate at *low* false-positive rates (Carlini et al., 2022);
a linear ROC hides exactly that region.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..atomic import atomic_open, atomic_write_bytes  # noqa: E402
from ..budget import format_epsilon  # noqa: E402
from ..imageset import ImageSet  # noqa: E402
from ..safe_load import inside  # noqa: E402

__all__ = ["sample_grid", "privacy_utility_plots", "roc_plots", "epsilon_bound_plots", "sample_grid_plots",
           "make_plots", "slug"]

log = logging.getLogger("ppds.report")


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-") or "x"


def sample_grid(images: ImageSet, path: str | Path, title: str = "", per_class: int = 8,
                max_classes: int = 10) -> Path:
    """A mosaic with one row per class (up to ``max_classes``), ``per_class`` images each.

    Tiled by ``torchvision.utils.make_grid`` (a class with fewer images leaves
    blanks) and drawn with one ``imshow``: a grid of subplots costs seconds per
    figure, and a run draws one per cell.
    """
    import torch
    from torchvision.utils import make_grid

    path = Path(path)
    imgs = images.images.clamp(0, 1).float()
    labels = images.labels.numpy()
    classes = [c for c in range(images.num_classes) if (labels == c).any()][:max_classes]
    c_, h, w = imgs.shape[1:]
    pad = max(1, h // 8)
    rows = [np.flatnonzero(labels == c)[:per_class] for c in classes] or [np.arange(min(len(imgs), per_class))]
    tiles = torch.ones((len(rows) * per_class, c_, h, w))
    for r, idx in enumerate(rows):
        tiles[r * per_class : r * per_class + len(idx)] = imgs[torch.as_tensor(idx, dtype=torch.long)]
    mosaic = make_grid(tiles, nrow=per_class, padding=pad, pad_value=1.0)  # 3×H×W (grey repeated)
    mosaic = (mosaic.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    scale = 0.9 / max(h, w) * 8
    fig, ax = plt.subplots(figsize=(max(2.0, per_class * scale * w / 8 + 1), max(1.5, len(rows) * scale * h / 8 + 0.6)))
    if c_ == 1:
        ax.imshow(mosaic[:, :, 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(mosaic[:, :, :3], interpolation="nearest")
    ax.set_xticks([])
    if classes:
        ax.set_yticks([pad + r * (h + pad) + h / 2 for r in range(len(rows))])
        ax.set_yticklabels([images.class_names[c] for c in classes], fontsize=7)
    else:
        ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    _save(fig, path, vector=False)
    return path


#: legible at a column's width in a paper: axis labels, ticks, legends, titles; SVG text
#: stays text (editable, searchable) instead of outlines
_FONTS = {"svg.fonttype": "none", "font.size": 9, "axes.labelsize": 9, "xtick.labelsize": 8,
          "ytick.labelsize": 8, "legend.fontsize": 8, "axes.titlesize": 10}
#: a line style and marker per ε (finite ε beyond these cycle through the rest)
_EPS_STYLES = {1.0: (":", "v"), 10.0: ("--", "s"), math.inf: ("-", "o")}
_MORE_STYLES = [("-.", "^"), ((0, (3, 1, 1, 1)), "D"), ((0, (5, 2)), "P"), ((0, (1, 1)), "X")]


class _Styles:
    """One colour per generator, one (line style, marker) per ε, stable across a run's plots."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        gens = sorted({str(r.get("generator")) for r in rows if r.get("generator")})
        cmap = plt.get_cmap("tab10")
        self.colours = {g: cmap(i % 10) for i, g in enumerate(gens)}
        extra = sorted({float(r["epsilon"]) for r in rows if isinstance(r.get("epsilon"), (int, float))}
                       - set(_EPS_STYLES))
        self.eps = dict(_EPS_STYLES) | {e: _MORE_STYLES[i % len(_MORE_STYLES)] for i, e in enumerate(extra)}

    def colour(self, generator: str):
        return self.colours.get(str(generator), "0.3")

    def line(self, epsilon: float) -> tuple[Any, str]:
        return self.eps.get(float(epsilon), ("-", "o"))


def _save(fig, path: Path, vector: bool = True) -> None:
    """PNG at 150 dpi (and, with ``vector``, an SVG beside it) through
    :func:`~ppds_core.atomic.atomic_open`: a planted link cannot redirect either."""
    with atomic_open(path) as fh:
        fig.savefig(fh, format="png", dpi=150)
    if vector:
        with atomic_open(path.with_suffix(".svg")) as fh:
            fig.savefig(fh, format="svg")
    plt.close(fig)


def _eps_positions(eps_values: Iterable[float]) -> dict[float, float]:
    """x positions on a log axis, with ∞ one decade right of the largest finite ε."""
    finite = sorted(e for e in set(eps_values) if math.isfinite(e))
    pos = {e: e for e in finite}
    pos[math.inf] = (max(finite) * 10) if finite else 10.0
    return pos


def privacy_utility_plots(rows: list[dict[str, Any]], out_dir: Path,
                          styles: _Styles | None = None) -> list[Path]:
    """One plot per (dataset, metric): ε vs the metric, one line per generator (its colour),
    ±std over seeds; the real-data row, when measured, as a grey horizontal line."""
    import pandas as pd

    styles = styles or _Styles(rows)
    real = {(r["dataset"], r["name"]): r["value"] for r in rows
            if r.get("kind") == "metric" and r.get("status") == "ok" and r.get("reference_data")
            and isinstance(r.get("value"), (int, float))}
    ok = [r for r in rows if r.get("kind") == "metric" and r.get("status") == "ok"
          and not r.get("reference_data")]
    if not ok:
        return []
    df = pd.DataFrame(ok)
    paths = []
    for (dataset, name), part in df.groupby(["dataset", "name"], sort=True):
        pos = _eps_positions(part["epsilon"])
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for gen, g in part.groupby("generator", sort=True):
            stats = g.groupby("epsilon")["value"].agg(["mean", "std"]).sort_index()
            xs = [pos[e] for e in stats.index]
            ax.errorbar(xs, stats["mean"], yerr=stats["std"].fillna(0), marker="o", capsize=3,
                        label=gen, color=styles.colour(gen))
        if (dataset, name) in real:
            ax.axhline(real[(dataset, name)], color="0.45", ls="--", lw=1, label="real data")
        hib = part["higher_is_better"].dropna()
        arrow = "" if hib.empty else (" ↑" if bool(hib.iloc[0]) else " ↓")
        ax.set_xscale("log")
        ticks = sorted(pos.values())
        ax.set_xticks(ticks)
        ax.set_xticklabels([format_epsilon(math.inf if t == pos[math.inf] else t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("target ε (∞ = non-private)")
        ax.set_ylabel(f"{name}{arrow}")
        ax.set_title(f"{dataset}: privacy–utility, {name}")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out_dir / f"privacy-utility_{slug(dataset)}_{slug(name)}.png"
        _save(fig, path)
        paths.append(path)
    return paths


def _run_dir(row: dict[str, Any]) -> Path:
    return Path(row.get("_run_dir", "."))


def roc_plots(rows: list[dict[str, Any]], out_dir: Path, styles: _Styles | None = None) -> list[Path]:
    """One log-log ROC per (dataset, attack) from the ``scores.npz`` attacks leave behind,
    by :func:`ppds_core.evaluation.roc_curve`, each curve's AUC in its legend entry.

    Rows carry ``_run_dir`` (added by the leaderboard's loader); ``scores`` is
    relative to it.
    """
    from ..evaluation.roc import auc, roc_curve

    styles = styles or _Styles(rows)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    seen: set[tuple[Path, str]] = set()
    for r in rows:
        rel = r.get("scores")
        if r.get("kind") != "attack" or r.get("status") != "ok" or not rel:
            continue
        if (_run_dir(r), rel) in seen:
            continue
        seen.add((_run_dir(r), rel))
        groups.setdefault((r["dataset"], r.get("evaluator", r["name"])), []).append(r)
    paths = []
    for (dataset, attack), group in sorted(groups.items()):
        fig, ax = plt.subplots(figsize=(5, 5))
        drawn = 0
        floor = 1.0
        seeds = {r["seed"] for r in group}
        for r in sorted(group, key=lambda r: (r["generator"], r["epsilon"], r["seed"])):
            try:
                scores_file = inside(r["scores"], _run_dir(r), "a results row's `scores`")
                with np.load(scores_file, allow_pickle=False) as z:
                    scores, member = np.asarray(z["scores"], float), np.asarray(z["is_member"], bool)
                if member.all() or not member.any():
                    continue
                curve = roc_curve(scores, member)
            except Exception as err:  # a bad score file costs its curve, not the plot
                log.warning("skipping ROC of %s: %s", r["scores"], err)
                continue
            eps = format_epsilon(r["epsilon"])
            # the smallest FPR this many non-members can resolve sets the left edge
            floor = min(floor, 1.0 / max(1, curve.n_nonmembers))
            ls, marker = styles.line(r["epsilon"])
            seed = f" s{r['seed']}" if len(seeds) > 1 else ""
            ax.plot(np.clip(curve.fpr, 1e-6, 1), np.clip(curve.tpr, 1e-6, 1), lw=1.3, ls=ls,
                    color=styles.colour(r["generator"]),
                    label=f"{r['generator']} ε={eps}{seed} (AUC {auc(curve):.3f})")
            drawn += 1
        if not drawn:
            plt.close(fig)
            continue
        grid = np.logspace(-6, 0, 60)
        ax.plot(grid, grid, color="0.5", ls=(0, (1, 2)), lw=0.8, label="chance")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(floor / 2, 1)
        ax.set_ylim(floor / 2, 1)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title(f"{dataset}: {attack} ROC (log-log)")
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        path = out_dir / f"roc_{slug(dataset)}_{slug(attack)}.png"
        _save(fig, path)
        paths.append(path)
    return paths


def epsilon_bound_plots(rows: list[dict[str, Any]], out_dir: Path,
                        styles: _Styles | None = None) -> list[Path]:
    """One plot per dataset: each attack's empirical ε lower bound against the ε the cell
    spent (one point per cell and attack; finite ε only). A point above the diagonal
    would be a measured violation of the claim; the board flags it too."""
    styles = styles or _Styles(rows)
    points: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if (r.get("status") == "ok" and str(r.get("name", "")).endswith("epsilon-lb")
                and isinstance(r.get("value"), (int, float))
                and isinstance(r.get("epsilon_spent"), (int, float))
                and math.isfinite(r["epsilon_spent"]) and not r.get("reference_data")):
            points.setdefault(r["dataset"], []).append(r)
    markers = ["o", "s", "^", "D", "v", "P", "X", "*"]
    paths = []
    for dataset, pts in sorted(points.items()):
        attacks = sorted({p["name"][: -len("-epsilon-lb")].rstrip("-") or p["name"] for p in pts})
        fig, ax = plt.subplots(figsize=(5, 4))
        top = max([p["epsilon_spent"] for p in pts] + [p["value"] for p in pts] + [1.0]) * 1.1
        ax.plot([0, top], [0, top], color="0.3", lw=1, ls="--", label="ε lower bound = ε spent (violation above)")
        gens_drawn: set[str] = set()
        for p in pts:
            attack = p["name"][: -len("-epsilon-lb")].rstrip("-") or p["name"]
            m = markers[attacks.index(attack) % len(markers)]
            ax.scatter(p["epsilon_spent"], p["value"], marker=m, s=28, color=styles.colour(p["generator"]),
                       edgecolors="red" if p["value"] > p["epsilon_spent"] else "none", zorder=3)
            gens_drawn.add(p["generator"])
        for g in sorted(gens_drawn):  # legend: colours = generators, markers = attacks
            ax.scatter([], [], color=styles.colour(g), marker="o", label=g)
        for i, a in enumerate(attacks):
            ax.scatter([], [], color="0.4", marker=markers[i % len(markers)], label=a)
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_xlabel("ε spent (the ledger's, recomputed by the core)")
        ax.set_ylabel("empirical ε lower bound (95 %)")
        ax.set_title(f"{dataset}: measured leakage vs the privacy claim")
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out_dir / f"epsilon-bounds_{slug(dataset)}.png"
        _save(fig, path)
        paths.append(path)
    return paths


def sample_grid_plots(rows: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """A sample grid per cell, named by dataset, generator, ε and seed, and the real data's
    (``samples_<dataset>_real-data_seed<s>.png``, drawn by the runner from the private
    split the generators were trained on) to put beside them."""
    paths = []
    seen: set[str | None] = set()
    for r in rows:
        cell = r.get("cell")
        if not cell or cell in seen:
            continue
        seen.add(cell)
        if r.get("reference_data"):
            real = _run_dir(r) / "cells" / cell / "samples.png"
            if real.exists():
                try:
                    real = inside(real.absolute(), _run_dir(r), f"cell {cell}'s samples.png")
                    path = out_dir / f"samples_{slug(r['dataset'])}_real-data_seed{r['seed']}.png"
                    atomic_write_bytes(path, real.read_bytes())
                    paths.append(path)
                except Exception as err:
                    log.warning("no real-data grid for %s: %s", real, err)
            continue
        npz = _run_dir(r) / "cells" / cell / "samples.npz"
        if not npz.exists():
            continue
        eps = format_epsilon(r["epsilon"], "ascii")
        path = out_dir / f"samples_{slug(r['dataset'])}_{slug(r['generator'])}_eps{eps}_seed{r['seed']}.png"
        if path.exists() and path.stat().st_mtime >= npz.stat().st_mtime:
            paths.append(path)
            continue
        try:  # a results row (or a link in the cell) must not point the copy outside the run
            npz = inside(npz.absolute(), _run_dir(r), f"cell {cell}'s samples.npz")
            drawn = npz.with_name("samples.png")  # drawn when the cell was fitted
            if drawn.exists():
                drawn = inside(drawn.absolute(), _run_dir(r), f"cell {cell}'s samples.png")
                atomic_write_bytes(path, drawn.read_bytes())
            else:
                sample_grid(ImageSet.load_npz(npz), path,
                            title=f"{r['dataset']} · {r['generator']} · ε={eps} · seed {r['seed']}")
            paths.append(path)
        except Exception as err:
            log.warning("no sample grid for %s: %s", npz, err)
    return paths


def make_plots(rows: list[dict[str, Any]], out_dir: str | Path) -> list[Path]:
    """Every plot of these rows (from one or several run folders) into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    styles = _Styles(rows)
    with plt.rc_context(_FONTS):
        for fn in (privacy_utility_plots, roc_plots, epsilon_bound_plots):
            try:
                paths.extend(fn(rows, out_dir, styles))
            except Exception:  # one broken plot must not cost the others or the leaderboard
                log.exception("a plot failed in %s", out_dir)
        try:
            paths.extend(sample_grid_plots(rows, out_dir))
        except Exception:
            log.exception("a plot failed in %s", out_dir)
    return paths
