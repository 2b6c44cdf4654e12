"""The DP-SGD engine: noise scale, clipping, modes, ε, exact steps, ε = ∞, refusals, resume.

Tiny models and a few steps each; GDP accounting where only the engine's
bookkeeping is under test (the accountants are tested on their own).
"""

from __future__ import annotations

import copy
import io
import math

import pytest
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from ppds_core.budget import PrivacyBudget
from ppds_core.errors import BudgetError, ConfigError
from ppds_core.interfaces import FitContext
from ppds_core.privacy._grad_modes import GRAD_SAMPLE_MODES, PerSampleGradients, make_dp_optimizer
from ppds_core.privacy.accounting import ledger_epsilon
from ppds_core.privacy.engine import (
    DPSGDModule,
    DPSGDPlan,
    fit_private,
    plan_dp_sgd,
    public_copy,
)
from ppds_core.privacy.ledger import DPSGDSpend, GaussianSpend

N = 48
pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")


class Indexed(Dataset):
    """(x, y, index): lets a test see exactly which examples each batch held."""

    def __init__(self, n: int = N, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.rand(n, 1, 4, 4, generator=g)
        self.y = torch.randint(0, 3, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i], torch.tensor(i)


def small_net() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 6), nn.Tanh(), nn.Linear(6, 3))


class Classifier(DPSGDModule):
    """A private classifier plus an all-zero-gradient 'null' layer that only receives noise."""

    def __init__(self, lr: float = 0.1, null_width: int = 0, loss_scale: float = 1.0) -> None:
        super().__init__()
        parts = {"clf": small_net()}
        if null_width:
            parts["null"] = nn.Linear(null_width, null_width)
        self.net = nn.ModuleDict(parts)
        self.lr, self.null_width, self.loss_scale = lr, null_width, loss_scale
        self.batches: list[list[int]] = []

    def private_module(self) -> nn.Module:
        return self.net

    def configure_private_optimizer(self):
        return torch.optim.SGD(self.net.parameters(), lr=self.lr)

    def training_step(self, batch, batch_idx):
        x, y, idx = batch
        self.batches.append(idx.tolist())
        losses = nn.functional.cross_entropy(self.net["clf"](x), y, reduction="none")
        if self.null_width:  # gradient exactly 0: what moves these weights is the noise
            z = self.net["null"](torch.zeros(x.shape[0], self.null_width))
            losses = losses + 0.0 * z.sum(1)
        self.private_step(self.loss_scale * losses)


def fit(module, *, eps=2.0, batch_size=12, steps=None, epochs=None, accountant="rdp", seed=0,
        data=None, **plan_kw):
    if steps is None and epochs is None:
        steps = 3
    plan = DPSGDPlan(budget=PrivacyBudget(epsilon=eps), batch_size=batch_size, steps=steps,
                     epochs=epochs, accountant=accountant, **plan_kw)
    # seeded noise: these tests compare runs bit for bit (test_privacy_claims covers the default)
    return fit_private(module, data if data is not None else Indexed(), plan,
                       FitContext(seed=seed, reproducible_noise=True))


def built(seed: int = 0, **kw) -> Classifier:
    pl.seed_everything(seed, verbose=False)
    return Classifier(**kw)


# --------------------------------------------------------------------------- noise


@pytest.mark.parametrize("clip", [1.0, 0.25])
def test_noise_on_the_summed_gradient_has_std_sigma_times_c(clip):
    """One step, SGD lr=1: Δθ of the null layer is −noise/E, so std(Δθ)·E = σ·C."""
    m = built(lr=1.0, null_width=64)
    before = m.net["null"].weight.detach().clone()
    sigma, batch = 1.3, 12
    ledger = fit(m, eps=50.0, steps=1, batch_size=batch, noise_multiplier=sigma,
                 max_grad_norm=clip)
    delta = (m.net["null"].weight.detach() - before).flatten() * batch  # E = q·N = batch
    std = delta.std().item()
    assert std == pytest.approx(sigma * clip, rel=0.05)  # 4096 draws: 5% is > 4 s.e.
    assert abs(delta.mean().item()) < 0.1 * sigma * clip
    assert ledger.dp_sgd().noise_multiplier == sigma


