"""ReRo bounds against the published closed forms and the Monte-Carlo estimator
against them where it must reduce to one; the uninformed adversary against simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ppds_core.errors import ConfigError
from ppds_core.privacy.accounting import gdp_mu
from ppds_core.privacy.bounds import (
    effective_noise_std,
    rero_composition,
    rero_dp,
    rero_dpsgd,
    rero_gdp,
    rero_numerical,
    rero_pld,
    uninformed_mse_cdf,
    uninformed_mse_mean,
    uninformed_mse_quantile,
    uninformed_ncc,
)


def test_gdp_reference_values():
    assert rero_gdp(0.01, 1.0) == pytest.approx(0.0924, abs=5e-4)
    assert rero_gdp(0.01, 2.0) == pytest.approx(0.372, abs=5e-4)
    assert rero_gdp(0.01, 0.0) == pytest.approx(0.01)  # no information: prior success only
    assert rero_gdp(0.01, math.inf) == 1.0
    # an empirical prior can succeed never or always: the limits are well defined
    assert (rero_gdp(0.0, 1.0), rero_gdp(1.0, 1.0)) == (0.0, 1.0)
    assert rero_dp(0.0, 1.0, 1e-5) == pytest.approx(1e-5)


@pytest.mark.parametrize("kappa", [1e-300, 1e-12, 1e-6, 0.001, 0.01, 0.1, 0.5, 0.9, 0.999999])
@pytest.mark.parametrize("mu", [0.0, 0.05, 1.0, 3.0, 10.0, 40.0])
def test_the_stdlib_gdp_bound_equals_scipys_normal_cdf_of_its_quantile(kappa, mu):
    from scipy.special import ndtr, ndtri

    expected = float(ndtr(ndtri(kappa) + mu))
    assert rero_gdp(kappa, mu) == pytest.approx(expected, rel=1e-12, abs=1e-300)


def test_dp_reference_value_and_limits():
    assert rero_dp(0.01, 1.0, 1e-5) == pytest.approx(0.0272, abs=5e-4)
    assert rero_dp(0.01, 0.0, 0.0) == pytest.approx(0.01)
    assert rero_dp(0.5, 10.0, 1e-5) == pytest.approx(1 - math.exp(-10) * (0.5 - 1e-5))
    assert rero_dp(0.2, math.inf, 0.0) == 1.0
    # at large κ the third branch is the binding one
    kappa, eps, delta = 0.9, 1.0, 1e-5
    assert rero_dp(kappa, eps, delta) == pytest.approx(1 - math.exp(-eps) * (1 - delta - kappa))


def test_bounds_grow_with_prior_and_leakage():
    assert rero_gdp(0.01, 1.0) < rero_gdp(0.05, 1.0) < rero_gdp(0.05, 2.0)
    assert rero_dp(0.01, 1.0, 1e-5) < rero_dp(0.01, 2.0, 1e-5)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_dpsgd_monte_carlo_reduces_to_gdp_at_full_batch(sigma):
    est = rero_dpsgd(0.01, sigma, 1.0, 1, samples=200_000, seed=1)
    exact = rero_gdp(0.01, 1.0 / sigma)
    assert est.ci_low <= exact <= est.ci_high
    assert est.gamma == pytest.approx(exact, rel=0.06)
    assert est.ci_high - est.ci_low < 0.25 * exact  # the interval is informative


def test_dpsgd_monte_carlo_full_batch_many_steps_is_gdp_with_sqrt_t():
    est = rero_dpsgd(0.01, 4.0, 1.0, 16, samples=100_000, seed=2)
    assert est.ci_low <= rero_gdp(0.01, math.sqrt(16) / 4.0) <= est.ci_high


def test_dpsgd_monte_carlo_subsampled_q_just_below_one_matches_gdp():
    # the chunked per-step path (q < 1) must agree with the exact q = 1 answer
    est = rero_dpsgd(0.01, 1.0, 0.999999, 1, samples=100_000, seed=3)
    assert est.ci_low <= rero_gdp(0.01, 1.0) <= est.ci_high


def test_dpsgd_monte_carlo_subsampled_is_deterministic_and_sane():
    a = rero_dpsgd(0.01, 1.0, 0.02, 200, samples=20_000, seed=0)
    b = rero_dpsgd(0.01, 1.0, 0.02, 200, samples=20_000, seed=0)
    assert a == b
    assert 0.01 < a.ci_low <= a.gamma <= a.ci_high < 1
    # the independent deterministic route (discretised privacy loss + FFT) lands inside
    assert a.ci_low <= rero_numerical(0.01, [(1.0, 0.02, 200)]) <= a.ci_high
    # the CLT (GDP) approximation lies near the exact subsampled answer here
    approx = rero_gdp(0.01, gdp_mu([(1.0, 0.02, 200)]))
    assert approx == pytest.approx(a.gamma, rel=0.35)
    # more noise → a smaller bound
    c = rero_dpsgd(0.01, 3.0, 0.02, 200, samples=20_000, seed=0)
    assert c.ci_high < a.ci_low


@pytest.mark.parametrize("sigma,kappa", [(1.0, 0.01), (0.5, 0.01), (2.0, 0.2)])
def test_numerical_reduces_to_gdp_at_full_batch(sigma, kappa):
    assert rero_numerical(kappa, [(sigma, 1.0, 1)]) == pytest.approx(
        rero_gdp(kappa, 1 / sigma), rel=1e-4
    )


@pytest.mark.parametrize("sigma,kappa", [(1.0, 0.01), (0.5, 0.05)])
def test_pessimistic_pld_bound_is_above_the_exact_gdp_value_and_tight(sigma, kappa):
    exact = rero_gdp(kappa, 1 / sigma)
    got = rero_pld(kappa, [(sigma, 1.0, 1)])
    assert exact <= got <= exact * (1 + 1e-4)


def test_pessimistic_pld_bound_of_a_subsampled_composition_covers_the_numerical_value():
    history = [(2.0, 1.0, 1), (1.5, 0.05, 100)]
    numerical = rero_numerical(0.05, history)
    got = rero_pld(0.05, history)
    assert got >= numerical * (1 - 1e-6)  # PRV's grid has no error bar: allow its last digits
    assert got == pytest.approx(numerical, rel=1e-3)
    assert rero_pld(0.05, history[1:]) < got  # the query costs


def test_monte_carlo_upper_end_covers_the_deterministic_value_in_20_of_20_seeds():
    history = [(6.0, 0.143, 120)]  # the quickstart's dp-gan ε = 1 recipe
    exact = rero_numerical(0.01, history)
    ests = [rero_composition(0.01, history, samples=1_000, seed=s) for s in range(20)]
    assert all(e.ci_high >= exact for e in ests)
    assert any(e.gamma < exact for e in ests)  # why the point estimate is not reported


def test_numerical_composition_inside_monte_carlo_interval():
    history = [(2.0, 1.0, 1), (1.5, 0.05, 100)]
    est = rero_composition(0.05, history, samples=20_000, seed=4)
    assert est.ci_low <= rero_numerical(0.05, history) <= est.ci_high
    # composing a query costs: more than the DP-SGD part alone
    assert rero_numerical(0.05, history) > rero_numerical(0.05, history[1:])


def test_dpsgd_monte_carlo_rejects_bad_inputs():
    with pytest.raises(ConfigError, match="kappa"):
        rero_dpsgd(1.5, 1.0, 0.1, 10)
    with pytest.raises(ConfigError, match="noise multiplier"):
        rero_dpsgd(0.01, 0.0, 0.1, 10)
    with pytest.raises(ConfigError, match="sample rate"):
        rero_dpsgd(0.01, 1.0, 0.0, 10)
    with pytest.raises(ConfigError, match="steps"):
        rero_dpsgd(0.01, 1.0, 0.1, 0)
    with pytest.raises(ConfigError, match="kappa"):
        rero_gdp(-0.1, 1.0)


def test_uninformed_adversary_against_simulation():
    rng = np.random.default_rng(0)
    d, sigma, C, M = 64, 0.3, 1.0, 16
    x = rng.random(d)
    s = effective_noise_std(sigma, C, M, float(np.linalg.norm(x)))
    assert s == pytest.approx(sigma * max(C / math.sqrt(M), np.linalg.norm(x)))
    y = x + rng.normal(0.0, s, size=(20_000, d))
    mse = ((y - x) ** 2).mean(axis=1)
    assert uninformed_mse_mean(s) == pytest.approx(mse.mean(), rel=0.02)
    eta = float(np.median(mse))
    assert uninformed_mse_cdf(eta, d, s) == pytest.approx(0.5, abs=0.02)
    assert uninformed_mse_quantile(0.5, d, s) == pytest.approx(eta, rel=0.02)
    ncc = (y @ x) / (np.linalg.norm(y, axis=1) * np.linalg.norm(x))
    assert uninformed_ncc(d, s, float(np.linalg.norm(x))) == pytest.approx(ncc.mean(), rel=0.02)


def test_uninformed_ncc_matches_field_notes_parameterisation():
    # σ_eff = σ·‖x‖ (the image dominates C/√M) gives √(1/(1 + dσ²))
    d, sigma, norm = 3072, 0.05, 20.0
    s = effective_noise_std(sigma, 1.0, 1, norm)
    assert uninformed_ncc(d, s, norm) == pytest.approx(math.sqrt(1 / (1 + d * sigma**2)))
    assert uninformed_mse_mean(s) == pytest.approx(sigma**2 * norm**2)


# --------------------------------------------------------------------------- `ppds bounds` CLI


def _run_json(capsys, argv: list[str]) -> dict:
    import json

    from ppds_core.cli import main

    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_cli_epsilon_gdp_reference(capsys):
    out = _run_json(capsys, ["bounds", "epsilon", "--noise-multiplier", "1", "--sample-rate",
                             "0.01", "--steps", "1000", "--delta", "1e-5", "--accountant", "gdp",
                             "--json"])
    assert out["epsilon"] == pytest.approx(1.618, rel=0.01)
    assert out["mu"] == pytest.approx(0.4145, rel=1e-3)
    assert (out["accountant"], out["steps"], out["sample_rate"]) == ("gdp", 1000, 0.01)


def test_cli_epsilon_rdp_human_output(capsys):
    from ppds_core.cli import main
    from ppds_core.privacy import dp_sgd_epsilon

    assert main(["bounds", "epsilon", "--noise-multiplier", "2", "--sample-rate", "0.05",
                 "--steps", "100", "--delta", "1e-5", "--accountant", "rdp"]) == 0
    text = capsys.readouterr().out
    assert f"{dp_sgd_epsilon(2, 0.05, 100, 1e-5, 'rdp'):.4g}" in text and "rdp" in text


def test_cli_rero_closed_forms(capsys):
    out = _run_json(capsys, ["bounds", "rero", "--kappa", "0.01", "--mu", "2", "--json"])
    assert out["gamma"] == pytest.approx(0.372, abs=5e-4)
    out = _run_json(capsys, ["bounds", "rero", "--kappa", "0.01", "--epsilon", "1",
                             "--delta", "1e-5", "--json"])
    assert out["gamma"] == pytest.approx(0.0272, abs=5e-4)


def test_cli_rero_monte_carlo(capsys):
    out = _run_json(capsys, ["bounds", "rero", "--kappa", "0.01", "--noise-multiplier", "1",
                             "--sample-rate", "1", "--steps", "1", "--samples", "50000",
                             "--seed", "3", "--json"])
    assert out["ci_low"] <= rero_gdp(0.01, 1.0) <= out["ci_high"]
    assert out["samples"] == 50000 and out["seed"] == 3
    assert out["gamma_numerical"] == pytest.approx(rero_gdp(0.01, 1.0), rel=1e-4)
    # the printed γ is the bound, the Monte-Carlo estimate only sits beside it
    assert rero_gdp(0.01, 1.0) <= out["gamma"] <= rero_gdp(0.01, 1.0) * (1 + 1e-4)
    assert "point_estimate" in out


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["rero", "--kappa", "1.5", "--mu", "1"], "--kappa must be in (0, 1)"),
        (["rero", "--kappa", "0.1", "--noise-multiplier", "0", "--sample-rate", "0.1",
          "--steps", "5"], "--noise-multiplier must be"),
        (["rero", "--kappa", "0.1", "--noise-multiplier", "1", "--sample-rate", "2",
          "--steps", "5"], "--sample-rate must be in (0, 1]"),
        (["rero", "--kappa", "0.1", "--noise-multiplier", "1"], "needs --sample-rate"),
        (["rero", "--kappa", "0.1", "--epsilon", "1"], "needs --delta"),
        (["rero", "--kappa", "0.1", "--mu", "1", "--delta", "1e-5"], "--delta goes with"),
        (["epsilon", "--noise-multiplier", "1", "--sample-rate", "0.1", "--steps", "5",
          "--delta", "1e-5", "--accountant", "pvr"], "did you mean 'prv'"),
        (["epsilon", "--noise-multiplier", "1", "--sample-rate", "0.1", "--steps", "5",
          "--delta", "2"], "--delta must be in (0, 1)"),
    ],
)
def test_cli_bad_values_exit_2_with_one_line(capsys, argv, needle):
    from ppds_core.cli import main

    assert main(["bounds", *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_cli_mutually_exclusive_is_a_usage_error(capsys):
    from ppds_core.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["bounds", "rero", "--kappa", "0.1", "--mu", "1", "--epsilon", "1"])
    assert exc.value.code == 2
    assert "not allowed with" in capsys.readouterr().err


def test_cli_subprocess():
    import json
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "ppds_core.cli", "bounds", "rero", "--kappa", "0.01", "--mu", "1",
         "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["gamma"] == pytest.approx(0.0924, abs=5e-4)
