"""The DP-SGD canary audit: the engine's real step passes at ε = 1, a noiseless one is flagged."""

from __future__ import annotations

import numpy as np
import pytest
from ppds_plugins.attacks.audit import DPSGDAudit, EngineStep, audit_llr

from ppds_core.privacy import engine
from ppds_core.privacy.accounting import calibrate_noise_multiplier
from ppds_core.privacy.ledger import DPSGDSpend

Q, T, DELTA = 0.1, 10, 1e-5


def _spend() -> DPSGDSpend:
    sigma = calibrate_noise_multiplier(1.0, DELTA, Q, T, accountant="rdp")
    return DPSGDSpend(noise_multiplier=sigma, sample_rate=Q, steps=T, max_grad_norm=0.7)


def test_engine_step_observes_clipped_canary_plus_noise():
    step = EngineStep(n=300, noise_multiplier=1.0, max_grad_norm=0.7, seed=0)
    inc = np.zeros(600, bool)
    inc[:300] = True
    z = np.stack([step(inc) for _ in range(20)])
    # canaried coordinates ~ N(1, 1) (clipped to C, in units of C); empty ones ~ N(0, 1)
    assert z[:, :300].mean() == pytest.approx(1.0, abs=0.05)
    assert z[:, 300:].mean() == pytest.approx(0.0, abs=0.05)
    assert z[:, 300:].std() == pytest.approx(1.0, abs=0.05)


def test_llr_reduces_to_gaussian_at_full_sampling():
    z = np.array([0.0, 0.5, 2.0])
    assert audit_llr(z, 2.0, 1.0) == pytest.approx((2 * z - 1) / 8)
    assert audit_llr(z, 2.0, 1e-9) == pytest.approx(0.0, abs=1e-6)


def test_correct_engine_at_epsilon_one_passes():
    rows = {r.name: r for r in DPSGDAudit(runs=500, chunk=500).audit(_spend(), DELTA, 1.0, seed=0)}
    assert rows["dpsgd-audit-epsilon-lb"].value <= 1.0
    assert rows["dpsgd-audit-epsilon-violation"].value == 0.0
    assert rows["dpsgd-audit-step-epsilon-violation"].value == 0.0
    assert rows["dpsgd-audit-step-auc"].value > 0.55  # the canary is visible, just not too much


def test_noiseless_engine_claiming_epsilon_one_is_flagged(monkeypatch):
    real = engine.make_dp_optimizer

    def broken(optimizer, **kw):  # a bug: the noise multiplier never reaches the optimizer
        return real(optimizer, **{**kw, "noise_multiplier": 0.0})

    monkeypatch.setattr(engine, "make_dp_optimizer", broken)
    rows = {r.name: r for r in DPSGDAudit(runs=500, chunk=500).audit(_spend(), DELTA, 1.0, seed=0)}
    assert rows["dpsgd-audit-epsilon-lb"].value > 1.0
    assert rows["dpsgd-audit-epsilon-violation"].value == 1.0
    assert rows["dpsgd-audit-step-epsilon-violation"].value == 1.0
