"""Build the networks and hand the discriminator to the core's DP-SGD engine.

Nothing here touches privacy: Poisson sampling, clipping, noise calibration,
accounting and the ledger all come from :func:`ppds_core.privacy.engine.fit_private`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from ppds_core import FitContext, ImageSet, Ledger, PrivacyBudget
from ppds_core.privacy.engine import DPSGDPlan, fit_private

from ._config import DPGANConfig
from ._module import DPGANModule
from ._nets import ConditionalGenerator, ProjectionDiscriminator, auto_width, net_shape

__all__ = ["TrainResult", "build_module", "dp_sgd_recipe", "make_plan", "train_dp_gan"]


@dataclass
class TrainResult:
    """The EMA generator (on CPU, eval mode), the engine's ledger and run facts."""

    generator: ConditionalGenerator
    ledger: Ledger
    info: dict[str, Any]


def build_module(shape: tuple[int, int, int], num_classes: int, cfg: DPGANConfig,
                 seed: int) -> DPGANModule:
    """Both networks, initialised deterministically from ``seed``."""
    ns = net_shape(*shape)
    torch.manual_seed(seed)
    generator = ConditionalGenerator(ns, num_classes, cfg.latent_dim, cfg.g_width or auto_width(ns),
                                     cfg.g_norm)
    discriminator = ProjectionDiscriminator(ns, num_classes, cfg.d_width or auto_width(ns), cfg.d_norm)
    return DPGANModule(generator, discriminator, cfg)


def make_plan(budget: PrivacyBudget, cfg: DPGANConfig) -> DPSGDPlan:
    """The engine's plan for the discriminator: epochs of Poisson batches of real images."""
    return DPSGDPlan(
        budget=budget,
        batch_size=cfg.batch_size,
        epochs=cfg.epochs,
        max_grad_norm=cfg.max_grad_norm,
        accountant=cfg.accountant,
        grad_sample_mode=cfg.grad_sample_mode,
    )


def dp_sgd_recipe(private: ImageSet, budget: PrivacyBudget, ctx: FitContext,
                  cfg: DPGANConfig) -> tuple[DPGANModule, DPSGDPlan]:
    """The untrained module and the plan ``train_dp_gan`` hands the engine (dpsgd-audit
    trains the same pair with canaries; one function, so the two cannot drift)."""
    return build_module(private.shape, private.num_classes, cfg, ctx.seed), make_plan(budget, cfg)


def train_dp_gan(private: ImageSet, budget: PrivacyBudget, ctx: FitContext,
                 cfg: DPGANConfig) -> TrainResult:
    """Train DP-GAN on ``private`` under ``budget``; the engine returns the ledger."""
    module, plan = dp_sgd_recipe(private, budget, ctx, cfg)
    start, cpu_start = time.perf_counter(), time.process_time()
    # a checkpoint in ctx.checkpoint_dir is resumed only under the same config (and plan)
    ledger = fit_private(module, private, plan, ctx, resume_key=("dp-gan", cfg))
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    generator = module.ema.model.cpu().eval()
    schedule = module.dp.schedule
    info = {
        "seconds": round(seconds, 3),
        # this process's CPU time: comparable across runs on a shared machine, unlike wall time
        "cpu_seconds": round(cpu_seconds, 3),
        "discriminator_steps": module.dp.steps_done,
        "generator_steps": module.g_steps,
        "noise_multiplier": schedule.noise_multiplier,
        "sample_rate": schedule.sample_rate,
        "num_private": len(private),
        "grad_sample_mode": module.dp.grad_sample_mode,  # the plan's, with auto resolved
    }
    if module.dp.resumed_from is not None:
        info["resumed_from_step"] = module.dp.resumed_from
    return TrainResult(generator=generator, ledger=ledger, info=info)
