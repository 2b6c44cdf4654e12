"""DP-GAN generator plugin: privacy wiring, sampling, determinism, persistence, shapes.

Tiny nets and a few hundred digits keep every fit to a few DP-SGD steps; the
utility of the default recipe is measured by ``examples/scripts/dp_gan_digits.py``.
"""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
from ppds_plugins.generators.dp_gan import DPGAN, DPGANConfig
from ppds_plugins.generators.dp_gan._train import build_module, make_plan

from ppds_core import (
    ConfigError,
    DataNotFoundError,
    FitContext,
    ImageSet,
    PrivacyBudget,
    get_plugin,
    load_dataset,
)
from ppds_core.privacy.accounting import epsilon_of
from ppds_core.privacy.engine import fit_private
from ppds_core.testing import check_generator

#: a few DP-SGD steps on 8-channel nets; RDP calibrates faster than PRV on a busy CPU
TINY = {"epochs": 2, "batch_size": 30, "d_updates": 2, "g_width": 8, "d_width": 8, "latent_dim": 8,
        "accountant": "rdp"}


@pytest.fixture(scope="module")
def digits() -> ImageSet:
    """120 images of the private split of the embedded digits set."""
    return load_dataset("digits").private.subset(torch.arange(120))


@pytest.fixture(scope="module")
def fitted(digits) -> DPGAN:
    model = DPGAN(TINY)
    model.fit(digits, PrivacyBudget(epsilon=5.0, delta=1e-5), FitContext(seed=7, reproducible_noise=True))
    return model


def test_registered_with_dp_sgd_capability():
    cls = get_plugin("dp-gan", "generator")
    assert cls is DPGAN and cls.trains_with_dp_sgd
    cfg = DPGANConfig()
    for key in ("epochs", "batch_size", "lr", "max_grad_norm", "d_updates", "ema"):
        assert hasattr(cfg, key)
    with pytest.raises(ConfigError, match="d_update"):
        DPGAN.validate_config({"d_update": 3})


def test_conformance_kit(tmp_path):
    check_generator(DPGAN, tmp_path)


def test_finite_epsilon_ledger_has_one_dp_sgd_spend(fitted, digits):
    ledger = fitted.ledger
    assert ledger is not None and ledger.is_private
    assert [s.mechanism for s in ledger.spends] == ["dp-sgd"]
    spend = ledger.dp_sgd()
    assert 0 < ledger.epsilon_spent <= 5.0
    assert spend.sample_rate == pytest.approx(30 / len(digits))
    assert spend.steps == 2 * math.ceil(len(digits) / 30)
    assert ledger.accountant == "rdp"
    assert fitted.train_info["grad_sample_mode"] == "bk"  # the default 'auto', resolved
    assert spend.max_grad_norm == TINY.get("max_grad_norm", DPGANConfig().max_grad_norm)
    assert spend.noise_multiplier > 0
    # the ledger's ε is what an accountant gives for its own spends
    assert epsilon_of(ledger.spends, ledger.delta, ledger.accountant) == pytest.approx(
        ledger.epsilon_spent, rel=1e-6
    )
    assert fitted.train_info["generator_steps"] == spend.steps // 2


class _PrivacyWiringSpy(pl.Callback):
    """After every batch: per-sample machinery on D (hooks: per-sample gradients; bk: its
    taps on every parameter-owning layer) and nowhere in G."""

    def __init__(self):
        self.batches = 0

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.batches += 1
        d_params = list(module.discriminator.parameters())
        if module.dp.grad_sample_mode == "bk":
            assert all(m._forward_hooks for m in module.discriminator.modules()
                       if any(True for _ in m.parameters(recurse=False)))
        else:
            assert all(getattr(p, "grad_sample", None) is not None for p in d_params)
        for net in (module.generator, module.mirror, module.ema.model):
            for p in net.parameters():
                assert getattr(p, "grad_sample", None) is None
            for m in net.modules():
                assert not m._forward_hooks and not m._backward_hooks
        private = {id(p) for g in module.dp.optimizer.param_groups for p in g["params"]}
        assert private == {id(p) for p in d_params}
        # on a generator step, it ran against an exact copy of the current discriminator
        if module.dp.steps_done % module.cfg.d_updates == 0:
            for a, b in zip(module.mirror.parameters(), module.discriminator.parameters(), strict=True):
                assert torch.equal(a, b)


@pytest.mark.parametrize("mode", ["auto", "hooks"])
def test_only_the_discriminator_is_private(digits, mode):
    cfg = DPGANConfig(**TINY, grad_sample_mode=mode)
    module = build_module(digits.shape, digits.num_classes, cfg, seed=0)
    g_before = [p.detach().clone() for p in module.generator.parameters()]
    spy = _PrivacyWiringSpy()
    ledger = fit_private(module, digits, make_plan(PrivacyBudget(epsilon=5.0), cfg),
                         FitContext(seed=0), callbacks=[spy])
    assert spy.batches == ledger.dp_sgd().steps > 0
    assert module.dp.grad_sample_mode == ("bk" if mode == "auto" else "hooks")
    assert module.dp.optimizer is not module.optimizers()[1].optimizer
    # the generator did learn (through the mirror), without ever being private
    assert any(not torch.equal(a, b) for a, b in zip(g_before, module.generator.parameters(), strict=True))


