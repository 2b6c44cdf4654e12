"""dp-diffusion: noise multiplicity folded per example before clipping, sampling, determinism,
save/load, config errors. Tiny UNets and a handful of DP-SGD steps keep it fast."""

from __future__ import annotations

import math

import pytest
import torch
from ppds_plugins.common.diffusion.config import DiffusionConfig
from ppds_plugins.common.diffusion.objective import (
    Draws,
    NoiseMultiplicityDDPMLoss,
    make_train_scheduler,
)
from ppds_plugins.common.diffusion.sampling import SAMPLERS, sample_images
from ppds_plugins.common.diffusion.unet import build_unet, from_model_space, to_model_space
from ppds_plugins.generators.dp_diffusion import DiffusionGenerator

from ppds_core import ConfigError, FitContext, ImageSet, PrivacyBudget
from ppds_core.privacy._grad_modes import PerSampleGradients, make_dp_optimizer
from ppds_core.privacy.accounting import epsilon_of

TINY = {"block_out_channels": [8, 8], "norm_num_groups": 4, "sample_steps": 3}


def _objective(k: int, seed: int = 0, label_dropout: float = 0.0) -> NoiseMultiplicityDDPMLoss:
    torch.manual_seed(seed)
    cfg = DiffusionConfig(**TINY, noise_multiplicity=k)
    unet = build_unet(cfg, channels=1, side=8, num_classes=10)
    return NoiseMultiplicityDDPMLoss(unet, make_train_scheduler(100, "linear"), k, 10, label_dropout)


def _rows(d: Draws, i: int, k: int) -> Draws:
    sl = slice(i * k, (i + 1) * k)
    return Draws(d.timesteps[sl], d.noise[sl], d.labels[sl])


@pytest.mark.parametrize("mode", ["hooks", "functorch"])
def test_per_example_gradient_is_gradient_of_mean_of_its_k_losses(mode):
    k, b = 3, 4
    obj = _objective(k, label_dropout=0.3)
    obj.generator = torch.Generator().manual_seed(5)
    x = torch.rand(b, 1, 8, 8) * 2 - 1
    y = torch.tensor([1, 2, 3, 4])
    draws = obj.draw(x, y)
    params = list(obj.unet.parameters())
    refs = []
    for i in range(b):  # the gradient of example i's mean of K losses, same noise draws
        loss = obj.losses(x[i : i + 1], _rows(draws, i, k)).mean()
        refs.append(torch.autograd.grad(loss, params))
    grads = PerSampleGradients(obj, mode, max_grad_norm=1.0)  # as the engine attaches it
    try:
        grads.backward(obj(x, y, draws), optimizer=None, rows_per_example=k)
        for j, p in enumerate(params):
            assert p.grad_sample.shape[0] == b, "K rows per example were not folded into one"
            for i in range(b):
                torch.testing.assert_close(p.grad_sample[i], refs[i][j], rtol=1e-4, atol=1e-6)
    finally:
        grads.remove()


def _clipped_sum_norm(module, loss_fn, c: float, rows_per_example: int) -> tuple[float, int]:
    grads = PerSampleGradients(module, "hooks", max_grad_norm=c)
    params = list(module.parameters())
    opt = make_dp_optimizer(torch.optim.SGD(params, lr=0.1), mode="hooks", noise_multiplier=0.0,
                            max_grad_norm=c, expected_batch_size=1, distributed=False,
                            generator=None, secure_mode=False)
    try:
        grads.backward(loss_fn(), opt, rows_per_example)
        rows = params[0].grad_sample.shape[0]
        opt.clip_and_accumulate()
        norm = math.sqrt(sum(float(p.summed_grad.pow(2).sum()) for p in params))
    finally:
        grads.remove()
    return norm, rows


def test_clipping_applies_once_per_example_not_per_noisy_copy():
    k, c = 4, 1e-4  # C far below every gradient norm: each clipped unit has norm exactly C
    obj = _objective(k, seed=1)
    obj.generator = torch.Generator().manual_seed(2)
    x, y = torch.rand(1, 1, 8, 8) * 2 - 1, torch.tensor([7])
    draws = obj.draw(x, y)
    norm, rows = _clipped_sum_norm(obj, lambda: obj(x, y, draws), c, rows_per_example=k)
    assert rows == 1
    assert norm <= c * (1 + 1e-4)
    # control: treating the K copies as K examples clips each, so the example moves by more than C
    obj2 = _objective(k, seed=1)
    unfolded_norm, unfolded_rows = _clipped_sum_norm(
        obj2, lambda: obj2.losses(x, draws).reshape(-1), c, rows_per_example=1)
    assert unfolded_rows == k and unfolded_norm > 1.2 * c
    # and forgetting rows_per_example with the per-example losses is refused, not clipped per row
    obj3 = _objective(k, seed=1)
    with pytest.raises(RuntimeError, match="rows_per_example"):
        _clipped_sum_norm(obj3, lambda: obj3(x, y, draws), c, rows_per_example=1)