# --------------------------------------------------------------------------- clipping & modes


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.norm = nn.GroupNorm(1, 3)
        self.fc = nn.Linear(3 * 16, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.norm(self.conv(x))).flatten(1))


def _reference_clipped_sum(model, x, y, clip):
    """Σ_i clip_C(∇ loss_i), one autograd call per example."""
    total = [torch.zeros_like(p) for p in model.parameters()]
    for i in range(len(x)):
        model.zero_grad()
        nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1], reduction="sum").backward()
        grads = [p.grad.detach().clone() for p in model.parameters()]
        norm = torch.sqrt(sum((g**2).sum() for g in grads))
        factor = min(1.0, clip / (norm.item() + 1e-6))
        assert norm * factor <= clip + 1e-6  # the bound each example contributes under
        for t, g in zip(total, grads, strict=True):
            t += factor * g
    return total


@pytest.mark.parametrize("mode", GRAD_SAMPLE_MODES)
def test_every_grad_sample_mode_gives_the_same_clipped_sum(mode):
    """σ = 0 and SGD lr = 1: the update times E is exactly Σ clip(g_i) in every mode."""
    torch.manual_seed(0)
    ref_model = _Tiny()
    x = torch.randn(10, 1, 4, 4) * 3
    y = torch.randint(0, 4, (10,))
    clip = 0.5
    reference = _reference_clipped_sum(ref_model, x, y, clip)
    # some examples are clipped, some are not: both branches of the bound are exercised
    model = _Tiny()
    model.load_state_dict(ref_model.state_dict())
    grads = PerSampleGradients(model, mode, clip)
    opt = make_dp_optimizer(torch.optim.SGD(model.parameters(), lr=1.0), mode=grads.mode,
                            noise_multiplier=0.0, max_grad_norm=clip, expected_batch_size=7.0,
                            distributed=False, generator=None, secure_mode=False)
    before = [p.detach().clone() for p in model.parameters()]
    opt.zero_grad()
    grads.backward(nn.functional.cross_entropy(model(x), y, reduction="none"), opt)
    opt.step()
    for p, b, r in zip(model.parameters(), before, reference, strict=True):
        torch.testing.assert_close((b - p.detach()) * 7.0, r, rtol=1e-4, atol=1e-5)
    grads.remove()
    assert not any(hasattr(p, "grad_sample") for p in model.parameters())


def test_one_example_moves_the_weights_by_at_most_c():
    """A huge loss on a single example still contributes a gradient of norm ≤ C."""
    torch.manual_seed(1)
    model = _Tiny()
    x, y = torch.randn(1, 1, 4, 4) * 100, torch.tensor([2])
    grads = PerSampleGradients(model, "hooks", 0.1)
    opt = make_dp_optimizer(torch.optim.SGD(model.parameters(), lr=1.0), mode="hooks",
                            noise_multiplier=0.0, max_grad_norm=0.1, expected_batch_size=1.0,
                            distributed=False, generator=None, secure_mode=False)
    before = [p.detach().clone() for p in model.parameters()]
    grads.backward(1e4 * nn.functional.cross_entropy(model(x), y, reduction="none"), opt)
    opt.step()
    moved = torch.sqrt(sum(((b - p.detach()) ** 2).sum()
                           for b, p in zip(before, model.parameters(), strict=True)))
    assert 0.099 < moved.item() <= 0.1 + 1e-6


class _Repeated(Classifier):
    """Each example passes through the network as K noisy rows; its loss is their mean."""

    def __init__(self, k: int, declare: bool) -> None:
        super().__init__()
        self.k, self.declare = k, declare

    def training_step(self, batch, batch_idx):
        x, y, _ = batch
        rows = x.repeat_interleave(self.k, 0) + 0.1 * torch.randn(x.shape[0] * self.k, *x.shape[1:])
        per_row = nn.functional.cross_entropy(self.net["clf"](rows), y.repeat_interleave(self.k),
                                              reduction="none")
        losses = per_row.view(-1, self.k).mean(1)
        self.private_step(losses, rows_per_example=self.k if self.declare else 1)


