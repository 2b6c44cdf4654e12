"""LiRA: the statistics on fixed numbers, and end to end with fake shadow generators."""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from ppds_plugins.attacks.lira import LiRA
from ppds_plugins.attacks.lira._math import (
    balanced_keep,
    lira_offline_probability,
    lira_offline_z,
    lira_online,
)
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


def test_balanced_keep():
    keep = balanced_keep(8, 50, np.random.default_rng(0))
    assert (keep.sum(0) == 4).all()


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
        g = gen.fresh()
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


def test_lira_rejects_unknown_white_box_signal(tmp_path):
    ctx = make_ctx(tmp_path, {"noise": 0.02})
    with pytest.raises(ConfigError, match="exposes no signal"):
        LiRA(signal="denoising-loss").evaluate(ctx)
