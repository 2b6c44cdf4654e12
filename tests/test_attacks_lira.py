"""LiRA: the statistics on fixed numbers and against mi_lira_2021's formulas, the matched
shadow design, and end to end with fake shadow generators."""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from ppds_plugins.attacks.lira import LiRA
from ppds_plugins.attacks.lira._math import (
    lira_offline,
    lira_offline_probability,
    lira_offline_z,
    lira_online,
    matched_keep,
)
from scipy import stats
from sklearn.datasets import load_digits

from ppds_core.budget import PrivacyBudget
from ppds_core.errors import ConfigError
from ppds_core.imageset import ImageSet, SplitSizes, make_splits
from ppds_core.interfaces import EvalContext, FitContext, Generator, PluginConfig
from ppds_core.privacy.ledger import Ledger

# one candidate, six shadows: IN signals [1, 2, 3], OUT signals [-1, 0, 1]
SIG = np.array([[1.0], [2.0], [3.0], [-1.0], [0.0], [1.0]])
KEEP = np.array([[True], [True], [True], [False], [False], [False]])


def test_online_score_fixed_numbers():
    assert lira_online(np.array([2.0]), SIG, KEEP)[0] == pytest.approx(3.0, abs=1e-9)
    assert lira_online(np.array([1.0]), SIG, KEEP)[0] == pytest.approx(0.0, abs=1e-9)


def test_offline_one_sided_fixed_numbers():
    assert lira_offline_probability(np.array([2.0]), SIG, KEEP)[0] == pytest.approx(0.99285, abs=1e-5)
    assert lira_offline_z(np.array([0.0]), SIG, KEEP)[0] == pytest.approx(0.0)


def test_fixed_variance_uses_one_sigma():
    sig = np.array([[1.0, 10.0], [3.0, 30.0], [-1.0, -10.0], [1.0, 10.0]])
    keep = np.array([[True, True], [True, True], [False, False], [False, False]])
    per = lira_online(np.array([2.0, 20.0]), sig, keep)
    fixed = lira_online(np.array([2.0, 20.0]), sig, keep, fix_variance=True)
    # per-candidate σ makes the score scale-invariant (candidate 2 = 10 × candidate 1);
    # one global σ does not
    assert per == pytest.approx([2.0, 2.0])
    assert fixed[0] != pytest.approx(fixed[1]) and np.isfinite(fixed).all()


@pytest.mark.parametrize(("k", "pool", "n"), [(8, 50, 25), (5, 30, 20), (3, 1347, 898)])
def test_matched_shadows_train_on_the_targets_size_and_balance_membership(k, pool, n):
    keep = matched_keep(k, pool, n, np.random.default_rng(0))
    assert (keep.sum(1) == n).all()  # every shadow: exactly the target's training-set size
    counts = keep.sum(0)
    assert counts.max() - counts.min() <= 1  # every candidate IN about equally often
    assert counts.min() >= 1 and counts.max() <= k - 1  # ... and OUT at least once


def _reference_generate_ours(keep, scores, check_scores, fix_variance):
    """mi_lira_2021 plot.py ``generate_ours`` for one target model (ranked by −prediction)."""
    dat_in = [scores[keep[:, j], j, :] for j in range(scores.shape[1])]
    dat_out = [scores[~keep[:, j], j, :] for j in range(scores.shape[1])]
    in_size, out_size = min(map(len, dat_in)), min(map(len, dat_out))
    dat_in = np.array([x[:in_size] for x in dat_in])
    dat_out = np.array([x[:out_size] for x in dat_out])
    mean_in, mean_out = np.median(dat_in, 1), np.median(dat_out, 1)
    if fix_variance:
        std_in = std_out = np.std(dat_in)
    else:
        std_in, std_out = np.std(dat_in, 1), np.std(dat_out, 1)
    pr_in = -stats.norm.logpdf(check_scores, mean_in, std_in + 1e-30)
    pr_out = -stats.norm.logpdf(check_scores, mean_out, std_out + 1e-30)
    return (pr_in - pr_out).mean(1)


def _reference_generate_ours_offline(keep, scores, check_scores, fix_variance):
    """mi_lira_2021 plot.py ``generate_ours_offline`` (ranked by −prediction)."""
    dat_out = [scores[~keep[:, j], j, :] for j in range(scores.shape[1])]
    out_size = min(map(len, dat_out))
    dat_out = np.array([x[:out_size] for x in dat_out])
    mean_out = np.median(dat_out, 1)
    std_out = np.std(dat_out) if fix_variance else np.std(dat_out, 1)
    return stats.norm.logpdf(check_scores, mean_out, std_out + 1e-30).mean(1)


