"""The ``dp-gan`` generator plugin: fit under a budget, sample, save and load."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from ppds_plugins.common.artifacts import GRID_FILE, load_state, open_artifacts, write_artifacts
from ppds_plugins.common.grid import write_class_grid
from ppds_plugins.common.labels import sample_labels
from ppds_plugins.common.pixels import from_signed

from ppds_core import (
    FitContext,
    Generator,
    ImageSet,
    Ledger,
    PrivacyBudget,
)
from ppds_core.errors import ConfigError

from ._config import DPGANConfig
from ._nets import ConditionalGenerator, auto_width, net_shape
from ._train import dp_sgd_recipe, train_dp_gan

__all__ = ["DPGAN"]

_WEIGHTS = "generator_ema.pt"
#: images per forward pass when sampling (bounds memory, not results)
_SAMPLE_CHUNK = 1024


class DPGAN(Generator):
    """DP-GAN (DPImageBench): a class-conditional hinge GAN whose discriminator
    alone trains with DP-SGD.

    Every ``d_updates`` private discriminator steps the generator takes one
    step against a non-private copy of the discriminator's current weights —
    post-processing, so it costs nothing — and samples come from the
    generator's EMA.
    """

    name: ClassVar[str] = "dp-gan"
    Config: ClassVar[type[DPGANConfig]] = DPGANConfig
    trains_with_dp_sgd: ClassVar[bool] = True
    description: ClassVar[str] = (
        "Class-conditional hinge GAN; only the discriminator trains with DP-SGD, the "
        "generator steps against a non-private copy of it (DPImageBench DP-GAN)."
    )

    def __init__(self, config=None, **options):
        super().__init__(config, **options)
        self.net: ConditionalGenerator | None = None
        self.class_names: list[str] = []
        self.image_shape: tuple[int, int, int] | None = None
        self.train_info: dict[str, Any] = {}

    @classmethod
    def smoke_config(cls, config: DPGANConfig) -> DPGANConfig:
        """A few discriminator steps (and at least one generator step) on narrow nets."""
        return config.model_copy(
            update={
                "epochs": 1,
                "batch_size": min(config.batch_size, 32),
                "d_updates": min(config.d_updates, 2),
                "g_width": min(config.g_width or 8, 8),
                "d_width": min(config.d_width or 8, 8),
                "latent_dim": min(config.latent_dim, 8),
            }
        )

    # ------------------------------------------------------------------ training

    def fit(self, private: ImageSet, budget: PrivacyBudget, ctx: FitContext) -> Ledger:
        if len(private) == 0:
            raise ConfigError("dp-gan: the private set is empty; give the dataset a private split")
        try:
            net_shape(*private.shape)
        except ValueError as err:
            raise ConfigError(f"dp-gan: {err} (dataset {private.name!r})") from None
        result = train_dp_gan(private, budget, ctx, self.config)
        self.net = result.generator
        self.class_names = list(private.class_names)
        self.image_shape = tuple(private.shape)  # type: ignore[assignment]
        self.train_info = result.info
        self.ledger = result.ledger
        return self.ledger

    def dp_sgd_recipe(self, private: ImageSet, budget: PrivacyBudget, ctx: FitContext):
        """The untrained discriminator module and plan that ``fit`` trains (for dpsgd-audit)."""
        return dp_sgd_recipe(private, budget, ctx, self.config)

    # ------------------------------------------------------------------ sampling

    def _require_fitted(self) -> ConditionalGenerator:
        if self.net is None:
            raise RuntimeError("dp-gan: fit() or load() the model before sampling or saving")
        return self.net

    def sample(self, n: int, *, seed: int = 0, labels=None) -> ImageSet:
        """``n`` images from the EMA generator; labels cycle through the classes unless given."""
        net = self._require_fitted()
        y = sample_labels("dp-gan", n, len(self.class_names), labels)
        noise = torch.Generator().manual_seed(int(seed))
        z = torch.randn(n, net.latent_dim, generator=noise)
        net.eval()
        chunks = []
        with torch.no_grad():
            for start in range(0, n, _SAMPLE_CHUNK):
                sl = slice(start, start + _SAMPLE_CHUNK)
                chunks.append(from_signed(net(z[sl], y[sl])))  # tanh output → [0, 1]
        c, h, w = self.image_shape or (0, 0, 0)
        images = torch.cat(chunks) if chunks else torch.zeros(0, c, h, w)
        return ImageSet(images, y, self.class_names, name=f"{self.name}-samples")

    # ------------------------------------------------------------------ persistence

    def save(self, directory: Path) -> None:
        """Weights of the EMA generator, config, class names, shape, ledger and a sample grid."""
        net = self._require_fitted()
        meta = {
            "class_names": self.class_names,
            "image_shape": list(self.image_shape or ()),
            "train_info": self.train_info,
        }
        directory = write_artifacts(directory, self, meta,
                                    lambda d: torch.save(net.state_dict(), d / _WEIGHTS))
        rows = 10
        grid = self.sample(rows * len(self.class_names), seed=0)
        write_class_grid(grid, directory / GRID_FILE, rows=rows, scale=max(1, 64 // grid.shape[1]))

    @classmethod
    def load(cls, directory: Path) -> DPGAN:
        model, _ = open_artifacts(cls, directory, [_WEIGHTS])
        cfg = model.config
        ns = net_shape(*model.image_shape)
        net = ConditionalGenerator(ns, len(model.class_names), cfg.latent_dim, cfg.g_width or auto_width(ns),
                                   cfg.g_norm)
        net.load_state_dict(load_state(Path(directory) / _WEIGHTS, "dp-gan weights"))
        model.net = net.eval()
        return model