def test_model_space_round_trip_pads_and_crops():
    imgs = torch.rand(3, 1, 7, 7)
    x = to_model_space(imgs, side=8, image_size=None)
    assert x.shape == (3, 1, 8, 8) and x.min() >= -1 and x.max() <= 1
    torch.testing.assert_close(from_model_space(x, 7), imgs)


def test_guidance_with_identical_null_embedding_changes_nothing():
    obj = _objective(1)
    unet = obj.unet
    with torch.no_grad():  # make the null class embed like class 3: guidance must then be a no-op
        unet.class_embedding.weight[10] = unet.class_embedding.weight[3]
    y = torch.full((4,), 3)
    kw = dict(shape=(1, 8, 8), num_train_timesteps=100, beta_schedule="linear", steps=3,
              null_class=10, seed=0)
    plain = sample_images(unet, y, guidance_scale=0.0, **kw)
    guided = sample_images(unet, y, guidance_scale=3.0, **kw)
    torch.testing.assert_close(plain, guided, rtol=1e-4, atol=1e-5)
    with torch.no_grad():
        unet.class_embedding.weight[10] += 1.0
    assert not torch.allclose(plain, sample_images(unet, y, guidance_scale=3.0, **kw))


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_each_sampler_is_deterministic_for_a_seed_and_stays_in_model_space(sampler):
    unet = _objective(1).unet
    y = torch.arange(5) % 3
    kw = dict(shape=(1, 8, 8), num_train_timesteps=100, beta_schedule="squaredcos_cap_v2",
              steps=4, null_class=10, guidance_scale=0.0, sampler=sampler, chunk=2)
    a, b = sample_images(unet, y, seed=3, **kw), sample_images(unet, y, seed=3, **kw)
    assert a.shape == (5, 1, 8, 8) and torch.isfinite(a).all()
    assert a.abs().max() <= 1.0 + 1e-5  # x₀ is clipped (DDIM) / thresholded (DPM-Solver++) to [−1, 1]
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, sample_images(unet, y, seed=4, **kw))


def test_the_two_samplers_are_different_solvers_of_the_same_model():
    unet = _objective(1).unet
    y = torch.arange(4)
    kw = dict(shape=(1, 8, 8), num_train_timesteps=100, beta_schedule="linear", steps=4,
              null_class=10, guidance_scale=0.0, seed=0)
    ddim = sample_images(unet, y, sampler="ddim", **kw)
    dpm = sample_images(unet, y, sampler="dpm-solver", **kw)
    assert not torch.allclose(ddim, dpm)
    with pytest.raises(ConfigError, match="dpm-solver"):
        DiffusionGenerator.validate_config({"sampler": "euler"})


def test_config_refuses_ghost_with_multiplicity_and_guidance_without_dropout():
    with pytest.raises(ConfigError, match="ghost"):
        DiffusionGenerator.validate_config({"grad_sample_mode": "ghost", "noise_multiplicity": 4})
    with pytest.raises(ConfigError, match="label_dropout"):
        DiffusionGenerator.validate_config({"guidance_scale": 2.0})
    with pytest.raises(ConfigError, match="unknown option"):
        DiffusionGenerator.validate_config({"epochz": 3})
    DiffusionGenerator.validate_config({"grad_sample_mode": "ghost", "noise_multiplicity": 1})


@pytest.fixture(scope="module")
def tiny_private() -> ImageSet:
    from sklearn.datasets import load_digits

    d = load_digits()
    idx = torch.arange(120)
    return ImageSet(torch.tensor(d.images[:120] / 16.0, dtype=torch.float32).unsqueeze(1),
                    torch.tensor(d.target[:120])[idx], [str(i) for i in range(10)], "digits-tiny")


def _fit(private: ImageSet, seed: int, epsilon: float = 5.0) -> DiffusionGenerator:
    g = DiffusionGenerator(**TINY, steps=2, batch_size=24, noise_multiplicity=2)
    g.fit(private, PrivacyBudget(epsilon=epsilon, delta=1e-4),
          FitContext(seed=seed, accountant="rdp", reproducible_noise=True))
    return g


