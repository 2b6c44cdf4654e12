"""From membership scores to the rows every attack reports, and the scores file.

Naming scheme (one prefix per attack or variant, e.g. ``lira``,
``lira-offline``, ``gan-leaks``)::

    <prefix>-auc                 area under the ROC curve
    <prefix>-tpr@1%fpr           TPR at FPR < 1 %   (strict, LiRA convention)
    <prefix>-tpr@0.1%fpr         TPR at FPR < 0.1 % (strict)
    <prefix>-balanced-accuracy   best (TPR + 1 − FPR) / 2
    <prefix>-epsilon-lb          empirical ε lower bound (Clopper–Pearson 95 %), threshold
                                 and direction chosen on a seeded half of the candidates,
                                 bound evaluated on the other half (holds at its level)
    <prefix>-epsilon-violation   1.0 when that bound exceeds the ε spent (else 0.0);
                                 ``role="violation"``: the leaderboard flags it when raised

Headlines (``Measurement.headline``, what the leaderboard's compact attack
table shows): ``auc``, ``tpr@1%fpr`` and ``epsilon-lb`` by default — how well
the attack separates, how well at the low false-positive rates that matter,
and what that proves about ε. A caller picks others with ``headline=``.

Every row has ``higher_is_better=False``: a leaderboard reads attack success
as leakage, so the "best" entry is the most private one. A violation row is
written for every private model (value 0.0 when there is none) so its absence
never has to be interpreted; it is omitted for a non-private reference
(ε spent = ∞ cannot be violated).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..interfaces import Measurement
from .roc import (
    auc,
    auc_confidence_interval,
    balanced_accuracy,
    epsilon_lower_bound,
    roc_curve,
    tpr_at_fpr,
)

__all__ = ["membership_measurements", "write_scores", "read_scores", "HEADLINE"]

#: row suffixes marked ``headline`` unless the caller says otherwise
HEADLINE = ("auc", "tpr@1%fpr", "epsilon-lb")


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def membership_measurements(
    prefix: str,
    scores,
    is_member,
    *,
    delta: float,
    epsilon_spent: float | None,
    confidence: float = 0.95,
    headline: tuple[str, ...] = HEADLINE,
    selection: str = "split",
    seed: int = 0,
) -> list[Measurement]:
    """The six summary rows of a membership test (five for a non-private model).

    ``headline``: the row suffixes (``auc``, ``epsilon-lb`` …) to mark as headlines.
    ``selection``/``seed``: how the ε bound's threshold is chosen without spending its
    confidence (see :func:`~ppds_core.evaluation.roc.epsilon_lower_bound`); the
    violation row uses that same bound, so a correct model raises it at most
    ``1 − confidence`` of the time.
    """
    scores = np.asarray(scores, dtype=np.float64)
    is_member = np.asarray(is_member, dtype=bool)
    curve = roc_curve(scores, is_member)
    n = {"n_members": curve.n_members, "n_nonmembers": curve.n_nonmembers}
    lo, hi = auc_confidence_interval(curve, confidence)
    rows = [
        Measurement(f"{prefix}-auc", auc(curve), False,
                    {"ci_low": lo, "ci_high": hi, "confidence": confidence, **n}),
        Measurement(f"{prefix}-tpr@1%fpr", tpr_at_fpr(curve, 0.01), False,
                    {"tpr_at_fpr": 0.01, **n}),
        Measurement(f"{prefix}-tpr@0.1%fpr", tpr_at_fpr(curve, 0.001), False,
                    {"tpr_at_fpr": 0.001, **n}),
        Measurement(f"{prefix}-balanced-accuracy", balanced_accuracy(curve), False, dict(n)),
    ]
    b = epsilon_lower_bound(scores, is_member, delta=delta, confidence=confidence,
                            selection=selection, seed=seed)
    rows.append(Measurement(
        f"{prefix}-epsilon-lb", b.lower, False,
        {
            "ci_low": b.lower,
            "ci_high": _finite_or_none(b.upper),
            "point_estimate": _finite_or_none(b.point),
            "confidence": confidence,
            "threshold": _finite_or_none(b.threshold),
            "tpr": b.tpr,
            "fpr": b.fpr,
            "complementary_test": b.complementary,
            "delta": delta,
            "threshold_selection": b.selection,
            "split_seed": seed if b.selection == "split" else None,
            "n_eval_members": b.n_members,
            "n_eval_nonmembers": b.n_nonmembers,
            **n,
        },
    ))
    if epsilon_spent is not None and math.isfinite(epsilon_spent):
        violated = b.lower > epsilon_spent
        rows.append(Measurement(
            f"{prefix}-epsilon-violation", 1.0 if violated else 0.0, False,
            {"epsilon_lb": b.lower, "epsilon_spent": float(epsilon_spent), "confidence": confidence,
             "threshold_selection": b.selection},
            role="violation",
        ))
    for r in rows:
        r.headline = r.name.removeprefix(f"{prefix}-") in headline
    return rows


def write_scores(path: str | Path, scores, is_member, **extra) -> Path:
    """Write ``scores`` (higher = member) and ``is_member`` (+ any extra arrays), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.asarray(v) for k, v in extra.items()}
    from ..atomic import atomic_open  # random temp name: a planted link cannot redirect it

    with atomic_open(path) as fh:
        np.savez_compressed(fh, scores=np.asarray(scores, dtype=np.float64),
                            is_member=np.asarray(is_member, dtype=bool), **arrays)
    return path


def read_scores(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(scores, is_member) from a file :func:`write_scores` wrote."""
    with np.load(path, allow_pickle=False) as z:
        return z["scores"].astype(np.float64), z["is_member"].astype(bool)
