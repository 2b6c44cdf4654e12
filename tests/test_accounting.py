"""ppds' accountants against Google's independent `dp_accounting`, GDP against
its closed form, and noise calibration for feasibility *and* tightness."""

from __future__ import annotations

import math
import warnings

import dp_accounting
import numpy as np
import pytest
from dp_accounting import pld, rdp

from ppds_core.errors import BudgetError, ConfigError
from ppds_core.privacy import (
    ACCOUNTANTS,
    calibrate_noise_multiplier,
    dp_sgd_epsilon,
    epsilon_of,
    epsilon_of_history,
    gdp_mu,
    ledger_epsilon,
    make_opacus_accountant,
)
from ppds_core.privacy.accounting import gdp_delta, gdp_epsilon
from ppds_core.privacy.ledger import DPSGDSpend, GaussianSpend, Ledger


def _dpsgd_event(sigma: float, q: float, steps: int):
    return dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps
    )


def _google(event, delta: float) -> tuple[float, float]:
    """(RDP ε, PLD ε) from dp_accounting for one event."""
    r = rdp.RdpAccountant()
    r.compose(event)
    p = pld.PLDAccountant()
    p.compose(event)
    return r.get_epsilon(delta), p.get_epsilon(delta)


def _spend(sigma: float, q: float, steps: int) -> DPSGDSpend:
    return DPSGDSpend(noise_multiplier=sigma, sample_rate=q, steps=steps, max_grad_norm=1.0)


@pytest.mark.parametrize(
    "sigma,q,steps,delta",
    [(1.0, 0.01, 1000, 1e-5), (2.0, 0.05, 500, 1e-6), (5.0, 0.1, 200, 1e-5)],
)
def test_dp_sgd_matches_dp_accounting(sigma, q, steps, delta):
    g_rdp, g_pld = _google(_dpsgd_event(sigma, q, steps), delta)
    ours_rdp = dp_sgd_epsilon(sigma, q, steps, delta, "rdp")
    ours_prv = dp_sgd_epsilon(sigma, q, steps, delta, "prv")
    assert ours_rdp == pytest.approx(g_rdp, rel=0.01)
    assert ours_prv == pytest.approx(g_pld, rel=0.01)
    # PRV is an upper bound (never below the PLD estimate by more than noise) and tighter than RDP
    assert g_pld * 0.999 <= ours_prv < ours_rdp


def test_composition_with_full_batch_gaussian_matches_dp_accounting():
    delta = 1e-5
    spends = [GaussianSpend(noise_multiplier=5.0, sensitivity=1.0, purpose="semantic query"),
              _spend(1.0, 0.02, 300)]
    event = dp_accounting.ComposedDpEvent(
        [dp_accounting.GaussianDpEvent(5.0), _dpsgd_event(1.0, 0.02, 300)]
    )
    g_rdp, g_pld = _google(event, delta)
    assert epsilon_of(spends, delta, "rdp") == pytest.approx(g_rdp, rel=0.01)
    assert epsilon_of(spends, delta, "prv") == pytest.approx(g_pld, rel=0.01)
    # composing costs more than DP-SGD alone
    assert epsilon_of(spends, delta, "prv") > dp_sgd_epsilon(1.0, 0.02, 300, delta, "prv")


def test_gaussian_count_is_steps_at_full_batch():
    two = [GaussianSpend(noise_multiplier=3.0, sensitivity=1.0, count=2)]
    as_history = [(3.0, 1.0, 2)]
    for acc in ACCOUNTANTS:
        assert epsilon_of(two, 1e-5, acc) == pytest.approx(epsilon_of_history(as_history, 1e-5, acc))
    # q = 1 is exactly (√T/σ)-GDP
    assert gdp_mu(as_history) == pytest.approx(math.sqrt(2) / 3.0)


def test_gdp_reference_numbers():
    mu = gdp_mu([(1.0, 0.01, 1000)])
    assert mu == pytest.approx(0.4145, rel=1e-3)
    eps = dp_sgd_epsilon(1.0, 0.01, 1000, 1e-5, "gdp")
    assert eps == pytest.approx(1.618, rel=0.01)
    # the conversion really solves δ(ε) = δ
    assert gdp_delta(eps, mu) == pytest.approx(1e-5, rel=1e-6)
    # PRV ≈ 1.83 for the same inputs (FIELD-NOTES), GDP's CLT under-estimates
    assert dp_sgd_epsilon(1.0, 0.01, 1000, 1e-5, "prv") == pytest.approx(1.83, rel=0.01)


def test_gdp_agrees_with_opacus_formula():
    from opacus.accountants.analysis import gdp as opacus_gdp

    for sigma, q, steps in [(1.0, 0.01, 1000), (0.8, 0.004, 5000)]:
        theirs = opacus_gdp.compute_eps_poisson(
            steps=steps, noise_multiplier=sigma, sample_rate=q, delta=1e-5
        )
        assert dp_sgd_epsilon(sigma, q, steps, 1e-5, "gdp") == pytest.approx(theirs, rel=1e-3)


