"""DP-MERF generator plugin: the one Gaussian release, its features, sampling, persistence.

Tiny feature counts and a few generator steps keep each fit well under a second;
the utility of the default recipe is measured in docs/generators/dp-merf.md.
"""

from __future__ import annotations

import math

import pytest
import torch
from ppds_plugins.generators.dp_merf import DPMERF, DPMERFConfig
from ppds_plugins.generators.dp_merf._features import class_embedding, rff, rff_frequencies
from ppds_plugins.generators.dp_merf._train import (
    PURPOSE,
    bandwidth,
    build_generator,
    release_embedding,
    seeded,
    train_generator,
)

from ppds_core import ConfigError, FitContext, ImageSet, PrivacyBudget, get_plugin, load_dataset
from ppds_core.privacy import GaussianSpend, epsilon_of, verify_ledger
from ppds_core.testing import check_generator

TINY = {"features": 200, "steps": 20, "batch_size": 60, "hidden": 32, "g_width": 8,
        "accountant": "rdp"}
BUDGET = PrivacyBudget(epsilon=1.0, delta=1e-5)
INF = PrivacyBudget(epsilon=math.inf, delta=1e-5)


@pytest.fixture(scope="module")
def digits() -> ImageSet:
    """120 images of the private split of the embedded digits set."""
    return load_dataset("digits").private.subset(torch.arange(120))


@pytest.fixture(scope="module")
def fitted(digits) -> DPMERF:
    model = DPMERF(TINY)
    model.fit(digits, BUDGET, FitContext(seed=3))
    return model


def _w(digits, features=200, seed=0):
    cfg = DPMERFConfig(features=features)
    return rff_frequencies(64, features, bandwidth(cfg, digits.shape), seeded(seed, "frequencies"))


def test_registered_without_dp_sgd():
    cls = get_plugin("dp-merf", "generator")
    assert cls is DPMERF
    assert cls.capabilities() == {"trains_with_dp_sgd": False, "uses_public_data": False,
                                  "class_conditional": True}


def test_conformance_kit(tmp_path):
    check_generator(DPMERF, tmp_path)


def test_the_ledger_holds_exactly_one_gaussian_spend_of_sensitivity_2_over_n(fitted, digits):
    ledger = fitted.ledger
    (spend,) = ledger.spends
    assert isinstance(spend, GaussianSpend) and spend.count == 1 and spend.purpose == PURPOSE
    assert spend.sensitivity == pytest.approx(2 / len(digits), rel=1e-12)
    assert spend.noise_multiplier > 0
    recomputed = epsilon_of(ledger.spends, ledger.delta, ledger.accountant)
    assert recomputed <= BUDGET.epsilon * (1 + 1e-9)
    assert recomputed == pytest.approx(ledger.epsilon_spent, rel=1e-6)
    verify_ledger(ledger, BUDGET, "dp-merf")  # the core's own check passes
    info = fitted.train_info
    assert info["sensitivity"] == spend.sensitivity and info["noise_multiplier"] == spend.noise_multiplier
    assert info["noise_std"] == pytest.approx(spend.noise_multiplier * 2 / len(digits))
    assert info["features"] == 200 and info["generator_steps"] == 20 and info["num_private"] == 120


def test_features_have_unit_norm_for_any_input():
    g = torch.Generator().manual_seed(0)
    w = rff_frequencies(64, 1000, 3.6, g)
    x = torch.cat([torch.rand(50, 64, generator=g), 100 * torch.randn(50, 64, generator=g),
                   torch.zeros(1, 64)])
    phi = rff(x, w)
    assert phi.shape == (101, 1000)
    assert torch.allclose(phi.norm(dim=1), torch.ones(101), atol=1e-5)
    # ⟨φ(x), φ(x')⟩ approximates the Gaussian kernel of bandwidth σ
    w = rff_frequencies(64, 20000, 3.6, g)
    a, b = torch.rand(2, 64, generator=g)
    kernel = math.exp(-float((a - b).pow(2).sum()) / (2 * 3.6**2))
    assert float(rff(a[None], w) @ rff(b[None], w).t()) == pytest.approx(kernel, abs=0.03)


def test_the_embedding_is_the_mean_of_phi_outer_onehot(digits):
    w = _w(digits)
    emb = class_embedding(digits.images, digits.labels, w, 10)
    phi = rff(digits.images.flatten(1), w)
    naive = torch.einsum("ni,nj->ij", phi, torch.nn.functional.one_hot(digits.labels, 10).float()) / 120
    assert emb.shape == (200, 10) and torch.allclose(emb, naive, atol=1e-6)
    # each column k is (N_k / N) · the class-k mean of φ
    k = int(digits.labels[0])
    in_k = digits.labels == k
    assert torch.allclose(emb[:, k], phi[in_k].mean(0) * in_k.float().mean(), atol=1e-6)


