"""The plan owns ε; spends and ledgers are parsed once; the accountants are one table.

Issue 13's split of the engine and the accountants: these tests hold the
pieces to what the split promised — the plan is pure numbers (no torch, no
Lightning), calibration's ε is the ledger's when the run went as planned,
spend models are frozen and validated, and "spent ≤ target" has one tolerance.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pydantic
import pytest

from ppds_core.budget import EPSILON_RTOL, PrivacyBudget
from ppds_core.errors import BudgetError
from ppds_core.privacy import accountants
from ppds_core.privacy.accounting import (
    ACCOUNTANTS,
    calibrate,
    calibrate_noise_multiplier,
    dp_sgd_epsilon,
    epsilon_of,
    epsilon_of_history,
)
from ppds_core.privacy.ledger import DPSGDSpend, GaussianSpend, Ledger
from ppds_core.privacy.plan import DPSGDPlan, plan_dp_sgd

ROOT = Path(__file__).resolve().parents[1]


def test_importing_the_plan_loads_neither_torch_nor_lightning():
    """``import ppds_core`` itself loads torch (its ImageSet), so the child process stands in
    an empty ``ppds_core`` package and imports the real ``ppds_core.privacy`` and its plan
    with torch, Lightning and Opacus made unimportable: any import of them on the way fails."""
    child = textwrap.dedent(f"""
        import importlib.abc, sys, types
        BLOCKED = {{"torch", "lightning", "pytorch_lightning", "lightning_fabric", "opacus"}}
        tried = []
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    tried.append(name)
                    raise ImportError(f"blocked: {{name}}")
                return None
        sys.meta_path.insert(0, Block())
        root = types.ModuleType("ppds_core")
        root.__path__ = [{str(ROOT / "ppds_core")!r}]
        sys.modules["ppds_core"] = root
        from ppds_core.budget import PrivacyBudget
        from ppds_core.privacy.plan import DPSGDPlan, plan_dp_sgd
        # resolving a plan needs no training stack (a finite ε asks Opacus' accountants,
        # which import torch themselves, only when it is evaluated)
        plan_dp_sgd(DPSGDPlan(budget=PrivacyBudget(epsilon=float("inf")), batch_size=4,
                              steps=2), 16)
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        print(tried, loaded)
        assert not tried and not loaded
    """)
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout
    assert done.stdout.strip() == "[] []"


def test_calibration_returns_the_epsilon_the_accountant_gives_its_sigma():
    for accountant in ("rdp", "prv"):
        sigma, eps = calibrate(3.0, 1e-5, 0.25, 7, accountant)
        assert sigma == calibrate_noise_multiplier(3.0, 1e-5, 0.25, 7, accountant)
        assert eps == dp_sgd_epsilon(sigma, 0.25, 7, 1e-5, accountant) <= 3.0


def test_the_plan_keeps_calibrations_epsilon_and_recomputes_only_for_other_step_counts():
    schedule = plan_dp_sgd(DPSGDPlan(budget=PrivacyBudget(epsilon=2.0), batch_size=12, steps=6,
                                     accountant="rdp"), num_examples=48)
    planned = schedule.planned_epsilon
    assert planned == epsilon_of(schedule.spends(6), 1e-5, "rdp") <= 2.0
    assert schedule.epsilon_at(6) is planned  # no second accountant evaluation
    early = schedule.epsilon_at(2)
    assert early == epsilon_of(schedule.spends(2), 1e-5, "rdp") < planned
    assert schedule.epsilon_at(0) == 0.0


def test_a_fixed_sigma_is_accepted_within_the_budgets_one_tolerance_and_refused_beyond():
    eps = dp_sgd_epsilon(1.0, 0.25, 2, 1e-5, "rdp")

    def plan(target):
        return plan_dp_sgd(DPSGDPlan(budget=PrivacyBudget(epsilon=target), batch_size=12,
                                     steps=2, accountant="rdp", noise_multiplier=1.0), 48)

    assert plan(eps / (1 + EPSILON_RTOL / 2)).planned_epsilon == eps  # what verify_ledger accepts
    with pytest.raises(BudgetError, match="costs epsilon"):
        plan(eps / (1 + 2 * EPSILON_RTOL))


def test_a_checkpoint_whose_history_disagrees_with_its_step_count_is_refused():
    from ppds_core.privacy.engine import DPSGDState

    schedule = plan_dp_sgd(DPSGDPlan(budget=PrivacyBudget(epsilon=2.0), batch_size=12, steps=6,
                                     accountant="rdp"), num_examples=48)
    saved = DPSGDState(schedule=schedule, steps_done=3).state_dict()
    assert saved["history"] == [[schedule.noise_multiplier, 0.25, 3]]  # the format it always had
    resumed = DPSGDState(schedule=schedule)
    resumed.load_state_dict(saved)
    assert resumed.steps_done == 3 and resumed.history() == [(schedule.noise_multiplier, 0.25, 3)]
    with pytest.raises(BudgetError, match="damaged"):
        DPSGDState(schedule=schedule).load_state_dict({**saved, "steps_done": 4})


def test_every_accountant_is_one_entry_of_the_name_table(monkeypatch):
    assert tuple(accountants.EPSILON_OF) == ACCOUNTANTS == ("rdp", "prv", "gdp")
    monkeypatch.setitem(accountants.EPSILON_OF, "rdp", lambda history, delta: 42.0)
    assert epsilon_of_history([(1.0, 0.1, 3)], 1e-5, "rdp") == 42.0
    # the cases common to all accountants never reach the table
    assert epsilon_of_history([(1.0, 0.1, 0)], 1e-5, "rdp") == 0.0
    assert epsilon_of_history([(0.0, 0.1, 3)], 1e-5, "rdp") == math.inf


def test_spends_are_frozen_records():
    spend = DPSGDSpend(noise_multiplier=1.0, sample_rate=0.1, steps=3, max_grad_norm=1.0)
    with pytest.raises(pydantic.ValidationError):
        spend.steps = 4
    query = GaussianSpend(noise_multiplier=2.0, sensitivity=1.0)
    with pytest.raises(pydantic.ValidationError):
        query.count = 2


@pytest.mark.parametrize("bad", [
    {"noise_multiplier": -1.0}, {"noise_multiplier": math.nan}, {"sample_rate": 0.0},
    {"sample_rate": 1.5}, {"steps": -1}, {"steps": 2.5}, {"max_grad_norm": 0.0},
    {"max_grad_norm": math.inf},
])
def test_a_dp_sgd_spend_no_accountant_can_price_is_refused_when_built(bad):
    fields = {"noise_multiplier": 1.0, "sample_rate": 0.1, "steps": 3, "max_grad_norm": 1.0}
    with pytest.raises(pydantic.ValidationError):
        DPSGDSpend(**{**fields, **bad})


@pytest.mark.parametrize("bad", [{"noise_multiplier": -0.5}, {"sensitivity": 0.0},
                                 {"sensitivity": math.nan}, {"count": -1}])
def test_a_gaussian_spend_no_accountant_can_price_is_refused_when_built(bad):
    with pytest.raises(pydantic.ValidationError):
        GaussianSpend(**{"noise_multiplier": 1.0, "sensitivity": 1.0, **bad})


def test_a_ledger_round_trips_infinity_through_its_json_string():
    reference = Ledger(target_epsilon=math.inf, delta=1e-5, epsilon_spent=math.inf)
    text = reference.to_json()
    data = json.loads(text)
    assert data["target_epsilon"] == data["epsilon_spent"] == "inf"
    assert Ledger.from_json(text) == reference
    private = Ledger(target_epsilon=2.0, delta=1e-5, epsilon_spent=1.5, spends=[
        DPSGDSpend(noise_multiplier=1.0, sample_rate=0.1, steps=3, max_grad_norm=1.0)])
    assert json.loads(private.to_json())["epsilon_spent"] == 1.5
    assert Ledger.from_json(private.to_json()) == private


@pytest.mark.parametrize("bad", [{"target_epsilon": 0.0}, {"target_epsilon": -1.0},
                                 {"delta": 0.0}, {"delta": 1.0}, {"epsilon_spent": -0.1},
                                 {"epsilon_spent": math.nan}])
def test_a_ledger_with_an_impossible_budget_or_spend_is_refused_when_read(bad):
    with pytest.raises(pydantic.ValidationError):
        Ledger(**{"target_epsilon": 1.0, "delta": 1e-5, **bad})
