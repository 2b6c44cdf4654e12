"""Book-keeping clipping ('bk'): the same clipped sum as 'hooks' and as brute force.

Each model's clipped-and-summed gradient is computed three ways: 'bk', Opacus'
'hooks', and a per-example autograd loop (one backward per example, the norm
of the whole example's gradient, Opacus' clip factor) that shares no code
with either. The clipping norm is set between the examples' gradient norms,
so some examples are clipped and some are not.
"""

from __future__ import annotations

import copy
import math

import pytest
import pytorch_lightning as pl
import torch
from test_engine import _Interrupt, _SaveAndStop
from torch import nn
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from ppds_core.budget import PrivacyBudget
from ppds_core.interfaces import FitContext
from ppds_core.privacy._bookkeeping import norm_paths
from ppds_core.privacy.engine import (
    DPSGDModule,
    DPSGDPlan,
    PerSampleGradients,
    fit_private,
    make_dp_optimizer,
)

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")


@pytest.fixture(params=["mixed", "ghost"])
def norm_rule(request, monkeypatch):
    """The mixed rule as shipped, and with every Linear/Conv2d norm taken the ghost way
    (as when per-example gradients would not fit in memory), so both paths stay exact."""
    from ppds_core.privacy import _bk_layers

    if request.param == "ghost":
        monkeypatch.setattr(_bk_layers, "INSTANTIATE_MAX_BYTES", -1)
    return request.param


def _clipped_sum(model, mode, losses_of, clip, k=1):
    """Σᵢ cᵢ∇ᵢ as the engine's mode leaves it for the optimizer (no noise, E = 1)."""
    model = copy.deepcopy(model)
    grads = PerSampleGradients(model, mode, clip)
    opt = make_dp_optimizer(torch.optim.SGD(model.parameters(), lr=0.0), mode=grads.mode,
                            noise_multiplier=0.0, max_grad_norm=clip, expected_batch_size=1,
                            distributed=False, generator=None, secure_mode=False)
    opt.zero_grad(set_to_none=True)
    losses = losses_of(model)
    if losses.shape[0] == 0:
        grads.empty_batch()
    else:
        grads.backward(losses, opt, k)
    opt.pre_step()
    out = [p.grad.detach().clone() for p in model.parameters()]
    grads.remove()
    return out


def _brute_force(model, losses_of, clip):
    """One backward per example: ∇ of loss i w.r.t. every parameter, clipped as Opacus does."""
    model = copy.deepcopy(model)
    params = list(model.parameters())
    losses = losses_of(model)
    per_example = [torch.autograd.grad(losses[i], params, retain_graph=True, allow_unused=True)
                   for i in range(losses.shape[0])]
    per_example = [[torch.zeros_like(p) if g is None else g for g, p in zip(gs, params, strict=True)]
                   for gs in per_example]
    norms = torch.stack([torch.cat([g.flatten() for g in gs]).norm() for gs in per_example])
    factors = (clip / (norms + 1e-6)).clamp(max=1.0)
    total = [sum(f * gs[j] for f, gs in zip(factors, per_example, strict=True))
             for j in range(len(params))]
    return total, norms


