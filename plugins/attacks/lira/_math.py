"""The LiRA statistics (Carlini et al. 2022), as in the reference code.

Per candidate, the signal φ observed on the target model is compared with
φ observed on shadow models that did (IN) and did not (OUT) train on it.
The reference code (tensorflow/privacy ``research/mi_lira_2021``) fits each
Gaussian with the *median* as its mean and the *population* std (ddof = 0)
and adds 1e-30 to the std; we do the same so scores are comparable.
"""

from __future__ import annotations

import numpy as np
from scipy import special, stats

__all__ = ["balanced_keep", "lira_online", "lira_offline_z", "lira_offline_probability"]

_TINY = 1e-30


def balanced_keep(shadow_models: int, n: int, rng: np.random.Generator,
                  pkeep: float = 0.5) -> np.ndarray:
    """K×N inclusion mask: every candidate is IN for exactly round(pkeep·K) shadows.

    The reference code's construction (argsort of uniform noise per column),
    so no candidate lacks IN or OUT observations when 0 < pkeep·K < K.
    """
    order = rng.random((shadow_models, n)).argsort(0)
    return order < int(round(pkeep * shadow_models))


def _fit(signals: np.ndarray, mask: np.ndarray, fix_variance: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-column median and population std of the entries where ``mask`` holds."""
    x = np.where(mask, signals, np.nan)
    if np.any(mask.sum(0) == 0):
        raise ValueError("some candidates have no observations on one side; use more shadow models")
    mu = np.nanmedian(x, axis=0)
    if fix_variance:
        sd = np.full_like(mu, np.nanstd(x))
    else:
        sd = np.nanstd(x, axis=0)
    return mu, sd + _TINY


def lira_online(target: np.ndarray, signals: np.ndarray, keep: np.ndarray,
                fix_variance: bool = False) -> np.ndarray:
    """log N(φ; μ_in, σ_in²) − log N(φ; μ_out, σ_out²) per candidate (higher = member).

    ``signals`` and ``keep`` are K×N (shadow × candidate); ``target`` is N
    (or A×N for A augmentations/queries, averaged as in the reference).
    """
    mu_in, sd_in = _fit(signals, keep, fix_variance)
    mu_out, sd_out = _fit(signals, ~keep, fix_variance)
    t = np.atleast_2d(target)
    score = stats.norm.logpdf(t, mu_in, sd_in) - stats.norm.logpdf(t, mu_out, sd_out)
    return score.mean(0)


def lira_offline_z(target: np.ndarray, signals: np.ndarray, keep: np.ndarray,
                   fix_variance: bool = False) -> np.ndarray:
    """(φ − μ_out) / σ_out per candidate: the offline test's statistic.

    The paper's offline score 1 − Pr[Z > φ] = Φ(z) is a monotone function of
    z, so ROC, AUC and TPR@FPR are identical; ranking by z avoids the ties
    that Φ saturating at 1.0 would create for strong members.
    """
    mu_out, sd_out = _fit(signals, ~keep, fix_variance)
    return ((np.atleast_2d(target) - mu_out) / sd_out).mean(0)


def lira_offline_probability(target: np.ndarray, signals: np.ndarray, keep: np.ndarray,
                             fix_variance: bool = False) -> np.ndarray:
    """The paper's offline score 1 − Pr[Z > φ], Z ~ N(μ_out, σ_out²)."""
    return special.ndtr(lira_offline_z(target, signals, keep, fix_variance))
