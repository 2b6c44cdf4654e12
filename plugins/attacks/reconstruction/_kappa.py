"""ReRo's κ: the best guess-independent success, sup over z₀ of π(B_η(z₀)).

Hayes, Mahloujifar & Balle (2023) compare an attack with the blow-up γ(κ) of
the prior's *base* success rate κ = sup_{z₀} Pr_{z∼π}[MSE(z, z₀) ≤ η]: what an
adversary achieves by outputting one fixed guess without looking at the
release. It is a property of the prior π over targets, not of each target (the
prior's mass around a given target is typically far smaller: ≈ 0.001 on
digits where the average "0" alone hits 3–5 %), so using that mass understates
γ and makes the bound tighter than the theorem allows.

π here is how the attack draws its targets: uniformly from the private split.
The supremum over all images is not computable; it is taken over the guesses
an adversary would try first — the mean image, the per-class means (of π and
of the adversary's own data), the prior's samples and every image of π itself
(a "prior sample" that hits at least itself: κ ≥ 1/n, Hayes et al.'s uniform
case). Selecting the best guess on the sample it is scored on can only raise
the estimate, the conservative direction for a bound. When the π-sample is the
whole private split, the best guess's hit rate is exact; otherwise the
reported κ is the Clopper–Pearson upper end at ``confidence``, so κ is not
underestimated by sampling either.
"""

from __future__ import annotations

import numpy as np
import torch

from ppds_core.evaluation import clopper_pearson

__all__ = ["guess_hits", "estimate_kappa", "mean_guesses"]


def guess_hits(population: torch.Tensor, guesses: torch.Tensor, eta: float,
               chunk: int = 1024) -> np.ndarray:
    """For each guess, how many images of ``population`` lie within per-pixel MSE ≤ η."""
    pop = population.flatten(1).double()
    d = pop.shape[1]
    pop_sq = (pop**2).sum(1)
    out = []
    for lo in range(0, len(guesses), chunk):
        g = guesses[lo:lo + chunk].flatten(1).double()
        dist = (pop_sq[None, :] + (g**2).sum(1)[:, None] - 2 * g @ pop.T).clamp(min=0) / d
        out.append((dist <= eta).sum(1).numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def mean_guesses(images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """The mean image and, with labels, one mean per class: the best constant guesses."""
    means = [images.mean(0, keepdim=True)]
    if labels is not None:
        for c in torch.unique(labels):
            means.append(images[labels == c].mean(0, keepdim=True))
    return torch.cat(means)


def estimate_kappa(population: torch.Tensor, guesses: dict[str, torch.Tensor], eta: float, *,
                   exact: bool, confidence: float = 0.95) -> dict:
    """κ over named groups of guesses, scored on ``population`` (a sample of π).

    ``exact``: ``population`` *is* π's support (uniform prior), so the hit
    rate is computed, not estimated. Returns ``kappa`` (the value to use in a
    bound), ``kappa_point`` (the best guess's hit rate), ``guess`` (its
    group), ``hits``/``population`` and each group's best rate.
    """
    n = len(population)
    best: dict[str, int] = {}
    for name, g in guesses.items():
        if len(g):
            best[name] = int(guess_hits(population, g, eta).max())
    group = max(best, key=best.get)
    k = best[group]
    upper = float(k / n) if exact else float(clopper_pearson(np.array([k]), n, confidence)[1][0])
    return {"kappa": upper, "kappa_point": k / n, "guess": group, "hits": k, "population": n,
            "exact": exact, "confidence": None if exact else confidence,
            "per_guess": {name: h / n for name, h in best.items()}}