@pytest.mark.parametrize("mode", ["hooks", "functorch"])
def test_several_rows_per_example_are_summed_before_clipping_or_refused(mode):
    """K rows per example must become one clipped gradient per example: the engine folds
    them when told, and refuses (never clips per row) when not."""
    k, b = 3, 5
    torch.manual_seed(0)
    model = _Tiny()
    x, y = torch.randn(b, 1, 4, 4), torch.randint(0, 4, (b,))
    rows = x.repeat_interleave(k, 0) + 0.1 * torch.randn(b * k, 1, 4, 4)
    refs = [torch.autograd.grad(nn.functional.cross_entropy(model(rows[i * k:(i + 1) * k]),
                                                            y[i].repeat(k)), list(model.parameters()))
            for i in range(b)]
    grads = PerSampleGradients(model, mode, 1.0)
    try:
        losses = nn.functional.cross_entropy(model(rows), y.repeat_interleave(k), reduction="none")
        grads.backward(losses.view(b, k).mean(1), None, rows_per_example=k)
        for j, p in enumerate(model.parameters()):
            assert p.grad_sample.shape[0] == b
            for i in range(b):
                torch.testing.assert_close(p.grad_sample[i], refs[i][j], rtol=1e-4, atol=1e-6)
    finally:
        grads.remove()
    # through the engine: undeclared rows stop training with the fix in the message
    pl.seed_everything(0, verbose=False)
    with pytest.raises(RuntimeError, match=r"rows_per_example=K"):
        fit(_Repeated(k, declare=False), steps=1, grad_sample_mode=mode)
    pl.seed_everything(0, verbose=False)
    ledger = fit(_Repeated(k, declare=True), steps=2, grad_sample_mode=mode)
    assert ledger.dp_sgd().steps == 2
    with pytest.raises(ValueError, match="ghost"):
        PerSampleGradients(_Tiny(), "ghost", 1.0).backward(torch.zeros(2, requires_grad=True), None, 2)


def test_batchnorm_is_refused():
    with pytest.raises(ValueError, match="BatchNorm"):
        PerSampleGradients(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)), "hooks", 1.0)


# --------------------------------------------------------------------------- ε and steps


@pytest.mark.parametrize("target", [0.5, 3.0, 12.0])
def test_epsilon_spent_meets_the_target(target):
    m = built()
    ledger = fit(m, eps=target, epochs=1)
    assert ledger.epsilon_spent <= target
    assert ledger.epsilon_spent >= 0.97 * target  # calibrated, not merely safe
    assert ledger_epsilon(ledger) == pytest.approx(ledger.epsilon_spent, rel=1e-9)
    assert ledger.accountant == "rdp" and ledger.secure_rng is False


def test_other_spends_are_composed_and_recorded():
    query = GaussianSpend(noise_multiplier=8.0, sensitivity=1.0, purpose="semantic query")
    alone = fit(built(), eps=2.0)
    ledger = fit(built(), eps=2.0, other_spends=(query,))
    assert ledger.spends[0] == query and isinstance(ledger.spends[1], DPSGDSpend)
    assert ledger.epsilon_spent <= 2.0
    # less budget left for DP-SGD → more noise
    assert ledger.dp_sgd().noise_multiplier > alone.dp_sgd().noise_multiplier


def test_prv_accountant_with_a_fixed_noise_multiplier():
    ledger = fit(built(), eps=8.0, steps=2, accountant="prv", noise_multiplier=1.0)
    assert ledger.accountant == "prv"
    assert 0 < ledger.epsilon_spent <= 8.0
    assert ledger_epsilon(ledger) == pytest.approx(ledger.epsilon_spent, rel=1e-6)


