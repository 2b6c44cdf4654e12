"""DP-GAN as a :class:`~ppds_core.privacy.engine.DPSGDModule`: who steps, when, against what.

The discriminator is the engine's private module: each Poisson batch gives
one DP-SGD step on per-row hinge losses of [real; fake]. Every ``d_updates``
private steps the generator takes one *public* step against ``mirror``, a
plain copy of the discriminator refreshed from its current weights, so the
generator's backward pass never runs through the private module's per-sample
machinery. Using released weights is post-processing and costs no privacy;
privacy (sampling, clipping, noise, accounting) is entirely the engine's.
"""

from __future__ import annotations

import copy

import torch
from ppds_plugins.common.ema import EMA
from ppds_plugins.common.pixels import to_signed
from torch import nn

from ppds_core.privacy.engine import DPSGDModule

from ._config import DPGANConfig
from ._losses import d_loss_per_row, fake_labels, g_loss
from ._nets import ConditionalGenerator

__all__ = ["DPGANModule"]


class DPGANModule(DPSGDModule):
    """Generator, private discriminator, its non-private mirror and the generator EMA."""

    def __init__(self, generator: ConditionalGenerator, discriminator: nn.Module, cfg: DPGANConfig):
        super().__init__()
        self.cfg = cfg
        self.generator = generator
        self.discriminator = discriminator
        self.mirror = copy.deepcopy(discriminator).requires_grad_(False)
        # a submodule: Lightning moves and checkpoints it with the rest; never optimised
        self.ema = EMA(generator, cfg.ema)
        self.fake_batch_size = cfg.fake_batch_size or cfg.batch_size
        self.g_steps = 0
        self.last_g_loss = float("nan")

    # -- the engine's hooks ---------------------------------------------------------------

    def private_module(self) -> nn.Module:
        return self.discriminator

    def configure_private_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.discriminator.parameters(), lr=self.cfg.lr, betas=self.cfg.betas)

    def configure_public_optimizers(self) -> list[torch.optim.Optimizer]:
        g_lr = self.cfg.g_lr if self.cfg.g_lr is not None else self.cfg.lr
        return [torch.optim.Adam(self.generator.parameters(), lr=g_lr, betas=self.cfg.betas)]

    # -- checkpoints (FitContext.checkpoint_dir): what is not a tensor of a submodule -------

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["ppds_dp_gan"] = {"g_steps": self.g_steps, "last_g_loss": self.last_g_loss}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        saved = checkpoint.get("ppds_dp_gan", {})
        self.g_steps = int(saved.get("g_steps", self.g_steps))
        self.last_g_loss = float(saved.get("last_g_loss", self.last_g_loss))

    # -- one Poisson batch ----------------------------------------------------------------

    def _latents(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Noise and uniform labels from the global RNG, which the engine seeds per rank."""
        z = torch.randn(n, self.generator.latent_dim, device=self.device)
        return z, fake_labels(n, self.generator.num_classes, self.device)

    def discriminator_losses(self, real: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per-row hinge losses on [real; fakes] from ONE forward pass.

        Every row is its own example for clipping: a private image touches only
        its own row, so the sensitivity is one clipped gradient (fakes are
        detached public data and are clipped like the rest), as in the
        reference implementation's concatenated batch.
        """
        z, fy = self._latents(self.fake_batch_size)
        with torch.no_grad():
            fake = self.generator(z, fy)
        scores = self.discriminator(torch.cat([real, fake]), torch.cat([labels, fy]))
        n_real = real.shape[0]
        return d_loss_per_row(self.cfg.loss, scores[:n_real], scores[n_real:])

    def generator_loss(self) -> torch.Tensor:
        """Hinge loss of fresh fakes under the mirror, refreshed from the current discriminator."""
        self.mirror.load_state_dict(self.discriminator.state_dict())
        z, fy = self._latents(self.fake_batch_size)
        return g_loss(self.cfg.loss, self.mirror(self.generator(z, fy), fy))

    def training_step(self, batch, batch_idx):
        real, labels = batch
        losses = self.discriminator_losses(to_signed(real), labels)
        self.private_step(losses)
        if self.dp.steps_done % self.cfg.d_updates == 0:
            g_optimizer = self.optimizers()[1].optimizer
            loss = self.generator_loss()
            self.public_step(g_optimizer, loss)
            self.ema.update(self.generator)
            self.g_steps += 1
            self.last_g_loss = float(loss.detach())
        return None
