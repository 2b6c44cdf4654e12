"""fid, fd-domain and precision-recall: math checked against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from ppds_plugins.metrics import _domain, _reference_cache
from ppds_plugins.metrics._frechet import frechet_distance, gaussian_stats
from ppds_plugins.metrics._manifold import precision_recall
from ppds_plugins.metrics.fd_domain import FdDomain
from ppds_plugins.metrics.fid import Fid
from ppds_plugins.metrics.precision_recall import PrecisionRecall

from ppds_core import (
    EvalContext,
    ImageSet,
    PrivacyBudget,
    SkipMeasurement,
    WeightsNotFoundError,
)


@pytest.fixture(scope="module")
def splits(digits_splits):
    return digits_splits


def forget_references() -> None:
    """What a new process starts with: an empty in-memory cache."""
    _reference_cache.clear_memo()
    _domain._MODELS.clear()


def make_ctx(splits, synthetic: ImageSet, tmp_path, seed: int = 0) -> EvalContext:
    return EvalContext(
        splits=splits,
        synthetic=synthetic,
        generator=object(),  # type: ignore[arg-type]
        budget=PrivacyBudget(epsilon=1.0),
        ledger=None,
        seed=seed,
        cache_dir=tmp_path / "cache",
        workdir=tmp_path / "work",
    )


def noise_like(images: ImageSet, seed: int = 0) -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    return ImageSet(
        torch.rand(images.images.shape, generator=g), images.labels, images.class_names, "noise"
    )


# --------------------------------------------------------------------------- Fréchet distance


def scipy_frechet(a: np.ndarray, b: np.ndarray) -> float:
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_frechet_distance_matches_scipy_sqrtm():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 16))
    b = rng.normal(size=(300, 16)) @ rng.normal(size=(16, 16)) * 0.5 + 0.3
    ours = frechet_distance(gaussian_stats(a), gaussian_stats(b))
    assert ours == pytest.approx(scipy_frechet(a, b), rel=1e-4)
    assert ours > 1.0


def test_frechet_distance_identical_and_singular():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(30, 64))  # fewer samples than dimensions: singular covariance
    assert frechet_distance(gaussian_stats(a), gaussian_stats(a)) == pytest.approx(0.0, abs=1e-8)
    b = rng.normal(size=(30, 64)) + 1.0
    value = frechet_distance(gaussian_stats(a), gaussian_stats(b))
    assert math.isfinite(value) and value > 60  # ‖Δμ‖² alone is ≈ 64


# --------------------------------------------------------------------------- fid


def test_fid_without_weights_is_skipped_with_instructions(splits, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv("PPDS_FID_WEIGHTS", raising=False)
    with pytest.raises(SkipMeasurement) as info:
        Fid().evaluate(make_ctx(splits, splits.test, tmp_path))
    msg = str(info.value)
    assert "weights-inception-2015-12-05-6726825d.pth" in msg
    assert str(tmp_path / "torch-home" / "hub" / "checkpoints") in msg
    assert "https://" in msg and "download: true" in msg


def test_fid_with_missing_configured_weights_is_an_error(splits, tmp_path):
    with pytest.raises(WeightsNotFoundError, match="not a file"):
        Fid(weights=str(tmp_path / "nope.pth")).evaluate(make_ctx(splits, splits.test, tmp_path))


class RandomConv(torch.nn.Module):
    """A random conv net standing in for Inception in tests (uint8 input, like Inception)."""

    num_features = 32

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Conv2d(16, 32, 3, stride=2),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.dtype == torch.uint8 and x.shape[1] == 3
        return self.net(x.float() / 255)


def test_fid_with_injected_extractor_is_named_after_it(splits, tmp_path):
    metric = Fid(max_samples=200).with_extractor(RandomConv(), "randomconv")
    same = metric.evaluate(make_ctx(splits, splits.holdout, tmp_path))[0]
    other = metric.evaluate(make_ctx(splits, splits.test, tmp_path))[0]
    noise = metric.evaluate(make_ctx(splits, noise_like(splits.test), tmp_path))[0]
    assert same.name == other.name == noise.name == "fd-randomconv"
    assert same.value == pytest.approx(0.0, abs=1e-9)
    assert 0.0 < other.value < noise.value / 5  # unseen digits ≪ noise, even in random features
    assert noise.higher_is_better is False


# --------------------------------------------------------------------------- fd-domain


def test_fd_domain_real_statistics_computed_once_for_ten_sets(splits, tmp_path, monkeypatch):
    forget_references()
    calls = []
    original = _domain._train_reference

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(_domain, "_train_reference", counting)
    metric = FdDomain(epochs=8)
    values = []
    for i in range(10):
        synthetic = splits.test if i % 2 == 0 else noise_like(splits.test, seed=i)
        values.append(metric.evaluate(make_ctx(splits, synthetic, tmp_path, seed=i))[0].value)
    assert len(calls) == 1
    # a new process (empty memo) reads the cache from disk instead of retraining
    forget_references()
    again = metric.evaluate(make_ctx(splits, splits.test, tmp_path))[0]
    assert len(calls) == 1
    assert again.value == pytest.approx(values[0], rel=1e-6)
    # real unseen digits are far closer to the holdout than noise is
    assert max(values[0::2]) < min(values[1::2]) / 5
    assert again.extra["private_reference"] < min(values[1::2])


def test_fd_domain_skips_mismatched_shapes(splits, tmp_path):
    odd = ImageSet(torch.rand(20, 1, 6, 6), torch.zeros(20), splits.test.class_names)
    with pytest.raises(SkipMeasurement, match="not comparable"):
        FdDomain(epochs=1).evaluate(make_ctx(splits, odd, tmp_path))


# --------------------------------------------------------------------------- precision / recall


def test_precision_recall_identical_clouds():
    x = torch.randn(200, 5, generator=torch.Generator().manual_seed(0))
    assert precision_recall(x, x.clone(), k=3) == (1.0, 1.0)


def test_precision_recall_disjoint_far_clouds():
    g = torch.Generator().manual_seed(1)
    real = torch.randn(150, 4, generator=g)
    fake = torch.randn(120, 4, generator=g) + 100.0
    assert precision_recall(real, fake, k=3) == (0.0, 0.0)


def test_precision_recall_fake_covers_one_of_two_modes():
    g = torch.Generator().manual_seed(2)
    mode_a = torch.randn(100, 3, generator=g)
    mode_b = torch.randn(100, 3, generator=g) + 50.0
    real = torch.cat([mode_a, mode_b])
    precision, recall = precision_recall(real, mode_a.clone(), k=3)
    assert precision == 1.0  # every sample is realistic …
    assert recall == 0.5  # … but half the real variety is missing


def test_precision_recall_plugin_on_digits(splits, tmp_path):
    # same domain options as the fd-domain test: reuses its feature space when run after it
    metric = PrecisionRecall(epochs=8, k=3)
    real = {m.name: m.value for m in metric.evaluate(make_ctx(splits, splits.test, tmp_path))}
    noise = {
        m.name: m.value
        for m in metric.evaluate(make_ctx(splits, noise_like(splits.test), tmp_path))
    }
    assert set(real) == {"precision-domain", "recall-domain"}
    assert real["precision-domain"] > 0.6 and real["recall-domain"] > 0.6
    assert noise["precision-domain"] < real["precision-domain"] - 0.3