def _random_lira_problem(seed=0, k=7, n=40):
    rng = np.random.default_rng(seed)
    keep = matched_keep(k, n, 26, rng)  # unequal IN / OUT counts: the truncation matters
    signals = rng.normal(size=(k, n)) + keep * rng.uniform(0.5, 2.0, n) + rng.normal(size=n)
    target = rng.normal(size=n) + 0.8
    return target, signals, keep


@pytest.mark.parametrize("fix", [False, True])
def test_reference_convention_equals_mi_lira_2021(fix):
    target, signals, keep = _random_lira_problem()
    ref_on = -_reference_generate_ours(keep, signals[:, :, None], target[:, None], fix)
    ref_off = -_reference_generate_ours_offline(keep, signals[:, :, None], target[:, None], fix)
    assert lira_online(target, signals, keep, fix, "reference") == pytest.approx(ref_on, rel=1e-12)
    assert lira_offline(target, signals, keep, fix, "reference") == pytest.approx(ref_off, rel=1e-12)


def test_paper_convention_differs_from_the_reference_only_where_documented():
    target, signals, _ = _random_lira_problem(k=8)
    # per-candidate online: same formula, but the reference drops observations beyond the
    # fewest any candidate has; with a balanced keep (equal counts) the two agree exactly
    even = matched_keep(8, 40, 20, np.random.default_rng(1))
    assert lira_online(target, signals, even, False, "paper") == pytest.approx(
        lira_online(target, signals, even, False, "reference"), rel=1e-12)
    # fixed variance: the paper's σ_out is std(OUT), the reference's std(IN)
    assert not np.allclose(lira_online(target, signals, even, True, "paper"),
                           lira_online(target, signals, even, True, "reference"))
    # offline: one-sided z (a candidate far *below* μ_out is a non-member) vs two-sided −logpdf
    low = np.full(40, -50.0)
    assert (lira_offline(low, signals, even, True, "paper") < -10).all()
    assert (lira_offline(low, signals, even, True, "reference") > 10).all()


class NoisyCopies(Generator):
    """Test double: 'samples' are noisy copies of its training images, so it leaks."""

    name: ClassVar[str] = "noisy-copies"
    trains_with_dp_sgd: ClassVar[bool] = False

    class Config(PluginConfig):
        noise: float = 0.05

    def fit(self, private, budget, ctx):
        self.data = private
        self.ledger = Ledger(target_epsilon=budget.epsilon, delta=budget.delta,
                             epsilon_spent=budget.epsilon)
        return self.ledger

    def sample(self, n, *, seed=0, labels=None):
        g = torch.Generator().manual_seed(seed)
        idx = torch.randint(len(self.data), (n,), generator=g)
        x = self.data.images[idx] + self.config.noise * torch.randn(
            (n, *self.data.shape), generator=g)
        return ImageSet(x.clamp(0, 1), self.data.labels[idx], self.data.class_names)

    def save(self, directory: Path) -> None:  # pragma: no cover - not used
        raise NotImplementedError

    @classmethod
    def load(cls, directory: Path):  # pragma: no cover - not used
        raise NotImplementedError


def digits_splits(private=60, holdout=60, test=20):
    d = load_digits()
    imgs = torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)
    pool = ImageSet(imgs, torch.tensor(d.target), [str(i) for i in range(10)], "digits")
    return make_splits(pool, None, SplitSizes(private, holdout, test), seed=0)


def make_ctx(tmp_path, gen_config, epsilon=math.inf, n_syn=300):
    splits = digits_splits()
    budget = PrivacyBudget(epsilon=epsilon)
    gen = NoisyCopies(gen_config)
    ledger = gen.fit(splits.private, budget, FitContext())

    def fit_fresh(private, seed):
        g = type(gen)(gen.config)
        g.fit(private, budget, FitContext(seed=seed))
        return g

    return EvalContext(splits=splits, synthetic=gen.sample(n_syn, seed=1), generator=gen,
                       budget=budget, ledger=ledger, seed=0, cache_dir=tmp_path / "cache",
                       workdir=tmp_path / "work", fit_fresh=fit_fresh)