@pytest.mark.parametrize(("epochs", "steps", "expected"), [(2, None, 8), (None, 5, 5)])
def test_training_stops_after_exactly_the_planned_steps(epochs, steps, expected):
    """N = 48, B = 12: an epoch is ⌈48/12⌉ = 4 Poisson batches."""
    m = built()
    ledger = fit(m, epochs=epochs, steps=steps)
    assert m.dp.total_steps == expected
    assert m.dp.steps_done == expected == len(m.batches)
    assert m.dp.history() == [(ledger.dp_sgd().noise_multiplier, 12 / 48, expected)]
    assert ledger.dp_sgd().steps == expected and ledger.dp_sgd().sample_rate == 0.25


def test_progress_reports_epsilon_so_far():
    seen = []
    m = built()
    plan = DPSGDPlan(budget=PrivacyBudget(epsilon=2.0), batch_size=12, steps=4,
                     accountant="rdp", progress_every=1)
    ledger = fit_private(m, Indexed(), plan,
                         FitContext(seed=0, progress=lambda s, t, info: seen.append((s, t, info))))
    assert [s for s, _, _ in seen] == [1, 2, 3, 4] and {t for _, t, _ in seen} == {4}
    eps = [info["epsilon"] for _, _, info in seen]
    assert eps == sorted(eps) and eps[-1] == pytest.approx(ledger.epsilon_spent)


def test_poisson_batches_vary_and_are_seeded():
    a, b, c = built(), built(), built()
    fit(a, epochs=3, seed=5)
    fit(b, epochs=3, seed=5)
    fit(c, epochs=3, seed=6)
    assert a.batches == b.batches != c.batches
    sizes = {len(batch) for batch in a.batches}
    assert len(sizes) > 1  # Poisson: the batch size is random, not fixed at 12


@pytest.mark.parametrize("mode", GRAD_SAMPLE_MODES)
def test_empty_poisson_batches_are_noise_only_steps(mode):
    """q = 1/48: many batches are empty; every mode must still take (and count) the step."""
    m = built(lr=1.0, null_width=8)
    ledger = fit(m, eps=20.0, batch_size=1, steps=6, grad_sample_mode=mode)
    sizes = [len(b) for b in m.batches]
    assert 0 in sizes and any(sizes)
    assert m.dp.steps_done == 6 and ledger.dp_sgd().steps == 6
    assert all(torch.isfinite(p).all() for p in m.parameters())


# --------------------------------------------------------------------------- ε = ∞


