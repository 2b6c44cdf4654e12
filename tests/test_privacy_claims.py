"""Privacy claims that hold: the core recomputes ε, noise is unpredictable, gdp never
fills a ledger, public data is disjoint from the private split, every ledger is checked."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
from matrix_fakes import MATRIX, install
from scipy.stats import norm
from torch import nn

from ppds_core import FitContext, Generator, ImageSet, PluginConfig, PrivacyBudget
from ppds_core.cli import main
from ppds_core.errors import ConfigError, LedgerError
from ppds_core.imageset import SplitSizes, make_splits
from ppds_core.matrix import read_results, run_matrix
from ppds_core.privacy import (
    DPSGDSpend,
    GaussianSpend,
    Ledger,
    epsilon_of,
    gaussian_release,
    verify_ledger,
)
from ppds_core.privacy.engine import DPSGDModule, DPSGDPlan, fit_private
from ppds_core.testing import check_generator, check_plugin, tiny_imageset

BUDGET = PrivacyBudget(epsilon=1.0, delta=1e-5)


# --------------------------------------------------------------------------- the core owns ε


def _dpsgd_ledger(claim_factor: float = 1.0, target: float = 1.0) -> Ledger:
    spends = [DPSGDSpend(noise_multiplier=3.0, sample_rate=0.05, steps=50, max_grad_norm=1.0)]
    eps = epsilon_of(spends, 1e-5)
    return Ledger(target_epsilon=target, delta=1e-5, epsilon_spent=eps * claim_factor, spends=spends)


def test_verify_ledger_replaces_the_claim_with_the_recomputed_epsilon():
    honest = _dpsgd_ledger()
    assert honest.epsilon_spent < 0.9
    conservative = honest.model_copy(update={"epsilon_spent": 0.95})  # over-claiming is safe
    assert verify_ledger(conservative, BUDGET, "g").epsilon_spent == pytest.approx(honest.epsilon_spent)


@pytest.mark.parametrize("ledger,budget,match", [
    (_dpsgd_ledger(0.5), BUDGET, "claims ε=.* but its spends compose to"),
    (_dpsgd_ledger(target=0.1), PrivacyBudget(epsilon=0.1), "over its target"),
    (Ledger(target_epsilon=1.0, delta=1e-5, epsilon_spent=0.0), BUDGET, "lists no spend"),
    (Ledger(target_epsilon=math.inf, delta=1e-5, epsilon_spent=0.0), BUDGET, "was asked for"),
    (Ledger(target_epsilon=math.inf, delta=1e-5, epsilon_spent=math.inf,
            spends=[GaussianSpend(noise_multiplier=1.0, sensitivity=1.0)]),
     PrivacyBudget(epsilon=math.inf), "ε = ∞ ledger lists 1 spend"),
    (_dpsgd_ledger().model_copy(update={"accountant": "gdp"}), BUDGET, "under-report"),
])
def test_verify_ledger_refuses_a_ledger_that_does_not_hold(ledger, budget, match):
    with pytest.raises((LedgerError, ConfigError), match=match):
        verify_ledger(ledger, budget, "third-party")


def test_an_understated_epsilon_fails_the_cell_and_names_the_plugin(monkeypatch, tmp_path):
    install(monkeypatch, tmp_path)
    matrix = copy.deepcopy(MATRIX)
    matrix["generators"][0]["config"]["understate"] = True
    summary = run_matrix(matrix, tmp_path / "out")
    assert summary.exit_code == 1
    fit_errors = {f["error"] for f in summary.failed}
    assert any("generator 'fake-gen' claims ε=" in e and "compose to" in e for e in fit_errors)
    rows = read_results(tmp_path / "out")
    private = [r for r in rows if r["generator"] == "fake-gen" and math.isfinite(r["epsilon"])]
    assert private and all(r["status"] == "failed" for r in private)
    # the non-private reference has no ε to understate: its cells still run
    assert any(r["status"] == "ok" for r in rows if r["generator"] == "fake-gen"
               and math.isinf(r["epsilon"]))


# --------------------------------------------------------------------------- the conformance kit


class MerfConfig(PluginConfig):
    flaw: str = "none"


class NoisyMeans(Generator):
    """DP-MERF in miniature: class means released once with the Gaussian mechanism."""

    name = "noisy-means"
    Config = MerfConfig
    trains_with_dp_sgd = False

    def fit(self, private, budget, ctx):
        flaw = self.config.flaw
        n = len(private)
        means = torch.stack([private.images[private.labels == k].mean(0)
                             for k in range(private.num_classes)])
        # replacing one image moves one class mean by at most √(CHW)/n_k; here Δ is that bound
        sensitivity = math.sqrt(private.images[0].numel()) / (n / private.num_classes / 2)
        release = gaussian_release(sensitivity, budget, ctx=ctx, purpose="class means")
        ledger = release.ledger
        if flaw == "understated" and budget.is_private:
            ledger = ledger.model_copy(update={"epsilon_spent": ledger.epsilon_spent / 2})
        elif flaw == "overspend" and budget.is_private:  # noise sized for 2ε, claims it honestly
            release = gaussian_release(sensitivity, PrivacyBudget(epsilon=2 * budget.epsilon,
                                                                  delta=budget.delta), ctx=ctx)
            ledger = release.ledger.model_copy(update={"target_epsilon": budget.epsilon})
        elif flaw == "no-noise" and budget.is_private:
            release = gaussian_release(sensitivity, PrivacyBudget(epsilon=math.inf), ctx=ctx)
            ledger = Ledger(target_epsilon=budget.epsilon, delta=budget.delta)
        elif flaw == "false-infinity" and budget.is_private:
            ledger = Ledger(target_epsilon=math.inf, delta=budget.delta, epsilon_spent=math.inf)
        self.means = release.privatize(means).clamp(0, 1)
        self.class_names = list(private.class_names)
        self.ledger = ledger
        return ledger

    def sample(self, n, *, seed=0, labels=None):
        labels = torch.arange(n) % len(self.class_names) if labels is None else torch.as_tensor(labels)
        return ImageSet(self.means[labels], labels, self.class_names, "noisy-means")

    def save(self, directory):
        torch.save({"means": self.means}, Path(directory) / "means.pt")
        (Path(directory) / "meta.json").write_text(json.dumps({"names": self.class_names,
                                                                "ledger": self.ledger.to_json()}))

    @classmethod
    def load(cls, directory):
        g = cls()
        g.means = torch.load(Path(directory) / "means.pt", weights_only=True)["means"]
        meta = json.loads((Path(directory) / "meta.json").read_text())
        g.class_names, g.ledger = meta["names"], Ledger.from_json(meta["ledger"])
        return g


def test_an_honest_gaussian_release_generator_conforms(tmp_path):
    gen = check_generator(NoisyMeans, tmp_path)
    (spend,) = gen.ledger.spends
    assert isinstance(spend, GaussianSpend) and gen.ledger.epsilon_spent <= 10.0


@pytest.mark.parametrize("flaw,match", [
    ("understated", "claims ε=.* compose to"),
    ("overspend", "over its target"),
    ("no-noise", "lists no spend"),
    ("false-infinity", "was asked for"),
])
def test_the_kit_catches_each_broken_ledger_of_a_non_dp_sgd_generator(flaw, match, tmp_path):
    class Broken(NoisyMeans):
        Config = type("Cfg", (MerfConfig,), {"__annotations__": {"flaw": str}, "flaw": flaw})

    with pytest.raises(AssertionError, match=match):
        check_generator(Broken, tmp_path)


def test_a_generator_must_declare_whether_it_trains_with_dp_sgd(tmp_path):
    class Undeclared(NoisyMeans):
        pass

    del NoisyMeans.trains_with_dp_sgd
    try:
        with pytest.raises(AssertionError, match="must declare trains_with_dp_sgd"):
            check_generator(Undeclared, tmp_path)
    finally:
        NoisyMeans.trains_with_dp_sgd = False


def test_check_plugin_builds_a_real_cell_for_an_evaluator(tmp_path):
    from ppds_core import Measurement, Metric

    seen = {}

    class LedgerReader(Metric):
        name = "ledger-reader"
        needs = frozenset({"dp-sgd", "labels", "public", "shadow-models"})

        def evaluate(self, ctx):
            seen["ctx"] = ctx
            return [Measurement("ledger-reader", ctx.ledger.epsilon_spent)]

    (row,) = check_plugin(LedgerReader, tmp_path)
    ctx = seen["ctx"]
    assert ctx.ledger.dp_sgd() is not None and 0 < row.value <= 10.0
    assert ctx.splits.public is not None and ctx.fit_fresh is not None
    assert ctx.synthetic.num_classes == ctx.splits.private.num_classes


# --------------------------------------------------------------------------- Gaussian release


def _analytic_gaussian_epsilon(sigma: float, delta: float) -> float:
    """Exact ε of the Gaussian mechanism with noise multiplier σ (Balle & Wang 2018)."""
    from scipy.optimize import brentq

    def d(eps):
        return norm.cdf(-eps * sigma + 0.5 / sigma) - math.exp(eps) * norm.cdf(-eps * sigma - 0.5 / sigma)

    return brentq(lambda e: d(e) - delta, 0.0, 100.0)


@pytest.mark.parametrize("epsilon", [0.5, 2.0, 8.0])
def test_gaussian_release_is_calibrated_against_the_analytic_gaussian_mechanism(epsilon):
    rel = gaussian_release(0.3, PrivacyBudget(epsilon=epsilon, delta=1e-5), purpose="stat")
    exact = _analytic_gaussian_epsilon(rel.noise_multiplier, 1e-5)
    # the ledger's ε upper-bounds the exact ε, and σ is tight to within ~1 %
    assert exact <= rel.ledger.epsilon_spent <= epsilon
    assert exact >= 0.98 * epsilon
    assert verify_ledger(rel.ledger, PrivacyBudget(epsilon=epsilon, delta=1e-5), "g") is not None
    noise = rel.privatize(torch.zeros(20000)) / rel.sensitivity
    assert float(noise.std()) == pytest.approx(rel.noise_multiplier, rel=0.03)


def test_gaussian_release_at_infinity_adds_nothing_and_spends_nothing():
    rel = gaussian_release(1.0, PrivacyBudget(epsilon=math.inf))
    x = torch.ones(5)
    assert rel.privatize(x) is x and rel.ledger.spends == [] and math.isinf(rel.ledger.epsilon_spent)


# --------------------------------------------------------------------------- unpredictable noise


class _Linear(DPSGDModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(4, 1)
        self.batches: list[list[int]] = []

    def private_module(self):
        return self.net

    def configure_private_optimizer(self):
        return torch.optim.SGD(self.net.parameters(), lr=0.1)

    def training_step(self, batch, batch_idx):
        x, idx = batch
        self.batches.append(idx.tolist())
        self.private_step((self.net(x).squeeze(1) - 1.0) ** 2)


def _run(seed: int, reproducible: bool):
    torch.manual_seed(seed)  # model initialisation: seeded in every mode
    module = _Linear()
    init = module.net.weight.detach().clone()
    data = torch.utils.data.TensorDataset(torch.randn(40, 4, generator=torch.Generator().manual_seed(1)),
                                          torch.arange(40))
    plan = DPSGDPlan(budget=PrivacyBudget(epsilon=2.0), batch_size=8, steps=4, accountant="rdp")
    ledger = fit_private(module, data, plan, FitContext(seed=seed, reproducible_noise=reproducible))
    return init, module.net.weight.detach().clone(), module.batches, ledger


def test_default_runs_draw_fresh_noise_and_batches_but_the_same_initialisation():
    init_a, w_a, batches_a, led_a = _run(0, reproducible=False)
    init_b, w_b, batches_b, led_b = _run(0, reproducible=False)
    assert torch.equal(init_a, init_b)
    assert not torch.equal(w_a, w_b) and batches_a != batches_b
    assert led_a == led_b and not led_a.reproducible_noise and not led_a.notes


def test_reproducible_noise_is_bit_exact_and_says_so_on_the_ledger():
    _, w_a, batches_a, led_a = _run(3, reproducible=True)
    _, w_b, batches_b, _ = _run(3, reproducible=True)
    assert torch.equal(w_a, w_b) and batches_a == batches_b
    assert led_a.reproducible_noise and "does not hold against a reader of the config" in led_a.notes[0]


def test_the_board_warns_when_noise_was_seeded(monkeypatch, tmp_path):
    install(monkeypatch, tmp_path)
    matrix = copy.deepcopy(MATRIX) | {"reproducible_noise": True}
    summary = run_matrix(matrix, tmp_path / "out")
    assert summary.exit_code == 0, summary.failed
    rows = read_results(tmp_path / "out")
    assert all(r["reproducible_noise"] for r in rows if r["generator"] == "fake-gen"
               and math.isfinite(r["epsilon"]))
    board = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "Noise seeded from a public seed" in board and "fake-gen / ε=1" in board
    default = run_matrix(copy.deepcopy(MATRIX), tmp_path / "default")
    again = run_matrix(copy.deepcopy(MATRIX), tmp_path / "again")
    assert default.exit_code == again.exit_code == 0
    assert "Noise seeded" not in (tmp_path / "default" / "leaderboard.md").read_text()
    # two default runs of one seed: the same cells over the same data splits (cell ids hash both)
    assert ({r["cell"] for r in read_results(tmp_path / "default")}
            == {r["cell"] for r in read_results(tmp_path / "again")})


# --------------------------------------------------------------------------- accountants


def test_a_matrix_with_the_gdp_accountant_exits_2_with_one_line(tmp_path, capsys):
    cfg = tmp_path / "m.yaml"
    cfg.write_text("datasets: [{name: digits}]\ngenerators: [{name: dp-gan, epsilons: [1]}]\n"
                   "accountant: gdp\n")
    assert main(["run", str(cfg), "--check"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "under-report" in err and "prv" in err


def test_ppds_fit_refuses_the_gdp_accountant(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit", "dp-gan", "--dataset", "digits", "--epsilon", "1", "--out", "x", "--accountant", "gdp"])
    assert exc.value.code == 2


# --------------------------------------------------------------------------- public ∩ private


def test_a_public_set_that_holds_private_images_is_refused():
    pool = tiny_imageset(n=100)
    public = pool.subset(torch.arange(60, 100), "leaky-public")  # overlaps the shuffled private split
    with pytest.raises(ConfigError, match=r"contains \d+ image\(s\) identical to images of the private"):
        make_splits(pool, None, SplitSizes(private=0.5, holdout=0.25, test=0.25), 0, public=public)
    clean = tiny_imageset(n=40, seed=99)
    assert make_splits(pool, None, SplitSizes(private=0.5, holdout=0.25, test=0.25), 0,
                       public=clean).public is clean
