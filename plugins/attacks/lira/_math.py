"""The LiRA statistics (Carlini et al. 2022) in two conventions, and the shadow design.

Per candidate, the signal φ observed on the target model is compared with
φ observed on shadow models that did (IN) and did not (OUT) train on it.
Both conventions fit each Gaussian with the *median* as its mean and the
*population* std (ddof = 0) plus 1e-30, as the reference code
(tensorflow/privacy ``research/mi_lira_2021/plot.py``) does. They differ in
two places, where the paper and the reference code disagree:

================  ===========================================  ==========================================
                  ``paper`` (ppds' default)                     ``reference`` (``mi_lira_2021``)
================  ===========================================  ==========================================
fixed variance    σ_in = std(all IN signals),                   σ_in = σ_out = std(all IN signals)
(online)          σ_out = std(all OUT signals)                  (``generate_ours``, ``fix_variance``)
offline score     one-sided z = (φ − μ_out) / σ_out             −log N(φ; μ_out, σ_out²): two-sided
                  (the paper's 1 − Pr[Z > φ], same ROC)         (``generate_ours_offline``)
observations      every IN / OUT observation                    the first m of each side per candidate,
                                                                m = the fewest any candidate has
================  ===========================================  ==========================================

The per-candidate online score (no fixed variance) is the same in both.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import special, stats

__all__ = ["Convention", "CONVENTIONS", "matched_keep", "lira_online",
           "lira_offline", "lira_offline_z", "lira_offline_probability"]

Convention = Literal["paper", "reference"]
CONVENTIONS: tuple[str, ...] = ("paper", "reference")
_TINY = 1e-30


def matched_keep(shadow_models: int, pool: int, train_size: int,
                 rng: np.random.Generator) -> np.ndarray:
    """K×P inclusion mask: every shadow trains on exactly ``train_size`` of the ``pool``.

    Shadow k takes the ``train_size`` pool items that the shadows before it used
    least (ties broken at random), so every item is IN for ⌊K·n/P⌋ or ⌈K·n/P⌉
    shadows: the reference code's balance (each candidate IN about equally often)
    with the target's training-set size exactly. With P = 2n this pairs each
    random half with its complement.
    """
    if not 0 < train_size <= pool:
        raise ValueError(f"a shadow training set of {train_size} from a pool of {pool}")
    counts = np.zeros(pool, dtype=np.int64)
    keep = np.zeros((shadow_models, pool), dtype=bool)
    for k in range(shadow_models):
        order = np.lexsort((rng.random(pool), counts))
        keep[k, order[:train_size]] = True
        counts[order[:train_size]] += 1
    return keep


def _first(mask: np.ndarray, m: int) -> np.ndarray:
    """The first ``m`` True entries of each column (the reference's ``x[:in_size]``)."""
    return mask & (np.cumsum(mask, axis=0) <= m)


def _side(signals: np.ndarray, mask: np.ndarray, convention: Convention) -> np.ndarray:
    """The observations of one side (IN or OUT) as NaN-padded columns."""
    counts = mask.sum(0)
    if np.any(counts == 0):
        raise ValueError("some candidates have no observations on one side; use more shadow models")
    if convention == "reference":
        mask = _first(mask, int(counts.min()))
    return np.where(mask, signals, np.nan)


def _gaussian(x: np.ndarray, fix_variance: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-column median and population std (one global std when ``fix_variance``)."""
    mu = np.nanmedian(x, axis=0)
    sd = np.full_like(mu, np.nanstd(x)) if fix_variance else np.nanstd(x, axis=0)
    return mu, sd + _TINY


def lira_online(target: np.ndarray, signals: np.ndarray, keep: np.ndarray,
                fix_variance: bool = False, convention: Convention = "paper") -> np.ndarray:
    """log N(φ; μ_in, σ_in²) − log N(φ; μ_out, σ_out²) per candidate (higher = member).

    ``signals`` and ``keep`` are K×N (shadow × candidate); ``target`` is N
    (or A×N for A augmentations/queries, averaged as in the reference).
    """
    x_in, x_out = _side(signals, keep, convention), _side(signals, ~keep, convention)
    mu_in, sd_in = _gaussian(x_in, fix_variance)
    mu_out, sd_out = _gaussian(x_out, fix_variance)
    if fix_variance and convention == "reference":
        sd_out = sd_in  # generate_ours: std_out = np.std(dat_in)
    t = np.atleast_2d(target)
    score = stats.norm.logpdf(t, mu_in, sd_in) - stats.norm.logpdf(t, mu_out, sd_out)
    return score.mean(0)


def _out_fit(signals, keep, fix_variance, convention):
    return _gaussian(_side(signals, ~keep, convention), fix_variance)


def lira_offline_z(target: np.ndarray, signals: np.ndarray, keep: np.ndarray,
                   fix_variance: bool = False) -> np.ndarray:
    """(φ − μ_out) / σ_out per candidate: the paper's one-sided offline statistic.

    The paper's offline score 1 − Pr[Z > φ] = Φ(z) is a monotone function of
    z, so ROC, AUC and TPR@FPR are identical; ranking by z avoids the ties
    that Φ saturating at 1.0 would create for strong members.
    """
    mu_out, sd_out = _out_fit(signals, keep, fix_variance, "paper")
    return ((np.atleast_2d(target) - mu_out) / sd_out).mean(0)


def lira_offline(target: np.ndarray, signals: np.ndarray, keep: np.ndarray,
                 fix_variance: bool = False, convention: Convention = "paper") -> np.ndarray:
    """The offline score of ``convention`` (higher = member): the one-sided z, or −logpdf."""
    if convention == "paper":
        return lira_offline_z(target, signals, keep, fix_variance)
    mu_out, sd_out = _out_fit(signals, keep, fix_variance, convention)
    return (-stats.norm.logpdf(np.atleast_2d(target), mu_out, sd_out)).mean(0)


def lira_offline_probability(target: np.ndarray, signals: np.ndarray, keep: np.ndarray,
                             fix_variance: bool = False) -> np.ndarray:
    """The paper's offline score 1 − Pr[Z > φ], Z ~ N(μ_out, σ_out²)."""
    return special.ndtr(lira_offline_z(target, signals, keep, fix_variance))
