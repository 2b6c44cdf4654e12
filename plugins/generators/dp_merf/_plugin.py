"""The ``dp-merf`` generator plugin: fit under a budget, sample, save and load."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from ppds_plugins.common.artifacts import GRID_FILE, load_state, open_artifacts, write_artifacts
from ppds_plugins.common.grid import write_class_grid
from ppds_plugins.common.labels import sample_labels

from ppds_core import FitContext, Generator, ImageSet, Ledger, PrivacyBudget
from ppds_core.errors import ConfigError

from ._config import DPMERFConfig
from ._nets import ConditionalGenerator
from ._train import build_generator, train_dp_merf

__all__ = ["DPMERF"]

_WEIGHTS = "generator.pt"
#: images per forward pass when sampling (bounds memory, not results)
_SAMPLE_CHUNK = 1024


class DPMERF(Generator):
    """DP-MERF (Harder, Adamczewski & Park 2021): a conditional generator fitted to a
    class-conditional random-Fourier-feature mean embedding released once with the
    Gaussian mechanism (sensitivity 2/N).

    No DP-SGD: the release is the only privacy spend (``gaussian_release`` calibrates σ,
    draws the noise and writes the ledger); training the generator on it is
    post-processing. Samples are class-balanced unless labels are given.
    """

    name: ClassVar[str] = "dp-merf"
    Config: ClassVar[type[DPMERFConfig]] = DPMERFConfig
    trains_with_dp_sgd: ClassVar[bool] = False
    class_conditional: ClassVar[bool] = True
    description: ClassVar[str] = (
        "Generator matched to one noisy class-conditional random-Fourier-feature mean "
        "embedding (Gaussian release, Δ = 2/N); no DP-SGD (DPImageBench DP-MERF)."
    )

    def __init__(self, config=None, **options):
        super().__init__(config, **options)
        self.net: ConditionalGenerator | None = None
        self.class_names: list[str] = []
        self.image_shape: tuple[int, int, int] | None = None
        self.train_info: dict[str, Any] = {}

    @classmethod
    def smoke_config(cls, config: DPMERFConfig) -> DPMERFConfig:
        """A few generator steps on few features and a narrow generator."""
        return config.model_copy(update={
            "features": min(config.features, 256),
            "steps": min(config.steps, 10),
            "batch_size": min(config.batch_size, 64),
            "hidden": min(config.hidden, 32),
            "g_width": min(config.g_width, 8),
        })

    # ------------------------------------------------------------------ training

    def fit(self, private: ImageSet, budget: PrivacyBudget, ctx: FitContext) -> Ledger:
        if len(private) == 0:
            raise ConfigError("dp-merf: the private set is empty; give the dataset a private split")
        result = train_dp_merf(private, budget, ctx, self.config)
        self.net = result.generator
        self.class_names = list(private.class_names)
        self.image_shape = tuple(private.shape)  # type: ignore[assignment]
        self.train_info = result.info
        self.ledger = result.ledger
        return self.ledger

    # ------------------------------------------------------------------ sampling

    def _require_fitted(self) -> ConditionalGenerator:
        if self.net is None:
            raise RuntimeError("dp-merf: fit() or load() the model before sampling or saving")
        return self.net

    def sample(self, n: int, *, seed: int = 0, labels=None) -> ImageSet:
        """``n`` images; labels cycle through the classes unless given."""
        net = self._require_fitted()
        y = sample_labels("dp-merf", n, len(self.class_names), labels)
        z = torch.randn(n, net.latent_dim, generator=torch.Generator().manual_seed(int(seed)))
        net.eval()
        chunks = []
        with torch.no_grad():
            for start in range(0, n, _SAMPLE_CHUNK):
                sl = slice(start, start + _SAMPLE_CHUNK)
                chunks.append(net(z[sl], y[sl]).clamp(0, 1))
        c, h, w = self.image_shape or (0, 0, 0)
        images = torch.cat(chunks) if chunks else torch.zeros(0, c, h, w)
        return ImageSet(images.float(), y, self.class_names, name=f"{self.name}-samples")

    # ------------------------------------------------------------------ persistence

    def save(self, directory: Path) -> None:
        """Generator weights (with BatchNorm statistics), config, class names, shape, ledger, grid."""
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
    def load(cls, directory: Path) -> DPMERF:
        model, _ = open_artifacts(cls, directory, [_WEIGHTS])
        net = build_generator(model.image_shape, len(model.class_names), model.config)
        net.load_state_dict(load_state(Path(directory) / _WEIGHTS, "dp-merf weights"))
        model.net = net.eval()
        return model