def test_gdp_composes_mu_in_quadrature():
    a, b = (1.0, 0.01, 1000), (2.0, 0.02, 400)
    assert gdp_mu([a, b]) == pytest.approx(math.hypot(gdp_mu([a]), gdp_mu([b])))
    assert gdp_epsilon(0.0, 1e-5) == 0.0


def test_edge_cases():
    assert epsilon_of([], 1e-5) == 0.0
    assert epsilon_of([_spend(0.0, 0.1, 10)], 1e-5) == math.inf
    assert epsilon_of([_spend(1.0, 0.01, 0)], 1e-5, "rdp") == 0.0
    with pytest.raises(ConfigError, match="did you mean 'prv'"):
        dp_sgd_epsilon(1.0, 0.01, 10, 1e-5, accountant="pvr")
    with pytest.raises(BudgetError, match="delta"):
        dp_sgd_epsilon(1.0, 0.01, 10, 0.0)
    with pytest.raises(BudgetError, match="sample rate"):
        dp_sgd_epsilon(1.0, 1.5, 10, 1e-5)


def test_ledger_epsilon_recomputes_with_its_accountant():
    spends = [_spend(1.0, 0.01, 1000)]
    led = Ledger(target_epsilon=2.5, delta=1e-5, accountant="rdp", spends=spends)
    assert ledger_epsilon(led) == pytest.approx(dp_sgd_epsilon(1.0, 0.01, 1000, 1e-5, "rdp"))
    assert ledger_epsilon(led.model_copy(update={"accountant": "gdp"})) == pytest.approx(1.618, rel=0.01)
    assert ledger_epsilon(Ledger(target_epsilon=math.inf, delta=1e-5)) == math.inf


def test_make_opacus_accountant_steps_and_matches():
    acc = make_opacus_accountant("rdp")
    for _ in range(50):
        acc.step(noise_multiplier=1.2, sample_rate=0.05)
    assert acc.history == [(1.2, 0.05, 50)]
    assert epsilon_of_history(acc.history, 1e-5, "rdp") == pytest.approx(
        dp_sgd_epsilon(1.2, 0.05, 50, 1e-5, "rdp")
    )
    assert "history" in make_opacus_accountant("prv").state_dict()
    with pytest.raises(ConfigError, match="under-report"):
        make_opacus_accountant("gdp")  # the CLT approximation never trains
    with pytest.raises(ConfigError, match="did you mean 'rdp'"):
        make_opacus_accountant("rpd")


@pytest.mark.parametrize(
    "accountant,target",
    [("rdp", 0.5), ("rdp", 1.0), ("rdp", 3.0), ("rdp", 10.0),
     ("prv", 1.0), ("prv", 3.0)],
)
def test_calibration_is_feasible_and_tight(accountant, target):
    q, steps, delta = 0.02, 200, 1e-5
    sigma = calibrate_noise_multiplier(target, delta, q, steps, accountant)
    assert dp_sgd_epsilon(sigma, q, steps, delta, accountant) <= target
    assert dp_sgd_epsilon(sigma * 0.99, q, steps, delta, accountant) > target


def test_calibration_composes_other_spends():
    q, steps, delta, target = 0.02, 200, 1e-5, 3.0
    query = [GaussianSpend(noise_multiplier=5.0, sensitivity=1.0, purpose="semantic query")]
    sigma = calibrate_noise_multiplier(target, delta, q, steps, "prv", other_spends=query)
    # the query's cost is paid with more DP-SGD noise: alone, this σ leaves budget unused
    assert dp_sgd_epsilon(sigma, q, steps, delta, "prv") < target - 0.05
    total = epsilon_of([*query, _spend(sigma, q, steps)], delta, "prv")
    assert total <= target
    assert epsilon_of([*query, _spend(sigma * 0.99, q, steps)], delta, "prv") > target


def test_gdp_cannot_calibrate_noise():
    with pytest.raises(ConfigError, match="cannot calibrate noise or fill a ledger"):
        calibrate_noise_multiplier(1.0, 1e-5, 0.02, 200, "gdp")


def test_calibration_errors():
    big_query = [GaussianSpend(noise_multiplier=0.2, sensitivity=1.0)]
    with pytest.raises(BudgetError, match="other spends alone"):
        calibrate_noise_multiplier(1.0, 1e-5, 0.01, 100, other_spends=big_query)
    with pytest.raises(BudgetError, match="sample rate"):
        calibrate_noise_multiplier(1.0, 1e-5, 0.0, 100)
    with pytest.raises(BudgetError, match="steps"):
        calibrate_noise_multiplier(1.0, 1e-5, 0.01, 0)
    with pytest.raises(BudgetError, match="delta"):
        calibrate_noise_multiplier(1.0, 1.0, 0.01, 100)
    with pytest.raises(BudgetError, match="target epsilon"):
        calibrate_noise_multiplier(math.inf, 1e-5, 0.01, 100)


