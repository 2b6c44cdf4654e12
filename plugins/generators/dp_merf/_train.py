"""DP-MERF's fit: one Gaussian release of the mean embedding, then post-processing.

The only step that reads private data is :func:`release_embedding`: the
class-conditional mean embedding μ = (1/N) Σᵢ φ(xᵢ) ⊗ onehot(yᵢ) is released
once through :func:`ppds_core.privacy.gaussian_release` with L2 sensitivity
Δ = 2/N. Each example adds one vector of norm exactly 1 (‖φ‖ = 1, onehot is a
unit vector), so

- replacing one example (the paper's adjacency) moves μ by
  ‖φ(x)⊗e_y − φ(x')⊗e_y'‖/N ≤ 2/N;
- adding or removing one (ppds' adjacency, normalised by the actual count)
  moves it by ‖φ(x)⊗e_y − μ'‖/N ≤ (1 + ‖μ'‖)/N ≤ 2/N, N the larger set's size
  (with N held fixed and public, 1/N would do: 2/N is the conservative bound
  that covers both, as in the reference code and DPImageBench).

σ is calibrated by the ledger's accountant, the noise comes from OS entropy
(``gaussian_release``), and at ε = ∞ the same recipe runs without noise or
spend. Fitting the generator to the released μ̃ (:func:`train_generator`) is
post-processing and spends nothing more.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from ppds_plugins.common.devices import device_of

from ppds_core import FitContext, ImageSet, Ledger, PrivacyBudget
from ppds_core.privacy import GaussianRelease, gaussian_release
from ppds_core.privacy.checkpoint import (
    Preemption,
    StageCheckpoints,
    data_fingerprint,
    plan_key,
    preemption,
)

from ._config import PIXEL_BANDWIDTH, DPMERFConfig
from ._features import class_embedding, embedding_of, rff, rff_frequencies
from ._nets import ConditionalGenerator

__all__ = ["TrainResult", "bandwidth", "seeded", "release_embedding", "build_generator",
           "train_generator", "train_dp_merf"]

#: what the release is, on the ledger
PURPOSE = "class-conditional mean embedding"
#: checkpoint files (``FitContext.checkpoint_dir``): the released μ̃, the generator's loop
RELEASE_STAGE, LOOP_STAGE = "dp_merf_release", "dp_merf_generator"

log = logging.getLogger("ppds.plugins.dp_merf")


def _plan_key(private: ImageSet, budget: PrivacyBudget, ctx: FitContext, cfg: DPMERFConfig) -> str:
    """What a checkpoint must agree on: config, data, budget, seed, noise mode, accountant."""
    return plan_key("dp-merf", cfg, data_fingerprint(private.images, private.labels), budget.epsilon,
                    budget.delta, ctx.seed, ctx.reproducible_noise, ctx.accountant)


class _LoopState:
    """The generator loop's checkpoint: saved every ``stages.every`` steps, resumed once."""

    def __init__(self, net, opt, sched, latents: torch.Generator, losses: list[float],
                 stages: StageCheckpoints | None) -> None:
        self.net, self.opt, self.sched, self.latents, self.losses = net, opt, sched, latents, losses
        self.stages = stages

    def resume(self) -> int:
        """The step to start from: 0, or a saved loop's (its whole state restored)."""
        saved = self.stages.load(LOOP_STAGE) if self.stages is not None else None
        if saved is None:
            return 0
        self.net.load_state_dict(saved["net"])
        self.opt.load_state_dict(saved["opt"])
        self.sched.load_state_dict(saved["sched"])
        self.latents.set_state(saved["latents"])
        self.losses[:] = [float(v) for v in saved["losses"]]
        step = int(saved["step"])
        self.stages.resumed_from = step
        log.info("dp-merf: generator training resumed from a checkpoint at step %d", step)
        return step

    def checkpoint_if_due(self, step: int, total: int, preempt: Preemption | None) -> None:
        """Before ``step``: save when due or when a preemption signal arrived (then stop)."""
        stages = self.stages
        stop = preempt is not None and preempt.requested
        if stages is None or not ((stages.due(step) and step != stages.resumed_from) or stop):
            return
        stages.save(LOOP_STAGE, {"step": step, "net": self.net.state_dict(),
                                 "opt": self.opt.state_dict(), "sched": self.sched.state_dict(),
                                 "latents": self.latents.get_state(), "losses": list(self.losses)})
        if stop:
            raise preempt.interrupted(step, total, stages.path(LOOP_STAGE))


