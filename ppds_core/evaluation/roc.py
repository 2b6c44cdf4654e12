"""ROC analysis of a membership test, and the ε it empirically rules out.

Every attack in ppds reduces to scores (higher = "member") for candidates
whose membership is known, so one set of functions turns any attack into
the numbers a privacy researcher compares across papers:

- the ROC curve and its AUC;
- TPR at a low FPR, with the *strict* ``FPR < target`` convention of the
  LiRA reference code (``tpr[np.where(fpr < .001)[0][-1]]``), so a curve that
  only reaches 0.1 % FPR exactly does not count as "at 0.1 %";
- balanced accuracy at the best threshold, ``max (TPR + 1 − FPR) / 2``;
- the empirical ε lower bound of Jagielski et al. 2020: an (ε, δ)-DP mechanism
  forces ``TPR ≤ e^ε·FPR + δ`` for *every* test, hence
  ``ε ≥ log((TPR − δ) / FPR)``. Rates estimated from finitely many candidates
  get Clopper–Pearson intervals; the statistically valid lower bound uses the
  pessimistic ends (TPR's lower end, FPR's upper end). The complementary test
  (``1 − FPR ≤ e^ε·(1 − TPR) + δ``) is bounded too.

Choosing the best threshold and direction on the same scores the bound is
evaluated on makes it optimistic (a multiple comparison: the auditing
literature's convention, 8 % false positives at a nominal 5 % with no
leakage). ``epsilon_lower_bound`` therefore chooses them on a seeded half of
the candidates and evaluates on the other half (or Bonferroni-corrects over
all thresholds), so the bound holds at the level it states.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

__all__ = [
    "RocCurve",
    "roc_curve",
    "auc",
    "auc_confidence_interval",
    "tpr_at_fpr",
    "balanced_accuracy",
    "clopper_pearson",
    "EpsilonBound",
    "epsilon_lower_bound",
    "epsilon_from_rates",
]


@dataclass(frozen=True)
class RocCurve:
    """FPR, TPR and the score threshold of each point (test: ``score ≥ threshold``)."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    n_members: int
    n_nonmembers: int


def _check(scores, is_member) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    m = np.asarray(is_member).reshape(-1).astype(bool)
    if s.shape != m.shape:
        raise ValueError(f"{s.shape[0]} scores but {m.shape[0]} membership labels")
    if not m.any() or m.all():
        raise ValueError("need at least one member and one non-member candidate")
    if np.isnan(s).any():
        raise ValueError(f"{int(np.isnan(s).sum())} scores are NaN")
    return s, m


def roc_curve(scores, is_member) -> RocCurve:
    """The full ROC curve, one point per distinct score plus (0, 0).

    Ties are handled as a block (all candidates with an equal score are
    accepted together), so the curve does not depend on candidate order.
    """
    s, m = _check(scores, is_member)
    order = np.argsort(-s, kind="mergesort")
    s, m = s[order], m[order]
    last_of_block = np.r_[np.diff(s) != 0, True]
    tp = np.cumsum(m)[last_of_block]
    fp = np.cumsum(~m)[last_of_block]
    n_in, n_out = int(m.sum()), int((~m).sum())
    tpr = np.r_[0.0, tp / n_in]
    fpr = np.r_[0.0, fp / n_out]
    thr = np.r_[np.inf, s[last_of_block]]
    return RocCurve(fpr, tpr, thr, n_in, n_out)


def auc(curve: RocCurve) -> float:
    """Area under the ROC curve (trapezoids; ties count one half)."""
    return float(np.trapezoid(curve.tpr, curve.fpr))


def auc_confidence_interval(curve: RocCurve, confidence: float = 0.95) -> tuple[float, float]:
    """Normal-approximation interval of the AUC with the Hanley–McNeil (1982) standard error.

    Enough to say whether an attack is distinguishable from chance (0.5 inside
    or outside the interval); it treats candidates as independent.
    """
    a = auc(curve)
    n1, n2 = curve.n_members, curve.n_nonmembers
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n2 - 1) * (q2 - a * a)) / (n1 * n2)
    half = float(stats.norm.ppf(0.5 + confidence / 2)) * math.sqrt(max(var, 0.0))
    return max(0.0, a - half), min(1.0, a + half)


def tpr_at_fpr(curve: RocCurve, target_fpr: float) -> float:
    """Largest TPR among points with FPR strictly below ``target_fpr``."""
    ok = curve.fpr < target_fpr
    return float(curve.tpr[ok].max()) if ok.any() else 0.0