def test_fit_spends_within_budget_samples_balanced_deterministic_and_round_trips(tiny_private, tmp_path):
    a = _fit(tiny_private, seed=0)
    led = a.ledger
    assert led is not None and led.target_epsilon == 5.0
    assert 0 < led.epsilon_spent <= 5.0
    assert epsilon_of(led.spends, led.delta, led.accountant) <= 5.0
    spend = led.dp_sgd()
    assert spend.steps == 2 and spend.max_grad_norm == 1.0
    assert spend.sample_rate == pytest.approx(24 / 120)
    s = a.sample(23, seed=1)
    assert s.images.shape == (23, 1, 8, 8)
    assert float(s.images.min()) >= 0.0 and float(s.images.max()) <= 1.0
    counts = torch.bincount(s.labels, minlength=10)
    assert int(counts.max() - counts.min()) <= 1
    torch.testing.assert_close(s.images, a.sample(23, seed=1).images)
    assert not torch.equal(s.images, a.sample(23, seed=2).images)
    # same seed and reproducible noise, same model
    b = _fit(tiny_private, seed=0)
    torch.testing.assert_close(b.sample(23, seed=1).images, s.images)
    # save / load
    a.save(tmp_path / "m")
    assert (tmp_path / "m" / "samples.png").is_file()
    assert (tmp_path / "m" / "unet" / "config.json").is_file()
    loaded = DiffusionGenerator.load(tmp_path / "m")
    torch.testing.assert_close(loaded.sample(23, seed=1).images, s.images)
    assert loaded.ledger == led and loaded.class_names == a.class_names
    labels = torch.tensor([4] * 5)
    assert torch.equal(loaded.sample(5, seed=0, labels=labels).labels, labels)


def test_non_private_reference_has_no_dp_sgd_spend(tiny_private):
    g = _fit(tiny_private, seed=0, epsilon=math.inf)
    assert g.ledger.epsilon_spent == math.inf and g.ledger.dp_sgd() is None


def test_ema_warms_up_and_its_count_travels_in_the_state_dict():
    """The shared EMA (DP-GAN's generator, the diffusion UNet): decay min(d, (1+n)/(10+n)),
    and a checkpoint restores the update count, so a resumed run keeps the same warm-up."""
    from ppds_plugins.common.ema import EMA

    live = torch.nn.Linear(3, 2)
    ema = EMA(live, decay=0.999)
    assert ema.current_decay() == pytest.approx(0.1)
    with torch.no_grad():
        live.weight.fill_(1.0)
    before = ema.model.weight.detach().clone()
    ema.update(live)
    torch.testing.assert_close(ema.model.weight, 0.1 * before + 0.9 * live.weight)
    for _ in range(9):
        ema.update(live)
    assert ema.current_decay() == pytest.approx(11 / 20)
    assert not any(p.requires_grad for p in ema.model.parameters())
    restored = EMA(torch.nn.Linear(3, 2), decay=0.999)
    restored.load_state_dict(ema.state_dict())
    assert int(restored.updates) == 10 and restored.current_decay() == ema.current_decay()
    torch.testing.assert_close(restored.model.weight, ema.model.weight)


def test_physical_batches_slice_the_unet_step_but_not_the_privacy(tiny_private, monkeypatch):
    """max_physical_batch_size: slices of 5 examples × K = 2 rows; same plan, same ledger."""
    whole = _fit(tiny_private, seed=0)
    sliced = DiffusionGenerator(**TINY, steps=2, batch_size=24, noise_multiplicity=2, max_physical_batch_size=5)
    seen: list[int] = []
    objective_forward = NoiseMultiplicityDDPMLoss.forward

    def spy(self, x0, labels, draws=None):
        seen.append(x0.shape[0])
        return objective_forward(self, x0, labels, draws)

    monkeypatch.setattr(NoiseMultiplicityDDPMLoss, "forward", spy)
    sliced.fit(tiny_private, PrivacyBudget(epsilon=5.0, delta=1e-4),
               FitContext(seed=0, accountant="rdp", reproducible_noise=True))
    assert seen and max(seen) <= 5 and sum(seen) > 10  # two Poisson batches of ~24, cut into slices
    assert sliced.ledger.model_dump() == whole.ledger.model_dump()
    with pytest.raises(ConfigError, match="ghost"):
        DiffusionGenerator.validate_config({"grad_sample_mode": "ghost", "noise_multiplicity": 1,
                                            "max_physical_batch_size": 8})