@dataclass
class TrainResult:
    """The trained generator (CPU, eval mode), the release's ledger and run facts."""

    generator: ConditionalGenerator
    ledger: Ledger
    info: dict[str, Any]


def seeded(seed: int, stream: str) -> torch.Generator:
    """A CPU generator for one named stream of ``seed`` (frequencies, init, latents): public
    randomness, reproducible from the config; never used for the privacy noise."""
    key = [int(seed) & 0xFFFFFFFF, *stream.encode()]
    state = int(np.random.SeedSequence(key).generate_state(1, dtype=np.uint64)[0])
    return torch.Generator().manual_seed(state & 0x7FFF_FFFF_FFFF_FFFF)


def bandwidth(cfg: DPMERFConfig, shape: tuple[int, int, int]) -> float:
    """σ_rff: the config's, or PIXEL_BANDWIDTH · √(C·H·W) (a rule on the public image size)."""
    if cfg.rff_sigma is not None:
        return float(cfg.rff_sigma)
    return PIXEL_BANDWIDTH * math.sqrt(math.prod(shape))


def release_embedding(private: ImageSet, budget: PrivacyBudget, ctx: FitContext, cfg: DPMERFConfig,
                      w: torch.Tensor, stages: StageCheckpoints | None = None
                      ) -> tuple[torch.Tensor, GaussianRelease]:
    """μ̃ = μ + N(0, (σ·2/N)²) per coordinate, D × classes, and the release (σ, Δ, ledger).

    The one access to private data in DP-MERF; at ε = ∞ μ̃ = μ exactly. With a
    checkpoint folder μ̃ is saved right after it is drawn, and a resumed fit of the
    same plan reuses it: the release is never redrawn (that would be a second spend),
    and the ledger (calibration only, no noise drawn) is the same.
    """
    n = len(private)
    release = gaussian_release(sensitivity=2.0 / n, budget=budget, ctx=ctx, accountant=cfg.accountant,
                               purpose=PURPOSE)
    saved = stages.load(RELEASE_STAGE) if stages is not None else None
    if saved is not None and float(saved["noise_multiplier"]) == release.noise_multiplier:
        log.info("dp-merf: reusing the released embedding from %s", stages.path(RELEASE_STAGE))
        return saved["embedding"].to(w.device), release
    exact = class_embedding(private.images, private.labels, w, private.num_classes)
    noisy = release.privatize(exact)
    if stages is not None:
        stages.save(RELEASE_STAGE, {"embedding": noisy.cpu(), "noise_multiplier": release.noise_multiplier})
    return noisy, release


def build_generator(shape: tuple[int, int, int], num_classes: int, cfg: DPMERFConfig,
                    seed: int | None = None) -> ConditionalGenerator:
    """The generator, initialised from ``seed``'s init stream (global RNG untouched)."""
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(int(seeded(seed, "init").initial_seed()))
        return ConditionalGenerator(shape, num_classes, cfg.latent_dim, cfg.hidden, cfg.g_width,
                                    cfg.kernel_size, cfg.batch_norm)