def test_infinite_epsilon_is_the_same_recipe_without_clipping_or_noise():
    private, public = built(lr=1.0), built(lr=1.0, loss_scale=50.0)
    start = {k: v.clone() for k, v in public.state_dict().items()}
    fit(private, eps=2.0, steps=1, seed=3)
    ledger = fit(public, eps=math.inf, steps=1, seed=3)
    assert public.batches == private.batches  # same seed ⇒ same Poisson batch
    assert ledger.target_epsilon == math.inf and ledger.epsilon_spent == math.inf
    assert ledger.dp_sgd() is None and not ledger.is_private
    # the update is Σ of the unclipped per-example gradients of that batch / E (E = 12),
    # the private step's normalisation; a loss this large would be clipped under DP
    ref = Classifier(loss_scale=50.0)
    ref.load_state_dict(start)
    data = Indexed()
    idx = torch.tensor(public.batches[0])
    losses = 50.0 * nn.functional.cross_entropy(ref.net["clf"](data.x[idx]), data.y[idx],
                                                reduction="none")
    (losses.sum() / 12).backward()
    assert torch.sqrt(sum((p.grad**2).sum() for p in ref.parameters())) * 12 / len(idx) > 1.0
    for (name, p), q in zip(ref.named_parameters(), public.parameters(), strict=True):
        torch.testing.assert_close(start[name] - q.detach(), p.grad, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- refusals


def test_what_cannot_be_honoured_is_refused_before_training():
    m = built()
    shuffled = DataLoader(TensorDataset(torch.rand(N, 3), torch.zeros(N)), batch_size=12,
                          shuffle=True)
    with pytest.raises(BudgetError, match="Poisson"):
        fit(m, data=shuffled)
    with pytest.raises(BudgetError, match="exceeds the 48 private examples"):
        fit(m, batch_size=49)
    with pytest.raises(BudgetError, match="no budget is left"):
        fit(m, eps=1.0, other_spends=(GaussianSpend(noise_multiplier=0.5, sensitivity=1.0),))
    with pytest.raises(BudgetError, match="costs epsilon"):
        fit(m, eps=1.0, noise_multiplier=0.3)
    with pytest.raises(ConfigError, match="did you mean 'ghost'"):
        plan_dp_sgd(DPSGDPlan(budget=PrivacyBudget(epsilon=1.0), batch_size=4, steps=1,
                              grad_sample_mode="ghots"), N)
    plan = DPSGDPlan(budget=PrivacyBudget(epsilon=1.0), batch_size=4, steps=1, accountant="rdp")
    with pytest.raises(ConfigError, match="max_steps"):
        fit_private(m, Indexed(), plan, FitContext(trainer={"max_steps": 10}))
    with pytest.raises(ConfigError, match="ddp_spawn"):
        fit_private(m, Indexed(), plan, FitContext(trainer={"strategy": "ddp_spawn", "devices": 2}))
    for precision in ("16-mixed", "bf16-mixed"):
        with pytest.raises(ConfigError, match="not supported for DP-SGD"):
            fit_private(m, Indexed(), plan, FitContext(trainer={"precision": precision}))
    assert m.batches == []  # nothing trained


def test_a_poisson_loader_is_accepted():
    loader = DataLoader(Indexed(), batch_size=12)
    from opacus.data_loader import DPDataLoader

    m = built()
    ledger = fit(m, data=DPDataLoader.from_data_loader(loader), steps=2)
    assert ledger.dp_sgd().steps == 2


def test_secure_rng_needs_torchcsprng():
    pytest.importorskip("torch")  # always present; the check below is about csprng
    try:
        import torchcsprng  # noqa: F401
    except ImportError:
        with pytest.raises(BudgetError, match="torchcsprng"):
            fit(built(), secure_rng=True)
    else:  # pragma: no cover - csprng is not installed on the test machines
        assert fit(built(), secure_rng=True).secure_rng is True


# --------------------------------------------------------------------------- checkpoints


class _Interrupt(Exception):
    pass


class _SaveAndStop(pl.Callback):
    def __init__(self, at: int, path) -> None:
        self.at, self.path = at, path

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if pl_module.dp.steps_done == self.at:
            trainer.save_checkpoint(self.path)
            raise _Interrupt


def test_resume_from_a_checkpoint_continues_the_ledger(tmp_path):
    plan = DPSGDPlan(budget=PrivacyBudget(epsilon=3.0), batch_size=12, steps=7, accountant="rdp")
    whole = built()
    full = fit_private(whole, Indexed(), plan, FitContext(seed=1, reproducible_noise=True))

    ckpt = tmp_path / "mid.ckpt"
    first = built()
    with pytest.raises(_Interrupt):
        fit_private(first, Indexed(), plan, FitContext(seed=1, reproducible_noise=True), callbacks=[_SaveAndStop(3, ckpt)])
    assert first.dp.steps_done == 3
    second = built()
    resumed = fit_private(second, Indexed(), plan, FitContext(seed=1, reproducible_noise=True), ckpt_path=ckpt)
    assert second.dp.steps_done == 7 and len(second.batches) == 4  # not 3 + 7
    assert resumed.dp_sgd() == full.dp_sgd()
    assert resumed.epsilon_spent == full.epsilon_spent <= 3.0
    # restored sampler and noise streams: the resumed run is the uninterrupted one
    assert first.batches + second.batches == whole.batches
    for a, b in zip(second.parameters(), whole.parameters(), strict=True):
        torch.testing.assert_close(a, b)

    # a checkpoint taken after the last step: resuming spends nothing more
    done = tmp_path / "done.ckpt"
    with pytest.raises(_Interrupt):
        fit_private(built(), Indexed(), plan, FitContext(seed=1, reproducible_noise=True), callbacks=[_SaveAndStop(7, done)])
    again = built()
    assert fit_private(again, Indexed(), plan, FitContext(seed=1, reproducible_noise=True), ckpt_path=done) == full
    assert again.batches == [] and again.dp.steps_done == 7

    other = DPSGDPlan(budget=PrivacyBudget(epsilon=3.0), batch_size=6, steps=7, accountant="rdp")
    with pytest.raises(BudgetError, match="different DP-SGD schedule"):
        fit_private(built(), Indexed(), other, FitContext(seed=1, reproducible_noise=True), ckpt_path=ckpt)


# --------------------------------------------------------------------------- a DP-GAN shape


class _GanLike(DPSGDModule):
    """Private discriminator, public generator stepping against a detached copy."""

    def __init__(self) -> None:
        super().__init__()
        self.disc = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.LeakyReLU(0.2), nn.Linear(8, 1))
        self.gen = nn.Sequential(nn.Linear(4, 16), nn.Sigmoid())
        self.gen_steps = 0

    def private_module(self):
        return self.disc

    def configure_private_optimizer(self):
        return torch.optim.Adam(self.disc.parameters(), lr=1e-2)

    def configure_public_optimizers(self):
        return [torch.optim.Adam(self.gen.parameters(), lr=1e-2)]

    def training_step(self, batch, batch_idx):
        x = batch[0]
        fake = self.gen(torch.randn(x.shape[0], 4)).view(-1, 1, 4, 4).detach()
        # one forward (ghost clipping allows one per step): real rows, then fake rows,
        # each clipped on its own; fakes hold no private data
        out = self.disc(torch.cat([x, fake])).flatten()
        b = x.shape[0]
        losses = torch.cat([torch.relu(1 - out[:b]), torch.relu(1 + out[b:])])
        self.private_step(losses)
        if self.dp.steps_done % 2 == 0:
            d = public_copy(self.disc)
            assert not d._forward_hooks and not hasattr(next(d.parameters()), "grad_sample")
            g_loss = -d(self.gen(torch.randn(8, 4)).view(-1, 1, 4, 4)).mean()
            self.public_step(self.optimizers()[1].optimizer, g_loss)
            self.gen_steps += 1


