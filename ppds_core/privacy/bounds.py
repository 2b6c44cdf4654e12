"""Upper bounds on reconstruction success (ReRo) and the uninformed-adversary baseline.

ReRo (Hayes, Mahloujifar & Balle 2023): if a prior alone lets an adversary
reconstruct a target with probability κ (its *base* success rate), then after
seeing the output of a mechanism with dominating pair (P, Q) no adversary
succeeds with probability above the Neyman–Pearson blow-up

    γ(κ) = sup { Q(E) : P(E) ≤ κ }.

Three dominating pairs are covered here:

- μ-GDP (P = N(0,1), Q = N(μ,1)):         γ = Φ(Φ⁻¹(κ) + μ)
- (ε, δ)-DP:                               γ = min{1, e^ε·κ + δ, 1 − e^{−ε}(1 − δ − κ)}
- T steps of Poisson-subsampled DP-SGD with (σ, q): P = N(0, σ²)^T and
  Q = ((1 − q)·N(0, σ²) + q·N(1, σ²))^T — the pair for one example with
  clipped gradient norm 1 (in units of C). No closed form: a pessimistic
  privacy-loss distribution gives a rigorous upper bound (:func:`rero_pld`,
  what ``rero-bound`` reports); Monte Carlo gives a point estimate with a
  confidence interval, and Opacus' PRV discretisation a deterministic
  cross-check.

A ReRo γ is an upper bound on *any* attack's success: lower is better for
privacy. The uninformed-adversary functions give the other end: what an
attacker who only has the noisy observation (no prior) achieves in the
linear-layer threat model of Schwethelm et al. (TMLR 2025).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import ConfigError
from .rero_pld import rero_pld

__all__ = [
    "ReRoEstimate",
    "rero_gdp",
    "rero_dp",
    "rero_dpsgd",
    "rero_composition",
    "rero_numerical",
    "rero_pld",
    "effective_noise_std",
    "uninformed_mse_cdf",
    "uninformed_mse_mean",
    "uninformed_mse_quantile",
    "uninformed_ncc",
]


def _check_kappa(kappa: float, closed: bool = False) -> None:
    """κ in (0, 1); ``closed`` admits the limits 0 and 1 (closed forms have them)."""
    ok = 0 <= kappa <= 1 if closed else 0 < kappa < 1
    if not (isinstance(kappa, int | float) and ok):
        interval = "[0, 1]" if closed else "(0, 1)"
        raise ConfigError(
            f"kappa (the prior's base success rate) must be in {interval}, got {kappa}; "
            "e.g. 1/n for a uniform prior over n candidates"
        )


# --------------------------------------------------------------------------- closed forms


def rero_gdp(kappa: float, mu: float) -> float:
    """γ = Φ(Φ⁻¹(κ) + μ) for a μ-GDP mechanism (μ = √T/σ for T full-batch Gaussians).

    Computed with the standard library (``math.erfc`` for Φ, accurate in both tails;
    ``statistics.NormalDist.inv_cdf``, Wichura's AS241, for Φ⁻¹), not scipy: `ppds bounds
    rero` then starts without importing scipy.special (≈ 0.15–0.4 s). Tests check it
    against scipy's ``ndtr(ndtri(κ) + μ)``.
    """
    _check_kappa(kappa, closed=True)  # κ = 0 → 0, κ = 1 → 1 (an empirical prior may hit them)
    if not mu >= 0:
        raise ConfigError(f"mu must be ≥ 0, got {mu}")
    if math.isinf(mu) or kappa == 1:
        return 1.0
    if kappa == 0:
        return 0.0
    from statistics import NormalDist

    return 0.5 * math.erfc(-(NormalDist().inv_cdf(kappa) + mu) / math.sqrt(2.0))


def rero_dp(kappa: float, epsilon: float, delta: float) -> float:
    """γ = min{1, e^ε·κ + δ, 1 − e^{−ε}(1 − δ − κ)} for an (ε, δ)-DP mechanism."""
    _check_kappa(kappa, closed=True)
    if not epsilon >= 0:
        raise ConfigError(f"epsilon must be ≥ 0, got {epsilon}")
    if not 0 <= delta < 1:
        raise ConfigError(f"delta must be in [0, 1), got {delta}")
    if math.isinf(epsilon):
        return 1.0
    return float(min(1.0, math.exp(epsilon) * kappa + delta,
                     1.0 - math.exp(-epsilon) * (1.0 - delta - kappa)))


# --------------------------------------------------------------------------- DP-SGD, Monte Carlo


@dataclass(frozen=True)
class ReRoEstimate:
    """A Monte-Carlo ReRo bound: point estimate and a conservative confidence interval.

    ``ci_low``/``ci_high`` cover the true γ(κ) with probability ≥ ``confidence``
    (threshold uncertainty and success-rate uncertainty both included).
    ``samples`` is the number of draws under *each* of P and Q.
    """

    gamma: float
    ci_low: float
    ci_high: float
    samples: int
    kappa: float
    threshold: float
    confidence: float = 0.95

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


#: elements per chunk (1 MiB of float32, cache-sized): bounds memory for any T × samples
_CHUNK_ELEMENTS = 1 << 18


def _privacy_loss_samples(rng: np.random.Generator, n: int, sigma: float, q: float,
                          steps: int, under_q: bool,
                          progress: Callable[[int], None] | None = None) -> np.ndarray:
    """n draws of L = log dQ/dP(x) = Σ_t log(1 − q + q·e^{(2x_t − 1)/(2σ²)}) with x ~ P or Q.

    ``progress`` is told the number of Gaussian draws after each chunk (n·steps in all).
    """
    if q >= 1.0:
        # full batch: per step (2x − 1)/(2σ²) is Gaussian, so the sum is one exact draw
        mean = steps / (2 * sigma**2)
        out = rng.normal(mean if under_q else -mean, math.sqrt(steps) / sigma, size=n)
        if progress is not None:
            progress(n * steps)
        return out
    # float32 halves the cost; float64 where e^z could overflow float32 (σ ≲ 0.15)
    dtype = np.float32 if 7.0 / sigma + 0.5 / sigma**2 < 80.0 else np.float64
    out = np.empty(n, dtype=np.float64)
    rows = max(1, _CHUNK_ELEMENTS // steps)
    column = np.arange(steps)
    for start in range(0, n, rows):
        m = min(rows, n - start)
        z = rng.standard_normal((m, steps), dtype=dtype)  # x/σ under P
        if under_q:
            # Q: each step's gradient is present with probability q. L is symmetric
            # in the steps, so put a row's Binomial(T, q) present steps first.
            present = column < rng.binomial(steps, q, size=m)[:, None]
            z += present * dtype(1.0 / sigma)
        # (2x − 1)/(2σ²) = z/σ − 1/(2σ²); per-step loss log1p(q·(e^· − 1)). The
        # absolute error of q·(e^· − 1) is ~q·ulp(e^·), so log1p keeps each
        # step's loss accurate to ~1e-8 even where the loss itself is tiny
        # (and np.exp vectorises, unlike expm1)
        z *= dtype(1.0 / sigma)
        z -= dtype(0.5 / sigma**2)
        np.exp(z, out=z)
        z -= dtype(1.0)
        z *= dtype(q)
        np.log1p(z, out=z)
        out[start:start + m] = z.sum(axis=1, dtype=np.float64)
        if progress is not None:
            progress(m * steps)
    return out


def _clopper_pearson(k: int, n: int, alpha: float) -> tuple[float, float]:
    """Two-sided exact binomial interval for k successes in n, each tail alpha/2."""
    from scipy.stats import beta

    lo = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


def rero_dpsgd(kappa: float, noise_multiplier: float, sample_rate: float, steps: int,
               samples: int = 100_000, seed: int = 0, confidence: float = 0.95,
               progress: Callable[[int], None] | None = None) -> ReRoEstimate:
    """Monte-Carlo ReRo γ(κ) for T steps of Poisson-subsampled DP-SGD with (σ, q).

    See :func:`rero_composition` for the method, its interval and ``progress``.
    """
    return rero_composition(kappa, [(noise_multiplier, sample_rate, steps)],
                            samples=samples, seed=seed, confidence=confidence, progress=progress)


def rero_composition(kappa: float, history: Sequence[tuple[float, float, int]],
                     samples: int = 100_000, seed: int = 0, confidence: float = 0.95,
                     progress: Callable[[int], None] | None = None) -> ReRoEstimate:
    """Monte-Carlo ReRo γ(κ) for composed Poisson-subsampled Gaussian mechanisms.

    ``history`` holds (σ, q, T) per mechanism, as in the accountants: DP-SGD
    runs and full-data Gaussian queries (q = 1) alike. The composition's
    dominating pair is the product of the mechanisms' pairs, so its privacy
    loss L is the sum of theirs and is sampled exactly (no approximation).

    Method (documented in docs/privacy-accounting.md):

    1. Draw ``samples`` privacy losses L under P; the Neyman–Pearson threshold
       τ̂ is their empirical (1 − κ)-quantile.
    2. Draw ``samples`` independent losses under Q; γ̂ = fraction with L ≥ τ̂.
       Direct sampling under Q beats importance-weighting P's draws by e^L
       whenever τ > 0 (the usual case for small κ): those weights exceed 1
       exactly on the event being measured, so they only add variance.
    3. Interval: order statistics of the P draws bracket τ_κ (binomial
       argument, level α/2); Clopper–Pearson on the Q draws above each end
       (α/4 each). By the union bound the interval covers γ(κ) with
       probability ≥ ``confidence`` = 1 − α.

    Cost: 2·samples·ΣT float32 draws over the q < 1 mechanisms, ~20–45 ns
    each on one CPU core (a q = 1 mechanism costs one draw per sample: its
    T Gaussian losses sum to one Gaussian). ``progress``, if given, is told the
    number of draws after each chunk (2·samples·ΣT in all), for a progress bar.
    """
    from scipy.stats import binom

    _check_kappa(kappa)
    history = [(float(s), float(q), int(t)) for s, q, t in history]
    if not history or all(t == 0 for _, _, t in history):
        raise ConfigError("the ReRo bound needs at least one mechanism with steps ≥ 1")
    for sigma, q, steps in history:
        if not sigma > 0 or math.isinf(sigma):
            raise ConfigError(f"noise multiplier must be finite and > 0, got {sigma}")
        if not 0 < q <= 1:
            raise ConfigError(f"sample rate must be in (0, 1], got {q}")
        if steps < 0:
            raise ConfigError(f"steps must be a whole number ≥ 1, got {steps}")
    if int(samples) != samples or samples < 100:
        raise ConfigError(f"samples must be a whole number ≥ 100, got {samples}")
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence}")
    n = int(samples)
    alpha = 1 - confidence
    rng = np.random.default_rng(seed)

    def losses(under_q: bool) -> np.ndarray:
        total = np.zeros(n)
        for sigma, q, steps in history:
            if steps:
                total += _privacy_loss_samples(rng, n, sigma, q, steps, under_q, progress)
        return np.sort(total)

    under_p = losses(False)
    under_q = losses(True)

    def q_mass_above(tau: float) -> int:
        return int(n - np.searchsorted(under_q, tau, side="left"))

    # τ̂: the value with ⌈κn⌉ P-draws at or above it
    above = max(1, math.ceil(kappa * n))
    tau = float(under_p[n - above])
    gamma = q_mass_above(tau) / n

    # K = #P-draws ≤ τ_κ ~ Binomial(n, 1 − κ); L_(j) ≤ τ_κ ⇔ K ≥ j (1-based order stats)
    j_lo = int(binom.ppf(alpha / 4, n, 1 - kappa))
    j_hi = int(binom.ppf(1 - alpha / 4, n, 1 - kappa)) + 1
    tau_lo = float(under_p[j_lo - 1]) if j_lo >= 1 else -math.inf
    tau_hi = float(under_p[j_hi - 1]) if j_hi <= n else math.inf
    ci_high = _clopper_pearson(q_mass_above(tau_lo), n, alpha / 2)[1]
    ci_low = _clopper_pearson(q_mass_above(tau_hi), n, alpha / 2)[0]
    return ReRoEstimate(gamma=gamma, ci_low=ci_low, ci_high=ci_high, samples=n,
                        kappa=float(kappa), threshold=tau, confidence=confidence)


#: largest discretisation grid for :func:`rero_numerical` (points)
_NUMERICAL_MAX_POINTS = 4_000_000


def rero_numerical(kappa: float, history: Sequence[tuple[float, float, int]],
                   eps_error: float = 1e-3) -> float:
    """Deterministic ReRo γ(κ) from the discretised privacy-loss distribution.

    An independent route to the quantity :func:`rero_composition` samples:
    Opacus' PRV machinery discretises L = log dQ/dP under Q for each
    (σ, q, T) (its ``PoissonSubsampledGaussianPRV`` is exactly the pair
    P = N(0, σ²), Q = (1 − q)N(0, σ²) + qN(1, σ²)) and composes by FFT. The
    P-mass of each grid point is its Q-mass times e^{−t}, so the
    Neyman–Pearson test at level κ (randomised on the boundary atom) is read
    off the two tails. Accurate to the grid (``eps_error`` sets its mesh, as
    in the PRV accountant) but without a rigorous error bar: the Monte-Carlo
    interval is the reported one, this is the cross-check. ~1 s for T = 1000.
    """
    from .accountants._opacus import analysis
    from .accountants._prv import safe_domain_size  # Opacus' compute_safe_domain_size, memoized

    prv = analysis("prv")  # Opacus' PRV code without importing torch
    Domain, PoissonSubsampledGaussianPRV = prv.Domain, prv.PoissonSubsampledGaussianPRV
    TruncatedPrivacyRandomVariable, discretize = prv.TruncatedPrivacyRandomVariable, prv.discretize
    compose_heterogeneous = prv.compose_heterogeneous

    _check_kappa(kappa)
    history = [(float(s), float(q), int(t)) for s, q, t in history if int(t) > 0]
    if not history:
        raise ConfigError("the ReRo bound needs at least one mechanism with steps ≥ 1")
    for sigma, q, _ in history:
        if not (0 < sigma < math.inf and 0 < q <= 1):
            raise ConfigError(f"need finite σ > 0 and q in (0, 1], got σ={sigma}, q={q}")
    delta_error = min(1e-9, kappa * 1e-6)  # tail mass the truncated domain may drop
    prvs = [PoissonSubsampledGaussianPRV(q, s) for s, q, _ in history]
    counts = [t for _, _, t in history]
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        half = safe_domain_size(history, eps_error, delta_error)
        mesh = eps_error / math.sqrt(sum(counts) * math.log(12 / delta_error) / 2)
        mesh = max(mesh, 2 * half / _NUMERICAL_MAX_POINTS)
        domain = Domain.create_aligned(-half, half, mesh)
        dprvs = [discretize(TruncatedPrivacyRandomVariable(p, domain.t_min, domain.t_max), domain)
                 for p in prvs]
        composed = compose_heterogeneous(dprvs=dprvs, num_self_compositions=counts)
        t = composed.domain.ts
        q_mass = np.clip(composed.pmf, 0.0, None)
        q_mass /= q_mass.sum()
        p_mass = q_mass * np.exp(-t)
    # tails strictly above each grid point
    p_above = np.append(np.cumsum(p_mass[::-1])[::-1][1:], 0.0)
    q_above = np.append(np.cumsum(q_mass[::-1])[::-1][1:], 0.0)
    boundary = np.nonzero((p_above <= kappa) & (p_above + p_mass > kappa))[0]
    if not len(boundary):  # pragma: no cover - κ < 1 always falls on some atom
        raise ConfigError(f"kappa={kappa} falls outside the discretised domain")
    j = int(boundary[-1])
    return float(min(1.0, q_above[j] + (kappa - p_above[j]) * math.exp(t[j])))


# --------------------------------------------------------------------------- uninformed adversary


def effective_noise_std(noise_multiplier: float, max_grad_norm: float, out_units: int,
                        x_norm: float) -> float:
    """σ_eff = σ·max(C/√M, ‖x‖): per-pixel noise std of the observation y = x + N(0, σ_eff²I).

    Linear-layer threat model (Schwethelm et al.): the first layer's weight
    gradient of one image is a multiple of the image; after clipping to C and
    adding N(0, σ²C²) per weight, the best rescaling over M output units gives
    an observation of x (same units as x, ``x_norm`` = its L2 norm over all d
    pixels) with this per-pixel noise std. μ = 1/σ in GDP terms.
    """
    if not (noise_multiplier >= 0 and max_grad_norm > 0 and out_units >= 1 and x_norm >= 0):
        raise ConfigError(
            "effective_noise_std needs noise_multiplier ≥ 0, max_grad_norm > 0, "
            f"out_units ≥ 1 and x_norm ≥ 0; got {noise_multiplier}, {max_grad_norm}, "
            f"{out_units}, {x_norm}"
        )
    return float(noise_multiplier * max(max_grad_norm / math.sqrt(out_units), x_norm))


def _check_d_std(d: int, noise_std: float) -> None:
    if int(d) != d or d < 1:
        raise ConfigError(f"d (number of pixels) must be a whole number ≥ 1, got {d}")
    if not noise_std > 0:
        raise ConfigError(f"noise std must be > 0, got {noise_std}")


def uninformed_mse_cdf(eta: float | np.ndarray, d: int, noise_std: float) -> float | np.ndarray:
    """Pr[MSE ≤ η] for the uninformed adversary that outputs the observation y itself.

    MSE = ‖y − x‖²/d = (σ_eff²/d)·χ²_d, i.e. Gamma(shape d/2, scale 2σ_eff²/d);
    with σ_eff = σ·‖x‖ this is FIELD-NOTES' Gamma(d/2, 2σ²‖x‖²/d). This is the
    uninformed success rate at reconstruction threshold η.
    """
    from scipy.stats import gamma

    _check_d_std(d, noise_std)
    out = gamma.cdf(eta, a=d / 2, scale=2 * noise_std**2 / d)
    return float(out) if np.ndim(out) == 0 else out


def uninformed_mse_quantile(p: float, d: int, noise_std: float) -> float:
    """The η at which the uninformed adversary succeeds with probability p."""
    from scipy.stats import gamma

    _check_d_std(d, noise_std)
    return float(gamma.ppf(p, a=d / 2, scale=2 * noise_std**2 / d))


def uninformed_mse_mean(noise_std: float) -> float:
    """E[MSE] = σ_eff² (= σ²‖x‖² when ‖x‖ ≥ C/√M)."""
    return float(noise_std**2)


def uninformed_ncc(d: int, noise_std: float, x_norm: float) -> float:
    """NCC of y with x: ≈ ‖x‖/√(‖x‖² + d·σ_eff²) = √(1/(1 + dσ²)) when σ_eff = σ‖x‖.

    ‖y‖² concentrates at ‖x‖² + dσ_eff², so this is the NCC an uninformed
    adversary reaches (up to O(1/√d) fluctuations); FIELD-NOTES' NCC bound.
    """
    _check_d_std(d, noise_std)
    if not x_norm > 0:
        raise ConfigError(f"x_norm must be > 0, got {x_norm}")
    return float(math.sqrt(1.0 / (1.0 + d * noise_std**2 / x_norm**2)))