def test_neighbouring_sets_move_the_embedding_by_at_most_2_over_n(digits):
    w = _w(digits)
    x, y = digits.images, digits.labels
    emb = class_embedding(x, y, w, 10)
    far = torch.ones(1, 1, 8, 8)  # an outlier with another label
    replaced = class_embedding(torch.cat([x[1:], far]), torch.cat([y[1:], (y[:1] + 1) % 10]), w, 10)
    added = class_embedding(torch.cat([x, far]), torch.cat([y, (y[:1] + 1) % 10]), w, 10)
    removed = class_embedding(x[1:], y[1:], w, 10)
    n = len(digits)
    assert float((replaced - emb).norm()) <= 2 / n
    assert float((added - emb).norm()) <= 2 / (n + 1)
    assert float((removed - emb).norm()) <= 2 / n
    assert float((replaced - emb).norm()) > 1 / n  # the bound is not vacuous: 1/N would not cover it


def test_infinite_epsilon_releases_the_exact_embedding_and_spends_nothing(digits):
    cfg = DPMERFConfig(**TINY)
    w = _w(digits)
    noisy, release = release_embedding(digits, INF, FitContext(seed=0), cfg, w)
    assert torch.equal(noisy, class_embedding(digits.images, digits.labels, w, 10))
    assert release.noise_std == 0 and not release.ledger.spends
    assert math.isinf(release.ledger.target_epsilon)
    model = DPMERF(TINY)
    ledger = model.fit(digits, INF, FitContext(seed=0))
    assert not ledger.spends and model.train_info["noise_std"] == 0


def test_released_noise_has_std_sigma_times_delta(digits):
    # 16,000 features × 10 classes = 160,000 noise draws: the std estimate's relative standard
    # error is 1/√(2·160000) ≈ 0.18 %, so a 3 % tolerance is > 15 standard errors
    cfg = DPMERFConfig(features=16000, accountant="rdp")
    w = _w(digits, features=16000)
    exact = class_embedding(digits.images, digits.labels, w, 10)
    noisy, release = release_embedding(digits, BUDGET, FitContext(seed=0), cfg, w)
    noise = (noisy - exact).double()
    expected = release.noise_multiplier * 2 / len(digits)
    assert release.noise_std == pytest.approx(expected)
    assert float(noise.std()) == pytest.approx(expected, rel=0.03)
    assert abs(float(noise.mean())) < 0.03 * expected
    # the noise is not drawn from ctx.seed: the same seed releases a different embedding
    again, _ = release_embedding(digits, BUDGET, FitContext(seed=0), cfg, w)
    assert not torch.equal(noisy, again)


def test_the_seed_fixes_frequencies_init_and_latents(digits):
    a, b = DPMERF(TINY), DPMERF(TINY)
    a.fit(digits, INF, FitContext(seed=5))
    b.fit(digits, INF, FitContext(seed=5))
    assert torch.equal(a.sample(20, seed=1).images, b.sample(20, seed=1).images)
    c = DPMERF(TINY)
    c.fit(digits, INF, FitContext(seed=6))
    assert not torch.equal(a.sample(20, seed=1).images, c.sample(20, seed=1).images)
    assert not torch.equal(_w(digits, seed=5), _w(digits, seed=6))


def test_training_lowers_the_embedding_loss(digits):
    cfg = DPMERFConfig(**{**TINY, "steps": 60})
    w = _w(digits)
    target = class_embedding(digits.images, digits.labels, w, 10)
    net = build_generator((1, 8, 8), 10, cfg, seed=0)
    losses = train_generator(net, target, w, cfg, seed=0, device=torch.device("cpu"))
    assert losses[-1] < 0.5 * losses[0]


def test_save_load_round_trip_samples_identically(fitted, tmp_path):
    fitted.save(tmp_path)
    again = DPMERF.load(tmp_path)
    labels = torch.tensor([0, 3, 3, 9, 1])
    s1, s2 = fitted.sample(5, seed=11, labels=labels), again.sample(5, seed=11, labels=labels)
    assert torch.equal(s1.images, s2.images) and torch.equal(s2.labels, labels)
    assert s1.images.dtype == torch.float32 and 0 <= float(s1.images.min()) <= float(s1.images.max()) <= 1
    assert again.ledger.epsilon_spent == fitted.ledger.epsilon_spent
    assert again.train_info == fitted.train_info
    assert (tmp_path / "samples.png").is_file()


def test_sample_refuses_bad_labels(fitted):
    with pytest.raises(ConfigError, match="labels must lie in"):
        fitted.sample(2, labels=[0, 10])
    with pytest.raises(ConfigError, match="asked for 3 images"):
        fitted.sample(3, labels=[0, 1])


@pytest.mark.parametrize("options,match", [
    ({"features": 301}, r"dp-merf\.config\.features: .*even"),
    ({"kernel_size": 4}, r"dp-merf\.config\.kernel_size: .*odd"),
    ({"rff_sigma": 0}, r"dp-merf\.config\.rff_sigma: .*greater than 0"),
    ({"featurs": 100}, r"dp-merf\.config\.featurs: unknown option"),
])
def test_a_bad_config_is_a_config_error_naming_the_key(options, match):
    with pytest.raises(ConfigError, match=match):
        DPMERF(options)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 7, 9)])
def test_the_generator_fits_other_image_shapes(shape):
    net = build_generator(shape, 4, DPMERFConfig(hidden=16, g_width=8), seed=0).eval()
    with torch.no_grad():
        out = net(torch.randn(3, 5), torch.tensor([0, 1, 3]))
    assert out.shape == (3, *shape) and float(out.min()) >= 0 and float(out.max()) <= 1