def _check_all_modes_agree(model, losses_of, k=1, other="hooks"):
    _, norms = _brute_force(model, losses_of, 1.0)
    clip = float(norms.median())  # some examples above the clipping norm, some below
    assert (norms > clip * 1.01).any() and (norms < clip * 0.99).any()
    reference, _ = _brute_force(model, losses_of, clip)
    bk = _clipped_sum(model, "bk", losses_of, clip, k)
    hooks = _clipped_sum(model, other, losses_of, clip, k)
    for r, b, h in zip(reference, bk, hooks, strict=True):
        torch.testing.assert_close(b, h, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(b, r, rtol=1e-4, atol=1e-6)


def _check_empty_batch_is_zero(model, losses_of, k=1):
    bk = _clipped_sum(model, "bk", losses_of, 1.0, k)
    hooks = _clipped_sum(model, "hooks", losses_of, 1.0, k)
    assert all(torch.equal(b, h) and not b.any() for b, h in zip(bk, hooks, strict=True))


# --------------------------------------------------------------------------- DP-GAN


@pytest.mark.parametrize("side", [8, 28])
def test_dp_gan_discriminator_gets_the_clipped_sum_of_hooks_and_brute_force(side, norm_rule):
    from plugins.generators.dp_gan._nets import ProjectionDiscriminator, net_shape

    torch.manual_seed(0)
    d = ProjectionDiscriminator(net_shape(1, side, side), num_classes=4, width=4)
    x, y = torch.randn(7, 1, side, side), torch.randint(0, 4, (7,))

    def losses(m, n=7):
        return F.softplus(-m(x[:n], y[:n]))

    _check_all_modes_agree(d, losses)
    _check_empty_batch_is_zero(d, lambda m: losses(m, 0))
    paths = norm_paths(d)  # every layer of the discriminator has a closed form
    assert "torch.func" not in paths.values() and "embed" in paths
    grads = PerSampleGradients(d, "bk", 1.0)
    grads.backward(losses(d), None)
    norms = grads._bk.last_norms
    if norm_rule == "mixed":  # the convs (many positions) are instantiated; the label
        # embedding (one position, few classes) takes the ghost norm
        assert norms["features.0.weight"] == "instantiated" and norms["embed.weight"] == "ghost"
    else:
        assert norms["features.0.weight"] == norms["score.weight"] == "ghost"
    grads.remove()


# --------------------------------------------------------------------------- UNet


def _tiny_unet(attention: bool = False):
    from diffusers import UNet2DModel

    torch.manual_seed(1)
    return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 8),
                       layers_per_block=1,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D" if attention else "DownBlock2D"),
                       up_block_types=("AttnUpBlock2D" if attention else "UpBlock2D", "UpBlock2D"),
                       num_class_embeds=3, norm_num_groups=4, add_attention=attention,
                       attention_head_dim=8 if attention else None)


# With attention, diffusers hands some convolutions channels_last inputs, on which Opacus'
# conv grad sampler ('hooks') returns wrong per-sample gradients (opacus 1.6); there the
# comparison is with 'functorch' (vmap, exact) besides brute force.
@pytest.mark.parametrize("k,attention", [(1, False), (4, False), (4, True)])
def test_diffusion_unet_gets_the_clipped_sum_of_hooks_with_k_rows_per_example(k, attention, norm_rule):
    unet = _tiny_unet(attention)
    b = 4
    g = torch.Generator().manual_seed(2)
    x0, y = torch.randn(b, 1, 8, 8, generator=g), torch.randint(0, 3, (b,), generator=g)
    noise = torch.randn(b * k, 1, 8, 8, generator=g)
    t = torch.randint(0, 1000, (b * k,), generator=g)

    def losses(m, n=b):
        xk, yk = x0[:n].repeat_interleave(k, 0), y[:n].repeat_interleave(k, 0)
        noisy = 0.8 * xk + 0.6 * noise[:n * k]
        pred = m(noisy, t[:n * k], class_labels=yk).sample
        per_row = (pred - noise[:n * k]).pow(2).flatten(1).mean(1)
        return per_row.view(n, k).mean(1)  # one loss per example, averaging its K rows

    _check_all_modes_agree(unet, losses, k, other="functorch" if attention else "hooks")
    # (diffusers' attention cannot run 0 rows; the engine's empty step needs no forward)
    _check_empty_batch_is_zero(unet, lambda m: torch.zeros(0) if attention else losses(m, 0), k)


def test_bk_refuses_rows_that_are_not_examples_times_k():
    unet = _tiny_unet()
    x, t = torch.randn(6, 1, 8, 8), torch.randint(0, 1000, (6,))
    with pytest.raises(RuntimeError, match="rows_per_example"):
        _clipped_sum(unet, "bk", lambda m: m(x, t, class_labels=torch.zeros(6, dtype=torch.long))
                     .sample.flatten(1).mean(1).view(3, 2).mean(1), 1.0, k=1)


# --------------------------------------------------------------------------- fallback


class _Scale(nn.Module):
    """A layer with no closed form: its own parameter, and a child Linear."""

    def __init__(self, d):
        super().__init__()
        self.gain = nn.Parameter(torch.linspace(0.5, 1.5, d))
        self.inner = nn.Linear(d, d)

    def forward(self, h):
        return self.inner(torch.tanh(h * self.gain))