def test_private_discriminator_with_a_public_generator():
    pl.seed_everything(0, verbose=False)
    m = _GanLike()
    gen0 = [p.detach().clone() for p in m.gen.parameters()]
    ledger = fit(m, eps=4.0, steps=6, grad_sample_mode="ghost")
    assert m.dp.steps_done == 6 and m.gen_steps == 3
    assert any(not torch.equal(a, b) for a, b in zip(gen0, m.gen.parameters(), strict=True))
    assert ledger.dp_sgd().steps == 6 and ledger.epsilon_spent <= 4.0
    # after fit the discriminator is a plain module again, and the module can be
    # copied and pickled (the engine's run-time state stays behind)
    assert not any(hasattr(p, "grad_sample") for p in m.disc.parameters())
    twin = copy.deepcopy(m)
    assert twin.__dict__["_dp_state"] is None and m.dp.steps_done == 6
    torch.save(m, io.BytesIO())


# --------------------------------------------------------------------------- trainer options


def test_strategy_resolution_never_uses_lightnings_gradient_syncing_ddp():
    from pytorch_lightning.strategies import DDPStrategy

    from ppds_core.privacy._opacus_lightning import DPDDPStrategy, _resolve_strategy

    assert _resolve_strategy({"strategy": "auto", "devices": 1}) == "auto"
    for cfg in ({"strategy": "ddp", "devices": 2}, {"strategy": "auto", "devices": 4},
                {"strategy": "auto", "devices": "auto"}, {"devices": 1, "num_nodes": 2}):
        assert isinstance(_resolve_strategy(cfg), DPDDPStrategy), cfg
    with pytest.raises(ConfigError, match="noise must be added once"):
        _resolve_strategy({"strategy": DDPStrategy()})
    with pytest.raises(ConfigError, match="'fsdp' is not supported"):
        _resolve_strategy({"strategy": "fsdp", "devices": 2})


