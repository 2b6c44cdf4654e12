"""Pairwise metrics (MSE, PSNR, SSIM, LPIPS) and their nearest-neighbour matrix form."""

from __future__ import annotations

import math

import pytest
import torch
from ppds_plugins.common.pairwise import (
    load_lpips,
    lpips_matrix,
    lpips_pairs,
    nearest_scores,
    pairwise_scores,
)
from ppds_plugins.metrics.pairwise import Lpips, Mse, Psnr, Ssim

from ppds_core import (
    EvalContext,
    ImageSet,
    PrivacyBudget,
    SkipMeasurement,
    WeightsNotFoundError,
)

GEN = torch.Generator().manual_seed(0)


def rand_images(n: int, c: int, side: int) -> torch.Tensor:
    return torch.rand(n, c, side, side, generator=GEN)


@pytest.fixture(scope="module")
def splits(digits_splits):
    return digits_splits


def make_ctx(splits, synthetic: ImageSet, tmp_path) -> EvalContext:
    return EvalContext(
        splits=splits,
        synthetic=synthetic,
        generator=object(),  # type: ignore[arg-type]
        budget=PrivacyBudget(epsilon=1.0),
        ledger=None,
        seed=0,
        cache_dir=tmp_path / "cache",
        workdir=tmp_path / "work",
    )


# --------------------------------------------------------------------------- per pair


def test_identical_pairs():
    x = rand_images(6, 3, 32)
    s = pairwise_scores(x, x.clone(), ["mse", "psnr", "ssim"])
    assert torch.all(s["mse"] == 0)
    assert torch.all(torch.isinf(s["psnr"]))
    assert torch.allclose(s["ssim"], torch.ones(6), atol=1e-5)


def test_constant_offset_has_known_mse_and_psnr():
    x = rand_images(5, 1, 16) * 0.8
    s = pairwise_scores(x, x + 0.1, ["mse", "psnr"])
    assert torch.allclose(s["mse"], torch.full((5,), 0.01), rtol=1e-4)
    assert torch.allclose(
        s["psnr"], torch.full((5,), 10 * math.log10(1 / 0.01)), rtol=1e-4
    )  # 20 dB


def test_ssim_orders_by_degradation_on_small_images():
    x = rand_images(4, 1, 8)  # smaller than the usual 11-px window
    slight = (x + 0.05 * torch.randn(x.shape, generator=GEN)).clamp(0, 1)
    heavy = (x + 0.4 * torch.randn(x.shape, generator=GEN)).clamp(0, 1)
    assert torch.allclose(pairwise_scores(x, x, ["ssim"])["ssim"], torch.ones(4), atol=1e-5)
    assert torch.all(
        pairwise_scores(x, slight, ["ssim"])["ssim"] > pairwise_scores(x, heavy, ["ssim"])["ssim"]
    )


def test_lpips_random_backbone_zero_on_identical_and_symmetric():
    x, y = rand_images(4, 1, 8), rand_images(4, 1, 8)  # grayscale 8 px: upsampled to 32, 3 channels
    same = pairwise_scores(x, x.clone(), ["lpips"], backbone_weights="random")
    assert list(same) == ["lpips-randombackbone"]
    assert torch.allclose(same["lpips-randombackbone"], torch.zeros(4), atol=1e-6)
    xy = pairwise_scores(x, y, ["lpips"], backbone_weights="random")["lpips-randombackbone"]
    yx = pairwise_scores(y, x, ["lpips"], backbone_weights="random")["lpips-randombackbone"]
    assert torch.all(xy > 0)
    assert torch.allclose(xy, yx, rtol=1e-5)


def test_lpips_matrix_equals_lpips_on_each_pair():
    model = load_lpips("alex", "random")
    q, k = rand_images(3, 3, 32), rand_images(5, 3, 32)
    matrix = lpips_matrix(model, q, k, batch_size=2)
    direct = lpips_pairs(model, q.repeat_interleave(5, 0), k.repeat(3, 1, 1, 1)).reshape(3, 5)
    assert torch.allclose(matrix, direct, rtol=1e-4, atol=1e-6)