def test_mixed_ghost_clipping_takes_the_ghost_norm_when_2p2_is_below_d_in_d_out_or_memory_runs_out():
    from ppds_core.privacy._bk_layers import _ghost_is_cheaper

    assert _ghost_is_cheaper(1, 3136, 10, b=256)  # one position (a linear layer)
    assert _ghost_is_cheaper(49, 288, 64, b=256)  # a 3×3 conv over 7×7 positions: 4802 < 18432
    assert not _ghost_is_cheaper(196, 9, 32, b=256)  # the first conv, 14×14 positions, one channel
    assert _ghost_is_cheaper(4096, 4096, 4096, b=256)  # by the rule: instantiate; but 16 GiB


@pytest.mark.parametrize("c,k,stride,pad,side", [(3, 3, 2, 1, 9), (4, 3, 1, 1, 8), (2, 1, 1, 0, 5),
                                                 (3, (3, 2), (2, 1), (1, 0), 7)])
def test_the_strided_unfold_equals_torch_unfold(c, k, stride, pad, side):
    from ppds_core.privacy._bk_layers import _unfold

    m = nn.Conv2d(c, 4, k, stride=stride, padding=pad)
    x = torch.randn(2, c, side, side + 1)
    assert torch.equal(_unfold(x, m), F.unfold(x, m.kernel_size, m.dilation, m.padding, m.stride))


def test_a_layer_without_closed_form_falls_back_to_exact_per_example_gradients():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.PReLU(3), nn.LayerNorm([3, 4, 4]),
                          nn.Flatten(), nn.Linear(48, 5), _Scale(5), nn.Linear(5, 1))
    x = torch.randn(6, 1, 4, 4)

    def losses(m, n=6):
        return m(x[:n]).squeeze(1).pow(2)

    paths = norm_paths(model)
    assert paths["1"] == paths["5"] == "torch.func" and paths["5.inner"] == "linear"
    _check_all_modes_agree(model, losses)
    _check_empty_batch_is_zero(model, lambda m: losses(m, 0))


# --------------------------------------------------------------------------- through fit_private


class _Classifier(DPSGDModule):
    def __init__(self, chunked: bool = False):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(16, 6), nn.Tanh(), nn.Linear(6, 3))
        self.chunked = chunked

    def private_module(self):
        return self.net

    def configure_private_optimizer(self):
        return torch.optim.SGD(self.net.parameters(), lr=0.5)

    def _losses(self, x, y):
        return F.cross_entropy(self.net(x), y, reduction="none")

    def training_step(self, batch, batch_idx):
        if self.chunked:
            self.private_step_in_chunks(batch, self._losses)
        else:
            self.private_step(self._losses(*batch))


