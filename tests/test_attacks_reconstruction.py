"""Reconstruction attack: threat-model noise, the matching start step, end to end on digits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ppds_plugins.attacks.reconstruction import Reconstruction, ReconstructionConfig, _prior_config
from ppds_plugins.attacks.reconstruction._denoise import reconstruct, start_index
from ppds_plugins.attacks.reconstruction._kappa import estimate_kappa, guess_hits, mean_guesses
from ppds_plugins.attacks.reconstruction._prior import fit_prior
from ppds_plugins.attacks.reconstruction._threat import observe
from sklearn.datasets import load_digits

from ppds_core.budget import PrivacyBudget
from ppds_core.errors import SkipMeasurement
from ppds_core.imageset import ImageSet, SplitSizes, make_splits
from ppds_core.interfaces import EvalContext
from ppds_core.privacy.bounds import rero_gdp
from ppds_core.privacy.ledger import DPSGDSpend, Ledger

TINY = dict(prior_channels=[8, 16], prior_steps=3, prior_batch_size=32, kappa_samples=30,
            repeats=2, ddim_steps=6, targets=6)


def _splits():
    d = load_digits()
    imgs = torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)
    pool = ImageSet(imgs, torch.tensor(d.target), [str(i) for i in range(10)], "digits")
    return make_splits(pool, None, SplitSizes(100, 200, 50), seed=0)


def test_observation_noise_is_sigma_times_norm():
    x = torch.full((2000, 1, 8, 8), 0.5)  # ‖x‖ = 4 ≥ C/√M
    y, s = observe(x, 0.1, 1.0, 1000, torch.Generator().manual_seed(0))
    assert s[0].item() == pytest.approx(0.4)
    assert (y - x).std().item() == pytest.approx(0.4, rel=0.01)
    y0, s0 = observe(torch.zeros(3, 1, 8, 8), 0.1, 1.0, 100, torch.Generator().manual_seed(0))
    assert s0[0].item() == pytest.approx(0.1 * 1.0 / 10)  # the C/√M floor


def test_start_step_matches_observation_noise_level():
    prior = fit_prior(torch.rand(16, 1, 8, 8), _prior_config(ReconstructionConfig(**TINY)), 1, 8, 0)
    grid = torch.linspace(999, 0, 100).round().long()
    s = torch.tensor([0.05, 0.5, 2.0, 50.0], dtype=torch.float64)
    idx = start_index(prior, grid, s)
    ac = prior.alphas_cumprod[grid]
    target = 1 / (1 + s**2)
    for i, k in enumerate(idx.tolist()):
        assert ac[k] <= target[i] or k == 0
        if k + 1 < len(grid):
            assert ac[k + 1] > target[i]


def test_nearly_noiseless_observation_is_reconstructed():
    prior = fit_prior(torch.rand(16, 1, 8, 8), _prior_config(ReconstructionConfig(**TINY)), 1, 8, 0)
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    out = reconstruct(prior, x, torch.full((4,), 1e-4, dtype=torch.float64), steps=20)
    assert (out - x).pow(2).mean().item() < 1e-4


def test_kappa_is_the_best_guess_hit_rate_not_the_mass_around_a_target():
    d = load_digits()
    pop = torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)[:600]
    labels = torch.tensor(d.target)[:600]
    eta = 0.03
    means = mean_guesses(pop, labels)
    # brute force: the per-pixel MSE of each constant guess against every image
    brute = ((pop[None] - means[:, None]) ** 2).flatten(2).mean(2) <= eta
    assert (guess_hits(pop, means, eta) == brute.sum(1).numpy()).all()
    exact = estimate_kappa(pop, {"mean": means, "image": pop}, eta, exact=True)
    best_constant = brute.sum(1).max().item() / len(pop)
    assert best_constant > 0.01  # on digits a class mean alone hits often at this η
    assert exact["kappa"] >= best_constant and exact["kappa"] == exact["kappa_point"]
    # a π-sample (not π itself): the Clopper–Pearson upper end, above the sample's rate
    sampled = estimate_kappa(pop[:200], {"mean": mean_guesses(pop[:200], labels[:200])}, eta,
                             exact=False)
    assert sampled["kappa"] > sampled["kappa_point"] and sampled["confidence"] == 0.95


def _ctx(tmp_path, ledger):
    splits = _splits()
    return EvalContext(splits=splits, synthetic=splits.holdout, generator=None,
                       budget=PrivacyBudget(epsilon=ledger.target_epsilon), ledger=ledger, seed=0,
                       cache_dir=tmp_path / "cache", workdir=tmp_path / "w")


def test_end_to_end_rows_cache_and_bound(tmp_path):
    spend = DPSGDSpend(noise_multiplier=2.0, sample_rate=0.1, steps=10, max_grad_norm=1.0)
    ledger = Ledger(target_epsilon=1.0, delta=1e-5, epsilon_spent=1.0, spends=[spend])
    attack = Reconstruction(**TINY, mus=[1000.0])
    rows = {r.name: r for r in attack.evaluate(_ctx(tmp_path, ledger))}
    own = rows["reconstruction-success-rate"]
    assert own.extra["mu"] == 0.5
    # at μ = 0.5 the observation is pure noise for digits: no success, within the bound
    assert own.value <= rows["reconstruction-rero-bound"].value
    assert rows["reconstruction-rero-violation"].value == 0.0
    # at μ = 1000 the observation is the image: every target reconstructed
    assert rows["reconstruction-success-rate@mu=1000"].value == 1.0
    assert rows["reconstruction-mse@mu=1000"].value < rows["reconstruction-mse"].value
    # LPIPS: reported with real backbone weights, else omitted with the reason on every row
    assert any(k.startswith("reconstruction-lpips") for k in rows) or (
        "LPIPS omitted" in rows["reconstruction-mse"].extra["lpips"])
    cached = list((tmp_path / "cache" / "reconstruction-prior").glob("*.pt"))
    assert len(cached) == 1
    again = {r.name: r.value for r in attack.evaluate(_ctx(tmp_path, ledger))}
    assert again["reconstruction-mse"] == pytest.approx(rows["reconstruction-mse"].value)
    z = np.load(tmp_path / "w" / "reconstruction.npz")
    assert z["kappa"].shape == () and z["prior_mass_around_targets"].shape == (6,)
    # κ is the best fixed guess's hit rate on π (the private split, here all of it: exact) ...
    kappa = rows["reconstruction-kappa"]
    priv = _splits().private
    assert kappa.extra["kappa_exact"] and kappa.extra["kappa_population"] == len(priv)
    for c in range(10):  # ... so no constant guess, e.g. a class's mean image, hits more often
        guess = priv.images[priv.labels == c].mean(0, keepdim=True)
        assert guess_hits(priv.images, guess, 0.02)[0] / len(priv) <= kappa.value
    assert kappa.value >= 1 / len(priv)  # every image of π hits itself (Hayes et al.: 1/n)
    # the ReRo comparison uses that same κ
    assert rows["reconstruction-rero-bound"].value == pytest.approx(rero_gdp(kappa.value, 0.5))
    assert rows["reconstruction-rero-bound@mu=1000"].extra["kappa"] == kappa.value


def test_skips_without_dp_sgd(tmp_path):
    ledger = Ledger(target_epsilon=math.inf, delta=1e-5, epsilon_spent=math.inf)
    with pytest.raises(SkipMeasurement):
        Reconstruction(**TINY).evaluate(_ctx(tmp_path, ledger))