def balanced_accuracy(curve: RocCurve) -> float:
    """Best balanced accuracy over thresholds: max (TPR + 1 − FPR) / 2."""
    return float(np.max((curve.tpr + 1.0 - curve.fpr) / 2.0))


def clopper_pearson(k, n, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Exact two-sided binomial interval for k successes in n trials (vectorised)."""
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64) * np.ones_like(k)
    alpha = 1.0 - confidence
    with np.errstate(invalid="ignore"):
        lo = np.where(k > 0, stats.beta.ppf(alpha / 2, k, n - k + 1), 0.0)
        hi = np.where(k < n, stats.beta.ppf(1 - alpha / 2, k + 1, n - k), 1.0)
    return lo, hi


def epsilon_from_rates(tpr, fpr, delta: float) -> np.ndarray:
    """log((TPR − δ) / FPR), elementwise: −inf where TPR ≤ δ, +inf where FPR = 0."""
    tpr = np.asarray(tpr, dtype=np.float64)
    fpr = np.asarray(fpr, dtype=np.float64)
    num = tpr - delta
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(num > 0, np.log(np.maximum(num, 1e-300)) - np.log(fpr), -np.inf)
    return out


@dataclass(frozen=True)
class EpsilonBound:
    """An empirical ε lower bound and where it was found.

    ``lower`` is the Clopper–Pearson bound at ``confidence`` (what one may
    claim: "ε is at least this"); ``point`` the plug-in estimate at the same
    threshold; ``upper`` the optimistic end of the interval (can be inf when
    no non-member is accepted). All three are ≥ 0: a test that does no better
    than chance rules out nothing. ``selection`` says how the threshold was
    chosen (``split``, ``bonferroni`` or ``fixed``) and ``n_members`` /
    ``n_nonmembers`` how many candidates the bound was evaluated on.
    """

    lower: float
    point: float
    upper: float
    threshold: float
    tpr: float
    fpr: float
    complementary: bool
    confidence: float
    delta: float
    selection: str = "split"
    n_members: int = 0
    n_nonmembers: int = 0


def _bounds_one_side(tp, fp, n_in, n_out, delta, confidence):
    tpr_lo, tpr_hi = clopper_pearson(tp, n_in, confidence)
    fpr_lo, fpr_hi = clopper_pearson(fp, n_out, confidence)
    lower = epsilon_from_rates(tpr_lo, fpr_hi, delta)
    point = epsilon_from_rates(tp / n_in, fp / n_out, delta)
    upper = epsilon_from_rates(tpr_hi, fpr_lo, delta)
    return lower, point, upper


def _counts(s: np.ndarray, m: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(members, non-members) with score ≥ t, for each t."""
    s_in, s_out = np.sort(s[m]), np.sort(s[~m])
    tp = len(s_in) - np.searchsorted(s_in, thresholds, side="left")
    fp = len(s_out) - np.searchsorted(s_out, thresholds, side="left")
    return tp.astype(np.float64), fp.astype(np.float64)


def _both_directions(tp, fp, n_in, n_out, delta, confidence):
    """Per threshold: (lower, point, upper) of the test and of its complement."""
    # the test itself: members accepted (tp) vs non-members accepted (fp) ...
    one = _bounds_one_side(tp, fp, n_in, n_out, delta, confidence)
    # ... and its complement: non-members rejected vs members rejected
    two = _bounds_one_side(n_out - fp, n_in - tp, n_out, n_in, delta, confidence)
    return one, two


def _clean(x: float) -> float:
    return max(0.0, float(x)) if not math.isnan(x) else 0.0


def _split(m: np.ndarray, seed: int) -> np.ndarray:
    """A seeded half of each class (members, non-members): True = selection half."""
    rng = np.random.default_rng(seed)
    pick = np.zeros(len(m), dtype=bool)
    for cls in (True, False):
        idx = np.flatnonzero(m == cls)
        pick[rng.permutation(idx)[: len(idx) // 2]] = True
    return pick


#: how the threshold (and direction) of the bound is chosen without spending its confidence
SELECTIONS = ("split", "bonferroni")


@dataclass(frozen=True)
class _Plan:
    """Which thresholds the bound is evaluated at, on which candidates, at which level.

    ``complementary`` is the direction fixed in advance (``split``: chosen on
    the other half), or None when the best of both directions is taken on
    the evaluated candidates themselves (``bonferroni``, ``fixed``), which
    the level then pays for.
    """

    selection: str
    thresholds: np.ndarray
    level: float
    scores: np.ndarray
    is_member: np.ndarray
    complementary: bool | None


def _choose_on_half(s, m, delta, confidence, seed) -> tuple[np.ndarray, np.ndarray, bool]:
    """(selection mask, best threshold, complementary?) chosen on a seeded half of the candidates.

    The threshold and direction are the ones maximising the Clopper–Pearson
    bound on the selection half; when nothing is provable there, the best
    plug-in estimate picks them instead, so a test is always chosen.
    """
    pick = _split(m, seed)
    s_sel, m_sel = s[pick], m[pick]
    thr_all = roc_curve(s_sel, m_sel).thresholds
    tp, fp = _counts(s_sel, m_sel, thr_all)
    (lo1, pt1, _), (lo2, pt2, _) = _both_directions(tp, fp, m_sel.sum(), (~m_sel).sum(),
                                                    delta, confidence)
    best = np.maximum(lo1, lo2)
    if not np.isfinite(best).any():  # nothing provable on this half: best plug-in test
        lo1, lo2 = np.nan_to_num(pt1, posinf=1e300), np.nan_to_num(pt2, posinf=1e300)
        best = np.maximum(lo1, lo2)
    i = int(np.argmax(best))
    return pick, thr_all[i:i + 1], bool(lo2[i] > lo1[i])


def _plan(s, m, delta, confidence, threshold, selection, seed) -> _Plan:
    """How ``epsilon_lower_bound`` spends its confidence, per the selection rule it documents."""
    alpha = 1.0 - confidence
    if threshold is not None:
        return _Plan("fixed", np.array([float(threshold)]), 1.0 - alpha / 2, s, m, None)
    if selection == "split" and min(m.sum(), (~m).sum()) < 2:
        selection = "bonferroni"  # a class too small to split
    if selection == "bonferroni":
        thr = roc_curve(s, m).thresholds
        return _Plan("bonferroni", thr, 1.0 - alpha / (2 * len(thr)), s, m, None)
    pick, thr, comp = _choose_on_half(s, m, delta, confidence, seed)
    return _Plan("split", thr, confidence, s[~pick], m[~pick], comp)


def _evaluate(plan: _Plan, delta: float, confidence: float) -> EpsilonBound:
    """The bound at the plan's thresholds on the plan's candidates, clamped to ≥ 0."""
    s, m = plan.scores, plan.is_member
    n_in, n_out = int(m.sum()), int((~m).sum())
    tp, fp = _counts(s, m, plan.thresholds)
    (lo1, pt1, up1), (lo2, pt2, up2) = _both_directions(tp, fp, n_in, n_out, delta, plan.level)
    if plan.complementary is not None:
        comp, i = plan.complementary, 0
        lower = lo2 if comp else lo1
    else:
        lower = np.maximum(lo1, lo2)
        i = int(np.argmax(lower))
        comp = bool(lo2[i] > lo1[i])
    pt, up = (pt2[i], up2[i]) if comp else (pt1[i], up1[i])
    low = _clean(lower[i])
    return EpsilonBound(
        lower=low,
        point=max(_clean(pt), low),
        upper=max(_clean(up), _clean(pt), low),
        threshold=float(plan.thresholds[i]),
        tpr=float(tp[i] / n_in),
        fpr=float(fp[i] / n_out),
        complementary=comp,
        confidence=confidence,
        delta=delta,
        selection=plan.selection,
        n_members=n_in,
        n_nonmembers=n_out,
    )


def epsilon_lower_bound(
    scores,
    is_member,
    delta: float,
    confidence: float = 0.95,
    threshold: float | None = None,
    *,
    selection: str = "split",
    seed: int = 0,
) -> EpsilonBound:
    """Empirical ε lower bound of the test "score ≥ t" (Jagielski et al. 2020), at its level.

    A Clopper–Pearson bound holds at ``confidence`` for *one* test fixed in
    advance; maximising it over every threshold and both directions on the
    same scores is a multiple comparison (with no leakage at 1,000
    candidates per side, P(bound > 0) was 8 % at a nominal 5 %). So:

    - ``selection="split"`` (default): a seeded random half of each class
      chooses the threshold and direction (the ones maximising the bound
      there); the bound is evaluated on the other half only.
    - ``selection="bonferroni"``: every threshold and both directions on all
      candidates, each at level α/(2·thresholds) (valid, conservative; used
      automatically when a class has fewer than 2 candidates to split).
    - ``threshold`` given (chosen elsewhere): that threshold on all
      candidates, both directions at α/2 each.

    ``confidence`` is the level of the returned ``lower`` in every case.
    """
    if not 0 <= delta < 1:
        raise ValueError(f"delta must be in [0, 1), got {delta}")
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    s, m = _check(scores, is_member)
    plan = _plan(s, m, delta, confidence, threshold, selection, seed)
    return _evaluate(plan, delta, confidence)