def test_non_private_plan_has_no_noise_and_the_same_schedule():
    private = plan_dp_sgd(DPSGDPlan(budget=PrivacyBudget(epsilon=1.0), batch_size=10, epochs=3,
                                    accountant="rdp"), 95)
    public = plan_dp_sgd(DPSGDPlan(budget=PrivacyBudget(epsilon=math.inf), batch_size=10,
                                   epochs=3), 95)
    assert public.noise_multiplier == 0.0 and not public.private
    assert (public.sample_rate, public.steps_per_epoch, public.total_steps) == (
        private.sample_rate, private.steps_per_epoch, private.total_steps) == (10 / 95, 10, 30)
    assert private.planned_epsilon <= 1.0 < private.planned_epsilon * 1.05


# --------------------------------------------------------------------------- physical batches


class _Chunked(Classifier):
    """The Classifier's step, through private_step_in_chunks."""

    def training_step(self, batch, batch_idx):
        x, y, idx = batch
        self.batches.append(idx.tolist())
        self.private_step_in_chunks(
            (x, y), lambda xs, ys: nn.functional.cross_entropy(self.net["clf"](xs), ys, reduction="none"))


@pytest.mark.parametrize("mode,eps", [("hooks", 10.0), ("functorch", 10.0), ("ew", 10.0), ("hooks", math.inf)])
def test_physical_batches_give_the_same_step_noise_and_ledger_as_one_batch(mode, eps):
    """Slicing a Poisson batch for memory changes nothing else: same clipped sum, one noise
    draw and one accountant step per batch (batches of ~24 in slices of at most 5)."""
    runs = {}
    for physical in (None, 5):
        pl.seed_everything(3, verbose=False)
        m = Classifier(lr=0.5) if physical is None else _Chunked(lr=0.5)
        ledger = fit(m, eps=eps, steps=3, batch_size=24, grad_sample_mode=mode, seed=5,
                     max_physical_batch_size=physical, **({} if math.isinf(eps) else {"noise_multiplier": 1.1}))
        runs[physical] = (m, ledger)
    (whole, led_whole), (sliced, led_sliced) = runs[None], runs[5]
    assert whole.batches == sliced.batches and max(len(b) for b in whole.batches) > 5
    for a, b in zip(whole.net.parameters(), sliced.net.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert led_whole.model_dump() == led_sliced.model_dump()
    assert sliced.dp.steps_done == 3


def test_physical_batch_options_are_checked():
    with pytest.raises(ConfigError, match="max_physical_batch_size"):
        fit(built(), max_physical_batch_size=0)
    with pytest.raises(ConfigError, match="ghost"):
        fit(built(), grad_sample_mode="ghost", max_physical_batch_size=4)


@pytest.mark.parametrize("mode", ["hooks", "functorch"])
def test_per_sample_gradients_are_exact_for_a_channels_last_conv_input(mode):
    """Opacus' conv grad sampler is wrong on channels_last inputs (diffusers' attention
    emits them); the engine hands convs a contiguous input, so the per-sample gradients
    that get clipped are each example's own."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 1))
    x = torch.randn(5, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    expected = []
    for i in range(5):
        net.zero_grad()
        net(x[i:i + 1]).sum().backward()
        expected.append(net[0].weight.grad.clone())
    net.zero_grad()
    grads = PerSampleGradients(net, mode, 1.0)
    net(x).sum().backward()
    torch.testing.assert_close(net[0].weight.grad_sample, torch.stack(expected), rtol=1e-4, atol=1e-5)
    grads.remove()
