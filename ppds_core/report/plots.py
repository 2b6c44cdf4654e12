"""PNG plots of a run: privacy–utility curves, attack ROC curves, sample grids.

Matplotlib with the Agg backend (no display needed, safe in worker processes).
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

__all__ = ["sample_grid", "privacy_utility_plots", "roc_plots", "sample_grid_plots", "make_plots", "slug"]

log = logging.getLogger("ppds.report")


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-") or "x"


def sample_grid(images: ImageSet, path: str | Path, title: str = "", per_class: int = 8,
                max_classes: int = 10) -> Path:
    """A mosaic with one row per class (up to ``max_classes``), ``per_class`` images each.

    Tiled in numpy and drawn with one ``imshow``: a grid of subplots costs
    seconds per figure, and a run draws one per cell.
    """
    path = Path(path)
    arr = images.to_uint8()  # N×C×H×W
    labels = images.labels.numpy()
    classes = [c for c in range(images.num_classes) if (labels == c).any()][:max_classes]
    c_, h, w = arr.shape[1:]
    pad = max(1, h // 8)
    rows = [np.flatnonzero(labels == c)[:per_class] for c in classes] or [np.arange(min(len(arr), per_class))]
    mosaic = np.full((len(rows) * (h + pad) + pad, per_class * (w + pad) + pad, max(c_, 1)), 255, np.uint8)
    for r, idx in enumerate(rows):
        for k, i in enumerate(idx):
            y, x = pad + r * (h + pad), pad + k * (w + pad)
            mosaic[y : y + h, x : x + w, :] = np.transpose(arr[i], (1, 2, 0))
    scale = 0.9 / max(h, w) * 8
    fig, ax = plt.subplots(figsize=(max(2.0, per_class * scale * w / 8 + 1), max(1.5, len(rows) * scale * h / 8 + 0.6)))
    if mosaic.shape[2] == 1:
        ax.imshow(mosaic[:, :, 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(mosaic[:, :, :3], interpolation="nearest")
    ax.set_xticks([])
    if classes:
        ax.set_yticks([pad + r * (h + pad) + h / 2 for r in range(len(rows))])
        ax.set_yticklabels([images.class_names[c] for c in classes], fontsize=6)
    else:
        ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    _save(fig, path)
    return path


def _save(fig, path: Path) -> None:
    """PNG through :func:`~ppds_core.atomic.atomic_open`: a planted link cannot redirect it."""
    with atomic_open(path) as fh:
        fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)


def _eps_positions(eps_values: Iterable[float]) -> dict[float, float]:
    """x positions on a log axis, with ∞ one decade right of the largest finite ε."""
    finite = sorted(e for e in set(eps_values) if math.isfinite(e))
    pos = {e: e for e in finite}
    pos[math.inf] = (max(finite) * 10) if finite else 10.0
    return pos


def privacy_utility_plots(rows: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """One PNG per (dataset, metric): ε vs the metric, one line per generator, ±std over seeds."""
    import pandas as pd

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
            ax.errorbar(xs, stats["mean"], yerr=stats["std"].fillna(0), marker="o", capsize=3, label=gen)
        hib = part["higher_is_better"].dropna()
        arrow = "" if hib.empty else (" ↑" if bool(hib.iloc[0]) else " ↓")
        ax.set_xscale("log")
        ticks = sorted(pos.values())
        ax.set_xticks(ticks)
        ax.set_xticklabels([format_epsilon(math.inf if t == pos[math.inf] else t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlabel("target ε (∞ = non-private)")
        ax.set_ylabel(f"{name}{arrow}")
        ax.set_title(f"{dataset}: privacy–utility, {name}", fontsize=9)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out_dir / f"privacy-utility_{slug(dataset)}_{slug(name)}.png"
        _save(fig, path)
        paths.append(path)
    return paths


def _run_dir(row: dict[str, Any]) -> Path:
    return Path(row.get("_run_dir", "."))


def roc_plots(rows: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """One log-log ROC per (dataset, attack) from the ``scores.npz`` attacks leave behind.

    Rows carry ``_run_dir`` (added by the leaderboard's loader); ``scores`` is
    relative to it.
    """
    from sklearn.metrics import roc_curve

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
        fig, ax = plt.subplots(figsize=(4.5, 4.5))
        drawn = 0
        floor = 1.0
        for r in sorted(group, key=lambda r: (r["generator"], r["epsilon"], r["seed"])):
            try:
                scores_file = inside(r["scores"], _run_dir(r), "a results row's `scores`")
                with np.load(scores_file, allow_pickle=False) as z:
                    scores, member = np.asarray(z["scores"], float), np.asarray(z["is_member"], bool)
                if member.all() or not member.any():
                    continue
                fpr, tpr, _ = roc_curve(member, scores)
            except Exception as err:  # a bad score file costs its curve, not the plot
                log.warning("skipping ROC of %s: %s", r["scores"], err)
                continue
            eps = format_epsilon(r["epsilon"])
            # the smallest FPR this many non-members can resolve sets the left edge
            floor = min(floor, 1.0 / max(1, int((~member).sum())))
            ax.plot(np.clip(fpr, 1e-6, 1), np.clip(tpr, 1e-6, 1), lw=1,
                    label=f"{r['generator']} ε={eps} s{r['seed']}")
            drawn += 1
        if not drawn:
            plt.close(fig)
            continue
        grid = np.logspace(-6, 0, 60)
        ax.plot(grid, grid, "k--", lw=0.7, label="chance")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(floor / 2, 1)
        ax.set_ylim(floor / 2, 1)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title(f"{dataset}: {attack} ROC (log-log)", fontsize=9)
        ax.legend(fontsize=6)
        fig.tight_layout()
        path = out_dir / f"roc_{slug(dataset)}_{slug(attack)}.png"
        _save(fig, path)
        paths.append(path)
    return paths


def sample_grid_plots(rows: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """A sample grid per cell, named by dataset, generator, ε and seed."""
    paths = []
    seen: set[str | None] = set()
    for r in rows:
        cell = r.get("cell")
        if not cell or cell in seen or r.get("reference_data"):
            continue
        seen.add(cell)
        npz = _run_dir(r) / "cells" / cell / "samples.npz"
        if not npz.exists():
            continue
        eps = format_epsilon(r["epsilon"], "ascii")
        path = out_dir / f"samples_{slug(r['dataset'])}_{slug(r['generator'])}_eps{eps}_seed{r['seed']}.png"
        if path.exists() and path.stat().st_mtime >= npz.stat().st_mtime:
            paths.append(path)
            continue
        try:  # a results row (or a link in the cell) must not point the copy outside the run
            npz = inside(npz, _run_dir(r), f"cell {cell}'s samples.npz")
            drawn = npz.with_name("samples.png")  # drawn when the cell was fitted
            if drawn.exists():
                drawn = inside(drawn, _run_dir(r), f"cell {cell}'s samples.png")
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
    for fn in (lambda: privacy_utility_plots(rows, out_dir), lambda: roc_plots(rows, out_dir),
               lambda: sample_grid_plots(rows, out_dir)):
        try:
            paths.extend(fn())
        except Exception:  # one broken plot must not cost the others or the leaderboard
            log.exception("a plot failed in %s", out_dir)
    return paths