def test_lpips_without_backbone_is_skipped_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.delenv("PPDS_LPIPS_BACKBONE", raising=False)
    x = rand_images(2, 3, 32)
    with pytest.raises(SkipMeasurement) as info:
        pairwise_scores(x, x, ["lpips"])
    assert "alexnet-owt-7be5be79.pth" in str(info.value)
    assert str(tmp_path / "torch-home" / "hub" / "checkpoints") in str(info.value)


def test_lpips_reads_the_backbone_from_a_local_checkpoint(tmp_path, monkeypatch):
    # a checkpoint laid out like torchvision's alexnet (features.<i>.weight/bias, classifier.*)
    g = torch.Generator().manual_seed(3)
    shapes = {
        0: (64, 3, 11, 11),
        3: (192, 64, 5, 5),
        6: (384, 192, 3, 3),
        8: (256, 384, 3, 3),
        10: (256, 256, 3, 3),
    }
    state = {}
    for i, shape in shapes.items():
        state[f"features.{i}.weight"] = torch.randn(shape, generator=g)
        state[f"features.{i}.bias"] = torch.randn(shape[0], generator=g)
    state["classifier.6.bias"] = torch.zeros(1000)
    path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save(state, path)
    monkeypatch.setenv("PPDS_LPIPS_BACKBONE", str(path))
    model = load_lpips("alex")
    assert torch.equal(getattr(model.net.slice1, "0").weight, state["features.0.weight"])
    assert torch.equal(getattr(model.net.slice5, "10").bias, state["features.10.bias"])
    assert float(model.lin0.model[-1].weight.abs().sum()) > 0  # the wheel's calibration layers
    # a file that is not an alexnet checkpoint is refused, naming it
    del state["features.8.bias"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(WeightsNotFoundError, match="broken.pth"):
        load_lpips("alex", tmp_path / "broken.pth")


# --------------------------------------------------------------------------- nearest neighbours


def test_nearest_scores_find_an_exact_copy():
    keys = rand_images(20, 1, 8)
    queries = torch.cat([keys[3:4], rand_images(1, 1, 8)])
    assert nearest_scores(queries, keys, "mse")[0] == 0
    assert math.isinf(nearest_scores(queries, keys, "psnr")[0])
    assert nearest_scores(queries, keys, "ssim")[0] == pytest.approx(1.0, abs=1e-5)
    lp = nearest_scores(queries, keys, "lpips", backbone_weights="random")
    assert lp[0] == pytest.approx(0.0, abs=1e-6) and lp[1] > 0


def test_memorising_generator_is_flagged(splits, tmp_path):
    private = splits.private
    # half copies of training images, half unseen real digits
    copies = ImageSet(
        torch.cat([private.images[:400], splits.test.images[:400]]),
        torch.cat([private.labels[:400], splits.test.labels[:400]]),
        private.class_names,
        "copies",
    )
    ctx = make_ctx(splits, copies, tmp_path)
    m = Mse(max_private=100, max_synthetic=800).evaluate(ctx)[0]
    assert m.name == "mse-nn-private"
    assert 20 < m.extra["exact_copies"] < 80  # ≈ 400/898 of the 100 private images scored
    assert m.value < 0.75 * m.extra["holdout_reference"]  # private images closer than unseen ones
    p = Psnr(max_private=100, max_synthetic=800).evaluate(ctx)[0]
    assert p.value > p.extra["holdout_reference"] + 10  # capped at 100 dB for the copies, finite


def test_non_memorising_samples_look_like_holdout(splits, tmp_path):
    fresh = splits.test  # real digits the "generator" never saw
    for metric in (
        Mse(max_private=100),
        Psnr(max_private=100),
        Ssim(max_private=30, max_synthetic=150),
    ):
        m = metric.evaluate(make_ctx(splits, fresh, tmp_path))[0]
        assert m.extra["exact_copies"] == 0
        assert m.value == pytest.approx(m.extra["holdout_reference"], rel=0.25), m.name
    lp = Lpips(max_private=40, max_synthetic=150, backbone_weights="random").evaluate(
        make_ctx(splits, fresh, tmp_path)
    )[0]
    assert lp.name == "lpips-randombackbone-nn-private"
    assert lp.value == pytest.approx(lp.extra["holdout_reference"], rel=0.25)
