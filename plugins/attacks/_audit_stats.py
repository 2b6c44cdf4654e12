"""What the canary observations say about the ledger's claim: five tests, one level.

Under a correct engine and the ledger's (σ, C, q), every observation is known in
law: an absent canary's coordinate is N(0, σ²) each step (units of C), a member's
is N(a·1[sampled], σ²) with a ≤ 1 its clipped share, coordinates no canary owns
are N(0, σ²), and each canary is sampled with probability q per step. Each test
below checks one consequence, one-sided in the direction that would mean *less*
privacy than claimed, at level α/5 (α = 1 − confidence), so a correct engine
raises ``dpsgd-audit-violation`` with probability ≤ α (Bonferroni):

- noise: the empirical std of the noise-only coordinates over σ (χ² interval);
- clip: the mean of sampled members' coordinates over a (t interval);
- sampling: members' inclusion frequency over q (Clopper–Pearson);
- ε: the Clopper–Pearson ε lower bound of the canaries' likelihood-ratio scores
  (``ppds_core.evaluation``: Jagielski et al. 2020), against the ε of the audited steps;
- trade-off: the GDP estimator of Nasr et al. 2023 — a threshold chosen on one
  half of the canaries, Clopper–Pearson bounds of its FPR and FNR on the other,
  μ_lb = Φ⁻¹(1 − FPR_ub) − Φ⁻¹(FNR_ub) — with the violation decided against the
  claimed mechanism's *own* trade-off curve f at FPR_ub (FNR_ub < f(FPR_ub)), not
  against a μ-GDP curve: Poisson-subsampled DP-SGD is not μ-GDP, and an ε derived
  from μ_lb (reported, labelled) is not a bound on it.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy import stats

from ppds_core.evaluation import membership_measurements
from ppds_core.interfaces import Measurement
from ppds_core.privacy.accounting import gdp_epsilon

from ._audit_canary import Observations

__all__ = ["TESTS", "analyse", "audit_llr", "claimed_tradeoff", "mu_lower_bound",
           "simulate_null"]

TESTS = ("noise", "clip", "sampling", "epsilon", "tradeoff")
_HEADLINES = ("dpsgd-audit-epsilon-lb", "dpsgd-audit-noise-ratio", "dpsgd-audit-violation")
_MC_DRAWS = 100_000
#: relative slack for float32 arithmetic in the clip test (a noiseless release is exact up to it)
_FLOAT_SLACK = 1e-4  # per side, for the claimed mechanism's trade-off curve


def audit_llr(z: np.ndarray, noise_multiplier: float, sample_rate: float,
              shift: float = 1.0) -> np.ndarray:
    """Per-step log-likelihood ratio of (1−q)·N(0,σ²) + q·N(a,σ²) against N(0,σ²)."""
    a = (2.0 * shift * z - shift * shift) / (2.0 * noise_multiplier**2)
    if sample_rate >= 1.0:
        return a
    return np.logaddexp(math.log1p(-sample_rate), math.log(sample_rate) + a)


def _cp_upper(k: np.ndarray, n: int, level: float) -> np.ndarray:
    """One-sided Clopper–Pearson upper bound at error ``level``."""
    k = np.asarray(k, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(k < n, stats.beta.ppf(1 - level, k + 1, n - k), 1.0)


def _cp_lower(k: float, n: int, level: float) -> float:
    return float(stats.beta.ppf(level, k, n - k + 1)) if k > 0 else 0.0


@functools.lru_cache(maxsize=32)
def claimed_tradeoff(noise_multiplier: float, sample_rate: float, steps: int,
                     level: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """The claimed mechanism's trade-off curve, by simulation: (sorted OUT LLR, sorted IN LLR).

    T steps of (1−q)·N(1,σ²) + q·… against N(0,σ²) with the worst-case canary (shift 1):
    the Neyman–Pearson test is its LLR, so f(α) = P_IN(LLR < τ_α), Q_OUT(LLR ≥ τ_α) = α.
    Fixed seed: the curve is a property of (σ, q, T), not of the audit.
    """
    rng = np.random.default_rng(20230101)
    out = np.zeros(_MC_DRAWS)
    inn = np.zeros(_MC_DRAWS)
    for _ in range(int(steps)):
        out += audit_llr(rng.normal(0.0, noise_multiplier, _MC_DRAWS), noise_multiplier, sample_rate)
        z = rng.normal(0.0, noise_multiplier, _MC_DRAWS) + (rng.random(_MC_DRAWS) < sample_rate)
        inn += audit_llr(z, noise_multiplier, sample_rate)
    return np.sort(out), np.sort(inn)


def tradeoff_at(curve: tuple[np.ndarray, np.ndarray], fpr: np.ndarray,
                level: float = 1e-3) -> np.ndarray:
    """f(α) of the simulated curve, at the low end of its Monte-Carlo interval (conservative)."""
    out, inn = curve
    m = len(out)
    fpr = np.clip(np.asarray(fpr, dtype=np.float64), 0.0, 1.0)
    # τ_α: the smallest threshold accepting at most α·m OUT draws (accepting more → larger α)
    k = np.clip(np.ceil((1.0 - fpr) * m).astype(int), 0, m - 1)
    tau = out[k]
    below = np.searchsorted(inn, tau, side="left")
    lo = np.where(below > 0, stats.beta.ppf(level, below, m - below + 1), 0.0)
    return np.where(fpr >= 1.0, 0.0, lo)


def mu_lower_bound(scores: np.ndarray, is_member: np.ndarray, level: float,
                   rng: np.random.Generator, curve=None) -> dict:
    """Nasr et al. 2023's μ lower bound with the threshold chosen on a held-out half.

    ``level``: total error of the two one-sided Clopper–Pearson ends (level/2 each).
    With ``curve`` the threshold maximises the margin μ − μ_claimed on the selection
    half (the point where the release departs most from the claim), else μ itself.
    """
    s, m = np.asarray(scores, np.float64), np.asarray(is_member, bool)
    sel = np.zeros(len(s), bool)
    for side in (m, ~m):  # stratified halves
        idx = rng.permutation(np.flatnonzero(side))
        sel[idx[: len(idx) // 2]] = True

    def rates(mask, thr):
        sin, sout = np.sort(s[mask & m]), np.sort(s[mask & ~m])
        fn = np.searchsorted(sin, thr, side="left")  # members below t
        fp = len(sout) - np.searchsorted(sout, thr, side="left")  # non-members ≥ t
        fpr_ub = _cp_upper(fp, len(sout), level / 2)
        fnr_ub = _cp_upper(fn, len(sin), level / 2)
        mu = stats.norm.ppf(1 - fpr_ub) - stats.norm.ppf(fnr_ub)
        return mu, fpr_ub, fnr_ub, fp, fn

    thr = np.unique(s[sel])
    mu_a, fpr_a, _, _, _ = rates(sel, thr)
    margin = mu_a - (_mu_claimed(curve, fpr_a) if curve is not None else 0.0)
    t = float(thr[int(np.nanargmax(np.where(np.isfinite(margin), margin, -np.inf)))])
    mu, fpr_ub, fnr_ub, fp, fn = (float(v[0]) for v in rates(~sel, np.array([t])))
    return {"mu_lb": max(0.0, mu), "fpr_ub": fpr_ub, "fnr_ub": fnr_ub, "threshold": t,
            "false_positives": int(fp), "false_negatives": int(fn),
            "n_members": int((~sel & m).sum()), "n_nonmembers": int((~sel & ~m).sum())}


def _mu_claimed(curve, fpr) -> np.ndarray:
    f = tradeoff_at(curve, fpr)
    with np.errstate(divide="ignore", invalid="ignore"):
        return stats.norm.ppf(1 - np.asarray(fpr)) - stats.norm.ppf(f)


def simulate_null(n: int, steps: int, noise_multiplier: float, sample_rate: float,
                  noise_coords: int, rng: np.random.Generator, shift: float = 1.0,
                  noise_scale: float = 1.0, clip_scale: float = 1.0) -> Observations:
    """Observations of a correct engine (or one scaled by ``noise_scale`` / ``clip_scale``),
    drawn directly from their law: for the false-alarm rate without retraining."""
    inc = np.zeros((2 * n, steps), bool)
    inc[:n] = rng.random((n, steps)) < sample_rate
    sd = noise_multiplier * noise_scale
    z = rng.normal(0.0, sd, (2 * n, steps)) + shift * clip_scale * inc
    sumsq = sd * sd * rng.chisquare(noise_coords * steps)
    return Observations(z, np.r_[np.ones(n, bool), np.zeros(n, bool)], inc, float(sumsq),
                        noise_coords * steps, shift)


def analyse(obs: Observations, *, noise_multiplier: float, sample_rate: float, delta: float,
            epsilon_claimed: float, confidence: float, rng: np.random.Generator,
            extra: dict | None = None) -> list[Measurement]:
    """The audit's rows from its observations (see the module docstring)."""
    sigma, q = float(noise_multiplier), float(sample_rate)
    alpha = (1.0 - confidence) / len(TESTS)  # each test's one-sided level
    steps = obs.z.shape[1]
    common = dict(extra or {})
    common.update({"test_level": alpha, "confidence": confidence, "noise_multiplier": sigma,
                   "sample_rate": q, "steps_audited": steps, "epsilon_claimed": epsilon_claimed,
                   "canaries": int(obs.is_member.sum())})
    rows: list[Measurement] = []
    flags: dict[str, bool] = {}

    # noise: Σz² / σ_true² ~ χ²_n
    n = obs.noise_count
    s2 = obs.noise_sumsq / n
    lo = math.sqrt(obs.noise_sumsq / stats.chi2.ppf(1 - alpha, n)) / sigma
    hi = math.sqrt(obs.noise_sumsq / stats.chi2.ppf(alpha, n)) / sigma
    flags["noise"] = hi < 1.0
    rows.append(Measurement("dpsgd-audit-noise-ratio", math.sqrt(s2) / sigma, None, {
        "ci_low": lo, "ci_high": hi, "interval": "one-sided ends, each at test_level",
        "observed_std": math.sqrt(s2), "claimed_std": sigma, "std_unit": "C / E[B]",
        "noise_samples": n}))

    # clip: mean of sampled members' coordinates vs the clipped share a
    zin = obs.z[obs.is_member][obs.included[obs.is_member]]
    if len(zin) > 1:
        mean, se = float(zin.mean()), float(zin.std(ddof=1) / math.sqrt(len(zin)))
        tq = stats.t.ppf(1 - alpha, len(zin) - 1)
        c_lo, c_hi = (mean - tq * se) / obs.shift, (mean + tq * se) / obs.shift
        flags["clip"] = c_lo > 1.0 + _FLOAT_SLACK
        rows.append(Measurement("dpsgd-audit-clip-ratio", mean / obs.shift, None, {
            "ci_low": c_lo, "ci_high": c_hi, "clipped_share": obs.shift, "samples": len(zin)}))
    else:
        flags["clip"] = False

    # sampling: inclusion frequency of members vs q
    k, trials = int(obs.included[obs.is_member].sum()), int(obs.is_member.sum()) * steps
    s_lo = _cp_lower(k, trials, alpha)
    flags["sampling"] = s_lo > q
    rows.append(Measurement("dpsgd-audit-sample-rate-ratio", k / trials / q, None, {
        "ci_low": s_lo / q, "inclusions": k, "trials": trials}))

    # ε: Clopper–Pearson bound of the LLR scores (both ends at alpha/2: total alpha)
    scores = audit_llr(obs.z, sigma, q, obs.shift).sum(1)
    mem = membership_measurements("dpsgd-audit", scores, obs.is_member, delta=delta,
                                  epsilon_spent=epsilon_claimed, confidence=1.0 - alpha,
                                  headline=("epsilon-lb",))
    rows += mem
    flags["epsilon"] = any(r.name == "dpsgd-audit-epsilon-violation" and r.value == 1.0
                           for r in mem)

    # trade-off: Nasr et al.'s μ estimator, judged against the claimed mechanism's curve
    curve = claimed_tradeoff(sigma, q, steps)
    g = mu_lower_bound(scores, obs.is_member, alpha, rng, curve)
    f = float(tradeoff_at(curve, np.array([g["fpr_ub"]]))[0])
    mu_claim = float(_mu_claimed(curve, np.array([g["fpr_ub"]]))[0])
    flags["tradeoff"] = g["fnr_ub"] < f
    rows.append(Measurement("dpsgd-audit-mu-lb", g["mu_lb"], None, {
        **g, "claimed_fnr_at_fpr_ub": f, "mu_claimed_at_fpr_ub": mu_claim,
        "gdp_epsilon_of_mu_lb": gdp_epsilon(g["mu_lb"], delta),
        "gdp_epsilon_note": "the ε a μ-GDP mechanism with μ_lb would have; Poisson-subsampled "
                            "DP-SGD is not μ-GDP, so this is not an ε lower bound"}))
    for name in ("noise", "clip", "sampling", "tradeoff"):
        rows.append(Measurement(f"dpsgd-audit-{name}-violation", float(flags[name]), None, {},
                                role="violation"))
    raised = [t for t in TESTS if flags[t]]
    rows.append(Measurement("dpsgd-audit-violation", float(bool(raised)), None,
                            {"raised": raised, "tests": list(TESTS)}, role="violation"))
    for r in rows:
        r.extra.update(common)
        if r.name in _HEADLINES:
            r.headline = True
        if r.name.endswith("-violation"):
            r.higher_is_better = False
    return rows
