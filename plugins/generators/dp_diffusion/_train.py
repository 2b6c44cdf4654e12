"""DP fine-tuning / training of the UNet through the core's DP-SGD engine.

The engine clips per example and adds noise; this module only supplies the
per-example loss (the K-mean of :class:`NoiseMultiplicityDDPMLoss`) and tells
the engine that the UNet sees K rows per example
(``private_step(losses, rows_per_example=K)``), so the engine sums each
example's K row gradients before clipping. Without that each copy would be
clipped to C and one example could move the model by K·C; the engine refuses
a row count that does not match.
"""

from __future__ import annotations

from typing import Any

import torch
from ppds_plugins.common.diffusion.config import DiffusionConfig
from ppds_plugins.common.diffusion.objective import NoiseMultiplicityDDPMLoss
from ppds_plugins.common.ema import EMA
from torch import nn

from ppds_core import FitContext, Ledger, PrivacyBudget
from ppds_core.privacy.engine import DPSGDModule, DPSGDPlan, fit_private
from ppds_core.privacy.ledger import GaussianSpend

__all__ = ["DiffusionDPModule", "make_module", "make_plan", "train_private"]


class DiffusionDPModule(DPSGDModule):
    """LightningModule: one private step per Poisson batch, then an EMA update."""

    def __init__(self, objective: NoiseMultiplicityDDPMLoss, cfg: DiffusionConfig):
        super().__init__()
        self.objective = objective
        self.cfg = cfg
        self.ema = EMA(objective.unet, cfg.ema_decay)  # a submodule: moved and checkpointed, never optimised

    @property
    def rows_per_example(self) -> int:
        """K rows of the UNet per example (what ``training_step`` tells ``private_step``)."""
        return self.objective.multiplicity

    def private_module(self) -> nn.Module:
        return self.objective

    def configure_private_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.objective.parameters(), lr=self.cfg.lr,
                                weight_decay=self.cfg.weight_decay)

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.private_step_in_chunks((x, y), self.objective, rows_per_example=self.rows_per_example)
        self.ema.update(self.objective.unet)


def make_module(objective: NoiseMultiplicityDDPMLoss, cfg: DiffusionConfig) -> DiffusionDPModule:
    """The engine's module around ``objective`` (also the recipe dpsgd-audit trains)."""
    objective.generator = None  # the engine seeds the global RNG per run and rank
    return DiffusionDPModule(objective, cfg)


def make_plan(budget: PrivacyBudget, cfg: DiffusionConfig,
              other_spends: tuple[GaussianSpend, ...] = ()) -> DPSGDPlan:
    """The engine's plan for the UNet: Poisson batches, K rows each, physical slices."""
    return DPSGDPlan(
        budget=budget, batch_size=cfg.batch_size,
        epochs=None if cfg.steps is not None else cfg.epochs, steps=cfg.steps,
        max_grad_norm=cfg.max_grad_norm, grad_sample_mode=cfg.grad_sample_mode,
        other_spends=tuple(other_spends), max_physical_batch_size=cfg.max_physical_batch_size,
    )


def train_private(objective: NoiseMultiplicityDDPMLoss, data: torch.utils.data.Dataset,
                  num_examples: int, budget: PrivacyBudget, ctx: FitContext, cfg: DiffusionConfig,
                  other_spends: tuple[GaussianSpend, ...] = (), resume_key: Any = None,
                  ) -> tuple[Ledger, nn.Module, Any]:
    """Train ``objective.unet`` with DP-SGD; returns (ledger, EMA UNet, the run's ``module.dp``).

    ``resume_key``: what a checkpoint in ``ctx.checkpoint_dir`` must also agree on to be
    resumed (the generator's config, its earlier releases)."""
    module = make_module(objective, cfg)
    ledger = fit_private(module, data, make_plan(budget, cfg, other_spends), ctx, resume_key=resume_key)
    ema = module.ema.model.cpu().eval()
    return ledger, ema, module.dp

