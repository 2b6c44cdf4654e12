"""Opt-in experiment trackers: `trainer: {logger: csv | tensorboard | mlflow | wandb}`."""

from __future__ import annotations

import csv
import importlib.util

import pytest
from test_engine import Indexed, built

from ppds_core import ConfigError, FitContext, PrivacyBudget
from ppds_core.privacy._opacus_lightning import check_trainer_options
from ppds_core.privacy.engine import DPSGDPlan, fit_private

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_a_csv_tracker_logs_the_epsilon_spent_per_step_inside_the_fit_folder(tmp_path):
    plan = DPSGDPlan(budget=PrivacyBudget(epsilon=2.0), batch_size=12, steps=4, accountant="rdp",
                     progress_every=1)
    ledger = fit_private(built(), Indexed(), plan,
                         FitContext(seed=0, trainer={"logger": "csv"}, workdir=tmp_path / "work"))
    (metrics,) = (tmp_path / "work" / "logs").rglob("metrics.csv")
    rows = [r for r in csv.DictReader(metrics.open()) if r.get("dp/epsilon")]
    eps = [float(r["dp/epsilon"]) for r in rows]
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert eps == sorted(eps) and eps[-1] == pytest.approx(ledger.epsilon_spent)


def test_no_tracker_is_the_default_and_writes_no_logs(tmp_path):
    plan = DPSGDPlan(budget=PrivacyBudget(epsilon=2.0), batch_size=12, steps=2, accountant="rdp")
    fit_private(built(), Indexed(), plan, FitContext(seed=0, workdir=tmp_path / "work"))
    assert not (tmp_path / "work" / "logs").exists()


def test_an_unknown_tracker_name_is_one_line_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"trainer\.logger: 'tensorbord' .*did you mean.*tensorboard"):
        check_trainer_options({"logger": "tensorbord"})


@pytest.mark.parametrize("name", ["tensorboard", "mlflow", "wandb"])
def test_a_tracker_whose_package_is_missing_says_what_to_install(name):
    if importlib.util.find_spec(name) is not None:
        pytest.skip(f"{name} is installed here")
    with pytest.raises(ConfigError, match=f"pip install {name}"):
        check_trainer_options({"logger": name}, where="quickstart.yaml: trainer")