# --------------------------------------------------------------------------- fast paths
# The memoized RDP, the PRV domain size and the PRV pipeline are re-implementations
# for speed; they must reproduce Opacus' own numbers exactly, not approximately.

_HISTORIES = [
    [(1.1, 0.01, 1000)],
    [(5.0, 1.0, 1), (0.8, 0.05, 300)],
    [(2.0, 0.1, 80), (2.0, 0.1, 7), (0.7, 0.3, 3)],
]


@pytest.mark.parametrize("history", _HISTORIES)
def test_memoized_rdp_equals_opacus_compute_rdp(history):
    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis.rdp import compute_rdp

    from ppds_core.privacy import accounting

    orders = accounting._RDP_ORDERS_T
    expected = sum([compute_rdp(q=q, noise_multiplier=s, steps=t, orders=list(orders))
                    for s, q, t in history])
    for _ in range(2):  # the second call is served from the cache
        assert np.array_equal(accounting._history_rdp(history, orders), expected)
    opacus = RDPAccountant()
    opacus.history = list(history)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = opacus.get_epsilon(delta=1e-5, alphas=accounting._RDP_ORDERS)
    assert epsilon_of_history(history, 1e-5, "rdp") == want


@pytest.mark.parametrize("history", _HISTORIES[:2])
def test_prv_pipeline_equals_opacus_prv_accountant(history):
    """Domain size and PRV upper bound are Opacus' to the last bit; the ε ppds reports
    is Opacus' PRVAccountant at ppds' error settings, capped at RDP, as documented."""
    from opacus.accountants import PRVAccountant
    from opacus.accountants.analysis.prv import (
        PoissonSubsampledGaussianPRV,
        compute_safe_domain_size,
    )

    from ppds_core.privacy import accounting

    delta = 1e-5
    eps_rdp = epsilon_of_history(history, delta, "rdp")
    eps_error, delta_error = min(0.01, max(3e-4, 3e-3 * eps_rdp)), delta / 1000
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        want_width = compute_safe_domain_size(
            [PoissonSubsampledGaussianPRV(q, s) for s, q, _ in history],
            [t for _, _, t in history], eps_error=eps_error, delta_error=delta_error)
        width = accounting._safe_domain_size(history, eps_error, delta_error)
        assert width == want_width
        opacus = PRVAccountant()
        opacus.history = list(history)
        want = opacus.get_epsilon(delta=delta, eps_error=eps_error, delta_error=delta_error)
        got = accounting._opacus_prv_upper(history, delta, eps_error, delta_error, width)
    assert got == want
    assert epsilon_of_history(history, delta, "prv") == min(want, eps_rdp)


def test_prv_calibration_is_tight_to_rtol_with_few_evaluations(monkeypatch):
    """Each σ it returns is verified; some σ' ≥ σ/(1 + rtol) was verified infeasible."""
    from ppds_core.privacy.accountants import _prv

    calls = []
    real = _prv.prv_epsilon_uncached
    monkeypatch.setattr(_prv, "prv_epsilon_uncached",
                        lambda h, d: calls.append(h) or real(h, d))
    _prv.prv_epsilon_memo.cache_clear()
    q, steps, delta, target = 0.14, 80, 1e-5, 10.0
    sigma = calibrate_noise_multiplier(target, delta, q, steps, "prv")
    assert len(calls) <= 8  # the plain bisection it replaced needed ~20 ε evaluations
    assert dp_sgd_epsilon(sigma, q, steps, delta, "prv") <= target
    assert dp_sgd_epsilon(sigma * (1 - 2e-3), q, steps, delta, "prv") > target


def test_progress_reports_rdp_upper_bound_mid_run_and_exact_epsilon_at_the_end():
    from ppds_core.budget import PrivacyBudget
    from ppds_core.privacy.engine import DPSGDPlan, DPSGDState, plan_dp_sgd

    schedule = plan_dp_sgd(DPSGDPlan(budget=PrivacyBudget(epsilon=3.0), batch_size=10, steps=5,
                                     accountant="prv"), num_examples=50)
    state = DPSGDState(schedule=schedule)
    sigma, q = schedule.noise_multiplier, schedule.sample_rate
    uppers = []
    for step in range(1, 6):
        state.steps_done = step  # what a private step records: (σ, q) are the schedule's
        info = state.progress_info()
        if step < 5:
            assert "epsilon" not in info  # a PRV value would be mislabelled if it were RDP's
            uppers.append(info["epsilon_rdp_upper"])
            assert uppers[-1] == dp_sgd_epsilon(sigma, q, step, schedule.delta, "rdp")
            assert uppers[-1] >= dp_sgd_epsilon(sigma, q, step, schedule.delta, "prv")
    assert uppers == sorted(uppers)
    assert info["epsilon"] == state.ledger().epsilon_spent <= 3.0
    assert "epsilon_rdp_upper" not in info