def _balanced_labels(n: int, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """n labels with ⌊n/K⌋ or ⌈n/K⌉ of each class, shuffled: uniform class proportions as in the
    reference (which draws them i.i.d. uniform), with less variance in each step's embedding."""
    return (torch.arange(n) % num_classes)[torch.randperm(n, generator=generator)]


def train_generator(net: ConditionalGenerator, target: torch.Tensor, w: torch.Tensor,
                    cfg: DPMERFConfig, seed: int, device: torch.device,
                    ctx: FitContext | None = None, stages: StageCheckpoints | None = None,
                    preempt: Preemption | None = None) -> list[float]:
    """Adam on ‖μ̃ − (1/B) Σ φ(G(z, y)) ⊗ onehot(y)‖² with uniform labels: post-processing of μ̃.

    Returns the loss every 100 steps and at the last one. With ``stages`` the loop's
    whole state (weights, Adam, LR schedule, the latent generator, the step) is saved
    every ``stages.every`` steps and a saved one of the same plan is continued; after
    a preemption signal (``preempt``) the state is saved and FitInterrupted raised.
    """
    net.to(device).train()
    w, target = w.to(device), target.to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_decay_every, gamma=cfg.lr_decay)
    latents = seeded(seed, "latents")
    k = net.num_classes
    losses: list[float] = []
    loop = _LoopState(net, opt, sched, latents, losses, stages)
    for step in range(loop.resume(), cfg.steps):
        loop.checkpoint_if_due(step, cfg.steps, preempt)
        y = _balanced_labels(cfg.batch_size, k, latents)
        z = torch.randn(cfg.batch_size, net.latent_dim, generator=latents)
        fake = net(z.to(device), y.to(device)).flatten(1)
        loss = (target - embedding_of(rff(fake, w), y.to(device), k)).pow(2).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == cfg.steps - 1:
            losses.append(float(loss.detach()))
            if ctx is not None and ctx.progress is not None:
                ctx.progress(step + 1, cfg.steps, {"loss": losses[-1]})
    return losses


def train_dp_merf(private: ImageSet, budget: PrivacyBudget, ctx: FitContext,
                  cfg: DPMERFConfig) -> TrainResult:
    """Release μ̃ once, then fit the generator to it; the release's ledger is the model's."""
    device = device_of(ctx)
    shape = tuple(private.shape)
    sigma_rff = bandwidth(cfg, shape)  # type: ignore[arg-type]
    start, cpu_start = time.perf_counter(), time.process_time()
    w = rff_frequencies(math.prod(shape), cfg.features, sigma_rff, seeded(ctx.seed, "frequencies"))
    stages = StageCheckpoints(ctx.checkpoint_dir, _plan_key(private, budget, ctx, cfg),
                              ctx.checkpoint_every) if ctx.checkpoint_dir is not None else None
    target, release = release_embedding(private, budget, ctx, cfg, w.to(device), stages)
    net = build_generator(shape, private.num_classes, cfg, ctx.seed)  # type: ignore[arg-type]
    if stages is not None and RELEASE_STAGE not in stages.reused:
        # a loop saved after another draw of μ̃ (its file lost) was fitted to that draw: mixing
        # two releases in one model would be two spends, so it starts over
        stages.path(LOOP_STAGE).unlink(missing_ok=True)
    with preemption(stages is not None) as preempt:
        losses = train_generator(net, target, w, cfg, ctx.seed, device, ctx, stages, preempt)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    info = {
        "seconds": round(seconds, 3),
        # this process's CPU time: comparable across runs on a shared machine, unlike wall time
        "cpu_seconds": round(cpu_seconds, 3),
        "features": cfg.features,
        "rff_sigma": sigma_rff,
        "generator_steps": cfg.steps,
        "noise_multiplier": release.noise_multiplier,
        "sensitivity": release.sensitivity,
        "noise_std": release.noise_std,
        "num_private": len(private),
        "embedding_norm": float(target.norm()),
        "final_loss": losses[-1],
        "device": str(device),
    }
    if stages is not None:
        info["release_reused"] = RELEASE_STAGE in stages.reused  # read back, not drawn again
        if stages.resumed_from is not None:
            info["resumed_from_step"] = stages.resumed_from
    return TrainResult(generator=net.cpu().eval(), ledger=release.ledger, info=info)