def test_lira_end_to_end_detects_memorising_generator(tmp_path):
    ctx = make_ctx(tmp_path, {"noise": 0.02})
    rows = {r.name: r for r in LiRA(shadow_models=4, population=80,
                                     synthetic_samples=300).evaluate(ctx)}
    assert rows["lira-auc"].value > 0.8
    assert rows["lira-offline-auc"].value > 0.7
    assert "lira-epsilon-violation" not in rows  # ε = ∞ cannot be violated
    z = np.load(ctx.workdir / "scores.npz")
    assert z["scores"].shape == z["is_member"].shape == (80,)
    assert z["is_member"].sum() == 40 and z["shadow_signals"].shape == (4, 80)


def test_lira_flags_claimed_epsilon_that_leaks(tmp_path):
    # the same leaky "generator" claiming ε = 0.1: the attack must flag it
    ctx = make_ctx(tmp_path, {"noise": 0.0}, epsilon=0.1)
    rows = {r.name: r for r in LiRA(shadow_models=4, population=120,
                                     synthetic_samples=300).evaluate(ctx)}
    assert rows["lira-epsilon-lb"].value > 0.1
    assert rows["lira-epsilon-violation"].value == 1.0


def test_lira_refuses_a_signal_it_does_not_compute_when_configured():
    # the only signal is the black-box distance; a white-box name fails at config time
    with pytest.raises(ConfigError, match="signal"):
        LiRA(signal="denoising-loss")


def test_shadows_train_on_the_targets_size_from_private_and_holdout(tmp_path):
    ctx = make_ctx(tmp_path, {"noise": 0.02})
    inner, seen = ctx.fit_fresh, []

    def recording(private, seed):
        seen.append((private, seed))
        return inner(private, seed)

    ctx.fit_fresh = recording
    LiRA(shadow_models=4, population=80, synthetic_samples=100).evaluate(ctx)
    pool = {tuple(x.flatten().tolist()) for x in torch.cat([ctx.splits.private.images,
                                                             ctx.splits.holdout.images])}
    assert len(seen) == 4 and len({s for _, s in seen}) == 4
    for private, _ in seen:
        assert len(private) == len(ctx.splits.private)  # the target's training-set size
        assert {tuple(x.flatten().tolist()) for x in private.images} <= pool
    z = np.load(ctx.workdir / "scores.npz")
    assert (z["keep"].sum(0) == 2).all()  # 60 of a pool of 120: each candidate IN for half


def test_membership_is_the_targets_own_training_set(tmp_path):
    # a target trained on the private split, candidates from private are the members
    ctx = make_ctx(tmp_path, {"noise": 0.0})
    rows = {r.name: r for r in LiRA(shadow_models=4, population=60,
                                     synthetic_samples=300).evaluate(ctx)}
    assert rows["lira-auc"].value > 0.9
    lo, hi = rows["lira-auc"].extra["ci_low"], rows["lira-auc"].extra["ci_high"]
    assert lo <= rows["lira-auc"].value <= hi
    assert rows["lira-auc"].extra["shadow_train_size"] == 60


def test_too_few_shadows_for_the_pool_is_a_clear_error(tmp_path):
    ctx = make_ctx(tmp_path, {"noise": 0.02})
    ctx.splits = digits_splits(private=60, holdout=20)  # pool 80: needs ≥ 4 shadows to be OUT once
    with pytest.raises(ConfigError, match="shadow_models ≥ 4"):
        LiRA(shadow_models=3, population=40).evaluate(ctx)


def test_real_data_release_is_attacked_without_any_fit(tmp_path):
    splits = digits_splits()

    def no_fit(private, seed):
        raise AssertionError("the real-data release must not be refitted")

    ctx = EvalContext(splits=splits, synthetic=splits.private, generator=None,
                      budget=PrivacyBudget(epsilon=math.inf), ledger=None, seed=0,
                      cache_dir=tmp_path / "cache", workdir=tmp_path / "work", fit_fresh=no_fit)
    for convention in ("paper", "reference"):
        rows = {r.name: r for r in LiRA(shadow_models=4, population=80,
                                         convention=convention).evaluate(ctx)}
        assert rows["lira-auc"].value == 1.0 and rows["lira-offline-auc"].value == 1.0
        assert rows["lira-auc"].extra["release"] == "private split itself"