@pytest.mark.parametrize("physical", [None, 5])
def test_a_fit_with_bk_has_the_ledger_and_weights_of_hooks(physical):
    """Same seed, same Poisson batches and noise: the same ledger, and the same weights to
    float tolerance — also when bk's batches are sliced for memory."""
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(48, 1, 4, 4, generator=g), torch.randint(0, 3, (48,), generator=g))
    runs = {}
    for mode in ("hooks", "bk"):
        pl.seed_everything(3, verbose=False)
        m = _Classifier(chunked=mode == "bk" and physical is not None)
        plan = DPSGDPlan(budget=PrivacyBudget(epsilon=10.0), batch_size=24, steps=4,
                         accountant="rdp", grad_sample_mode=mode, noise_multiplier=1.1,
                         max_physical_batch_size=physical if mode == "bk" else None)
        runs[mode] = (m, fit_private(m, data, plan, FitContext(seed=5, reproducible_noise=True)))
    (hooks, led_hooks), (bk, led_bk) = runs["hooks"], runs["bk"]
    assert led_hooks.model_dump() == led_bk.model_dump() and math.isfinite(led_bk.epsilon_spent)
    moved = False
    for a, b, start in zip(hooks.net.parameters(), bk.net.parameters(),
                           _Classifier_initial(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        moved |= not torch.allclose(a, start)
    assert moved


def _Classifier_initial():  # noqa: N802 - the weights both runs start from
    pl.seed_everything(3, verbose=False)
    return [p.detach().clone() for p in _Classifier().net.parameters()]


# DDP: tests/test_engine_ddp.py runs the bk mode in its 2-process script too
# (test_bk_under_ddp_adds_noise_once_and_matches_hooks).


def test_a_dp_gan_fit_with_bk_matches_the_fit_with_hooks():
    """The plugin end to end (real and fake rows through one discriminator forward): same
    ledger, and samples equal to float tolerance (same seed, batches and noise)."""
    from ppds_plugins.generators.dp_gan import DPGAN

    from ppds_core import load_dataset

    digits = load_dataset("digits").private.subset(torch.arange(120))
    tiny = {"epochs": 2, "batch_size": 30, "d_updates": 2, "g_width": 8, "d_width": 8,
            "latent_dim": 8, "accountant": "rdp"}
    fits = {}
    for mode in ("hooks", "bk"):
        model = DPGAN({**tiny, "grad_sample_mode": mode})
        model.fit(digits, PrivacyBudget(epsilon=5.0, delta=1e-5),
                  FitContext(seed=7, reproducible_noise=True))
        fits[mode] = model
    assert fits["bk"].ledger == fits["hooks"].ledger
    torch.testing.assert_close(fits["bk"].sample(20, seed=0).images,
                               fits["hooks"].sample(20, seed=0).images, rtol=1e-4, atol=1e-4)


def test_a_bk_fit_resumed_from_a_checkpoint_is_the_uninterrupted_fit(tmp_path):
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(48, 1, 4, 4, generator=g), torch.randint(0, 3, (48,), generator=g))
    plan = DPSGDPlan(budget=PrivacyBudget(epsilon=10.0), batch_size=12, steps=5, accountant="rdp",
                     grad_sample_mode="bk")

    def run(**kw):
        pl.seed_everything(3, verbose=False)
        m = _Classifier()
        return m, fit_private(m, data, plan, FitContext(seed=1, reproducible_noise=True), **kw)

    whole, full = run()
    ckpt = tmp_path / "mid.ckpt"
    with pytest.raises(_Interrupt):
        run(callbacks=[_SaveAndStop(2, ckpt)])
    second, resumed = run(ckpt_path=ckpt)
    assert second.dp.steps_done == 5 and resumed == full
    for a, b in zip(whole.net.parameters(), second.net.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- auto


class _Tied(nn.Module):
    """An encoder and decoder sharing one weight matrix (a parameter in two modules)."""

    def __init__(self):
        super().__init__()
        self.enc, self.dec = nn.Linear(4, 3, bias=False), nn.Linear(3, 4, bias=False)
        self.dec.weight = self.enc.weight  # (dec uses it as 3 → 4 through the transpose below)

    def forward(self, x):
        return F.linear(self.enc(x), self.dec.weight.t())


class _Attends(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(4, 1, batch_first=True)

    def forward(self, x):
        return self.attn(x, x, x)[0]


def test_auto_is_bk_where_bk_runs_and_hooks_where_it_cannot():
    from plugins.generators.dp_gan._nets import ProjectionDiscriminator, net_shape
    from ppds_core.privacy._grad_modes import resolve_grad_sample_mode

    d = ProjectionDiscriminator(net_shape(1, 8, 8), num_classes=4, width=4)
    assert resolve_grad_sample_mode(d, "auto")[0] == "bk"
    assert resolve_grad_sample_mode(_tiny_unet(), "auto")[0] == "bk"
    mode, why = resolve_grad_sample_mode(_Tied(), "auto")
    assert mode == "hooks" and "shares a parameter" in why
    mode, why = resolve_grad_sample_mode(_Attends(), "auto")
    assert mode == "hooks" and "MultiheadAttention" in why
    assert resolve_grad_sample_mode(d, "functorch") == ("functorch", "asked for")
    with pytest.raises(ValueError, match="pass PerSampleGradients"):
        make_dp_optimizer(torch.optim.SGD(d.parameters(), lr=0.1), mode="auto", noise_multiplier=1.0,
                          max_grad_norm=1.0, expected_batch_size=1, distributed=False, generator=None,
                          secure_mode=False)


def test_a_plan_that_names_no_mode_trains_with_bk_and_says_so_in_the_log(caplog):
    import logging

    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(48, 1, 4, 4, generator=g), torch.randint(0, 3, (48,), generator=g))
    plan = DPSGDPlan(budget=PrivacyBudget(epsilon=10.0), batch_size=12, steps=2, accountant="rdp")
    assert plan.grad_sample_mode == "auto"
    m = _Classifier()
    with caplog.at_level(logging.INFO, logger="ppds.privacy"):
        fit_private(m, data, plan, FitContext(seed=1, reproducible_noise=True))
    assert m.dp.grad_sample_mode == "bk"
    assert "grad_sample_mode auto → bk" in caplog.text