def test_samples_are_canonical_balanced_and_named(fitted, digits):
    s = fitted.sample(25, seed=1)
    assert tuple(s.images.shape) == (25, 1, 8, 8) and s.images.dtype == torch.float32
    assert 0.0 <= float(s.images.min()) and float(s.images.max()) <= 1.0
    counts = torch.bincount(s.labels, minlength=10)
    assert int(counts.max() - counts.min()) <= 1
    assert s.class_names == digits.class_names
    chosen = torch.tensor([3, 3, 7])
    assert torch.equal(fitted.sample(3, seed=1, labels=chosen).labels, chosen)
    with pytest.raises(ConfigError, match="labels"):
        fitted.sample(2, labels=[0, 10])
    assert torch.equal(fitted.sample(25, seed=1).images, s.images)
    assert not torch.equal(fitted.sample(25, seed=2).images, s.images)


def test_same_seed_same_model(fitted, digits):
    again = DPGAN(TINY)
    again.fit(digits, PrivacyBudget(epsilon=5.0, delta=1e-5), FitContext(seed=7, reproducible_noise=True))
    assert torch.equal(again.sample(20, seed=0).images, fitted.sample(20, seed=0).images)
    assert again.ledger == fitted.ledger


def test_save_load_round_trip(fitted, tmp_path):
    fitted.save(tmp_path)
    assert (tmp_path / "samples.png").is_file() and (tmp_path / "ledger.json").is_file()
    back = DPGAN.load(tmp_path)
    assert torch.equal(back.sample(30, seed=4).images, fitted.sample(30, seed=4).images)
    assert back.ledger == fitted.ledger
    assert back.class_names == fitted.class_names and back.image_shape == (1, 8, 8)
    assert back.config == fitted.config
    with pytest.raises(DataNotFoundError, match="model.json"):
        DPGAN.load(tmp_path / "nowhere")


def test_non_private_reference_row(digits):
    model = DPGAN(TINY)
    ledger = model.fit(digits, PrivacyBudget(epsilon="inf"), FitContext(seed=7, reproducible_noise=True))
    assert not ledger.is_private and ledger.spends == [] and ledger.epsilon_spent == math.inf
    assert ledger.dp_sgd() is None
    assert model.train_info["discriminator_steps"] == 2 * math.ceil(len(digits) / 30)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_mnist_and_cifar_shapes_train_one_step(shape):
    n = 12
    images = torch.rand(n, *shape)
    data = ImageSet(images, torch.arange(n) % 3, ["a", "b", "c"], "rand")
    model = DPGAN({"epochs": 1, "batch_size": n, "d_updates": 1, "g_width": 4, "d_width": 4,
                   "latent_dim": 4})
    ledger = model.fit(data, PrivacyBudget(epsilon=8.0), FitContext(seed=0))
    assert ledger.dp_sgd().steps == 1 and model.train_info["generator_steps"] == 1
    s = model.sample(6, seed=0)
    assert tuple(s.images.shape) == (6, *shape)


def test_image_too_small_is_a_config_error():
    data = ImageSet(torch.rand(4, 1, 3, 3), torch.zeros(4), ["x"], "tiny")
    with pytest.raises(ConfigError, match="even and ≥ 4"):
        DPGAN(TINY).fit(data, PrivacyBudget(epsilon=1.0), FitContext())


def test_fit_json_records_the_grad_sample_mode_the_fit_used(tmp_path):
    import json

    from ppds_core import fit_generator

    fit_generator("dp-gan", "digits", 10, tmp_path / "fit", config={**TINY, "epochs": 1}, samples=10,
                  accountant="rdp", dataset_config={"private": 200})
    marker = json.loads((tmp_path / "fit" / "fit.json").read_text())
    assert marker["train_info"]["grad_sample_mode"] == "bk"
    assert marker["train_info"]["discriminator_steps"] > 0


@pytest.mark.parametrize("option", [{"loss": "nonsat"}, {"g_norm": "batch"}, {"g_norm": "none"}])
def test_loss_and_generator_norm_options_train_and_round_trip(digits, option, tmp_path):
    model = DPGAN({**TINY, "epochs": 1, **option})
    model.fit(digits, PrivacyBudget(epsilon=5.0, delta=1e-5), FitContext(seed=0))
    assert model.train_info["generator_steps"] >= 1
    s = model.sample(10, seed=0)
    assert torch.isfinite(s.images).all()
    model.save(tmp_path)
    assert torch.equal(DPGAN.load(tmp_path).sample(10, seed=0).images, s.images)
