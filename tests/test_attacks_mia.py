"""Model-agnostic MIAs on the synthetic set: formulas, disjointness, leak vs no leak."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ppds_plugins.attacks.mia import (
    Domias,
    GanLeaks,
    MonteCarlo,
    candidates_and_reference,
    domias_scores,
    monte_carlo_scores,
)
from sklearn.datasets import load_digits

from ppds_core.budget import PrivacyBudget
from ppds_core.imageset import ImageSet, SplitSizes, make_splits
from ppds_core.interfaces import EvalContext


def _splits():
    d = load_digits()
    imgs = torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)
    pool = ImageSet(imgs, torch.tensor(d.target), [str(i) for i in range(10)], "digits")
    return make_splits(pool, None, SplitSizes(300, 600, 300), seed=0)


def _ctx(tmp_path, synthetic, splits, epsilon=math.inf):
    return EvalContext(splits=splits, synthetic=synthetic, generator=None,
                       budget=PrivacyBudget(epsilon=epsilon), ledger=None, seed=0,
                       cache_dir=tmp_path, workdir=tmp_path / "w")


def _noisy_copies(images: ImageSet, n: int, noise: float, seed: int = 0) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(len(images), (n,), generator=g)
    x = images.images[idx] + noise * torch.randn((n, *images.shape), generator=g)
    return ImageSet(x.clamp(0, 1), images.labels[idx], images.class_names)


def test_formulas_on_fixed_points():
    cand = np.array([[0.0], [3.0]])
    syn = np.array([[0.5], [1.0], [10.0]])
    # min d to G: 0.25 and 4 → ε = median = 2.125; within ε: {0.25, 1} of 3, and none
    assert monte_carlo_scores(cand, syn) == pytest.approx([2 / 3, 0.0])
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 1, (400, 1))
    syn2 = rng.normal(2, 1, (400, 1))
    s = domias_scores(np.array([[2.0], [0.0]]), syn2, ref)
    assert s[0] > 0 > s[1]  # the ratio p_G / p_R favours x near the synthetic mode


def test_reference_is_disjoint_from_nonmembers(tmp_path):
    splits = _splits()
    ctx = _ctx(tmp_path, splits.test, splits)
    cand, is_member, ref = candidates_and_reference(ctx, 400, 0.5, seed=3)
    nonmem = {tuple(x.flatten().tolist()) for x in cand.images[~torch.from_numpy(is_member)]}
    refset = {tuple(x.flatten().tolist()) for x in ref.images}
    assert is_member.sum() == (~is_member).sum() == 200
    assert not nonmem & refset


@pytest.mark.parametrize("attack", [GanLeaks(), MonteCarlo(), Domias()])
def test_leaky_synthetic_set_is_detected_and_fresh_one_is_not(tmp_path, attack):
    splits = _splits()
    leaky = _noisy_copies(splits.private, 1500, 0.02)
    rows = {r.name: r for r in attack.evaluate(_ctx(tmp_path, leaky, splits, epsilon=1.0))}
    aucs = {k: r.value for k, r in rows.items() if k.endswith("-auc")}
    assert aucs and all(v > 0.75 for v in aucs.values()), aucs
    assert any(k.endswith("-epsilon-violation") and r.value == 1.0 for k, r in rows.items())
    # synthetic images unrelated to the private split: chance level
    fresh = _noisy_copies(splits.test, 1500, 0.02)
    rows = {r.name: r for r in attack.evaluate(_ctx(tmp_path, fresh, splits, epsilon=1.0))}
    for k, r in rows.items():
        if k.endswith("-auc"):
            assert abs(r.value - 0.5) < 0.1, (k, r.value)
        if k.endswith("-epsilon-violation"):
            assert r.value == 0.0
    z = np.load(tmp_path / "w" / "scores.npz")
    assert z["scores"].shape == (400,)
