"""The diffusion generator: fit under a budget, sample (DPM-Solver++ or DDIM), save and load.

:class:`DiffusionGenerator` is the whole of ``dp-diffusion``; ``privimage``
subclasses it and overrides only :meth:`DiffusionGenerator._prepare` (semantic
query, selection, pretraining), so both share one network, objective, DP-SGD
step, sampler and file format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from diffusers import UNet2DModel
from ppds_plugins.common.artifacts import GRID_FILE, open_artifacts, write_artifacts
from ppds_plugins.common.devices import default_device, device_of
from ppds_plugins.common.diffusion.config import DiffusionConfig
from ppds_plugins.common.diffusion.objective import NoiseMultiplicityDDPMLoss, make_train_scheduler
from ppds_plugins.common.diffusion.sampling import balanced_labels, sample_images
from ppds_plugins.common.diffusion.unet import (
    build_unet,
    from_model_space,
    model_side,
    to_model_space,
)
from ppds_plugins.common.grid import write_class_grid

from ppds_core import ConfigError, FitContext, Generator, ImageSet, Ledger, PrivacyBudget
from ppds_core.privacy.ledger import GaussianSpend

from ._train import make_module, make_plan, train_private

__all__ = ["DiffusionGenerator"]

_UNET_DIR = "unet"


class DiffusionGenerator(Generator):
    """DPDM-style class-conditional DDPM trained with DP-SGD and noise multiplicity.

    A diffusers ``UNet2DModel`` (GroupNorm, no BatchNorm) learns ε-prediction;
    each private example is noised K times and its K losses averaged before
    per-example clipping; sampling uses the EMA weights and DPM-Solver++ (or DDIM), optionally
    with classifier-free guidance.
    """

    name: ClassVar[str] = "dp-diffusion"
    Config: ClassVar[type[DiffusionConfig]] = DiffusionConfig
    trains_with_dp_sgd: ClassVar[bool] = True
    description: ClassVar[str] = (
        "DPDM-style class-conditional diffusion model (diffusers UNet, DDPM objective with "
        "noise multiplicity K, EMA, DPM-Solver++ or DDIM sampling, optional classifier-free guidance) "
        "trained with DP-SGD."
    )

    def __init__(self, config=None, **options):
        super().__init__(config, **options)
        self.unet: UNet2DModel | None = None
        self.class_names: list[str] = []
        self.image_shape: tuple[int, int, int] | None = None
        self.side: int = 0
        self.train_info: dict[str, Any] = {}
        #: where ``sample`` runs by default: the fit's device (CPU for a loaded model)
        self.device: torch.device = default_device()
        #: what ``_prepare`` released (PrivImage: its noisy query), for the DP-SGD checkpoint's key
        self._resume_key: str | None = None

    @classmethod
    def smoke_config(cls, config: DiffusionConfig) -> DiffusionConfig:
        """Two DP-SGD steps of a narrow UNet, five sampler steps."""
        return config.model_copy(update={
            "steps": 2, "batch_size": min(config.batch_size, 32),
            "noise_multiplicity": min(config.noise_multiplicity, 2),
            "block_out_channels": [8, 8], "norm_num_groups": 8, "layers_per_block": 1,
            "attention": False, "sample_steps": min(config.sample_steps, 5),
        })

    # ------------------------------------------------------------------ training

    def _prepare(self, objective: NoiseMultiplicityDDPMLoss, private: ImageSet,
                 budget: PrivacyBudget, ctx: FitContext) -> tuple[GaussianSpend, ...]:
        """Work before DP-SGD (PrivImage: query, selection, pretraining); returns its spends."""
        return ()

    def fit(self, private: ImageSet, budget: PrivacyBudget, ctx: FitContext) -> Ledger:
        cfg = self.config
        if len(private) == 0:
            raise ConfigError(f"{self.name}: the private set is empty; give the dataset a private split")
        c, h, w = private.shape
        if h != w and cfg.image_size is None:
            raise ConfigError(f"{self.name}.config.image_size: the images are {h}×{w}, not square; "
                              "set image_size to train on square resized images")
        native = cfg.image_size or h
        self.side = model_side(native, len(cfg.block_out_channels))
        self.class_names = list(private.class_names)
        self.image_shape = (c, native, native)
        objective = self._objective(private, ctx)
        other = self._prepare(objective, private, budget, ctx)
        data = torch.utils.data.TensorDataset(to_model_space(private.images, self.side, cfg.image_size),
                                              private.labels)
        ledger, ema, run = train_private(objective, data, len(private), budget, ctx, cfg, other,
                                         resume_key=(self.name, cfg, self._resume_key))
        self.unet = ema
        self.ledger = ledger
        self.device = device_of(ctx)
        self.train_info.update({"dp_sgd_steps": run.steps_done, "model_side": self.side,
                                "grad_sample_mode": run.grad_sample_mode,
                                "parameters": sum(p.numel() for p in ema.parameters())})
        if run.resumed_from is not None:
            self.train_info["resumed_from_step"] = run.resumed_from
        return ledger

    def _objective(self, private: ImageSet, ctx: FitContext) -> NoiseMultiplicityDDPMLoss:
        """The untrained UNet inside its DDPM loss, initialised from ``ctx.seed``."""
        cfg = self.config
        c, h, _ = private.shape
        side = model_side(cfg.image_size or h, len(cfg.block_out_channels))
        torch.manual_seed(int(ctx.seed))  # same initialisation for the same seed
        unet = build_unet(cfg, c, side, private.num_classes)
        return NoiseMultiplicityDDPMLoss(
            unet, make_train_scheduler(cfg.num_train_timesteps, cfg.beta_schedule),
            cfg.noise_multiplicity, null_class=private.num_classes, label_dropout=cfg.label_dropout)

    def dp_sgd_recipe(self, private: ImageSet, budget: PrivacyBudget, ctx: FitContext):
        """The untrained module and plan of ``fit``'s DP-SGD run (for dpsgd-audit).

        Without ``_prepare`` (PrivImage's query and pretraining): the audit measures the
        DP-SGD step, whose canaries do not depend on the weights, and the query's spend
        is its own mechanism on the ledger.
        """
        return make_module(self._objective(private, ctx), self.config), make_plan(budget, self.config)

    # ------------------------------------------------------------------ sampling

    def sample(self, n: int, *, seed: int = 0, labels=None, device: str | torch.device | None = None
               ) -> ImageSet:
        """``n`` images from the EMA UNet (the configured sampler); class-balanced unless ``labels`` given."""
        if self.unet is None or self.image_shape is None:
            raise RuntimeError(f"{self.name}: fit() or load() the model before sampling or saving")
        k = len(self.class_names)
        if labels is None:
            y = balanced_labels(n, k)
        else:
            y = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
            if y.numel() != n:
                raise ConfigError(f"{self.name}.sample: asked for {n} images but got {y.numel()} labels")
            if y.numel() and (y.min() < 0 or y.max() >= k):
                raise ConfigError(f"{self.name}.sample: labels must lie in [0, {k}) for {k} classes")
        cfg = self.config
        dev = torch.device(device) if device is not None else self.device
        unet = self.unet.to(dev)
        x = sample_images(unet, y, shape=(self.image_shape[0], self.side, self.side),
                        num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule,
                        steps=cfg.sample_steps, guidance_scale=cfg.guidance_scale, null_class=k,
                        seed=seed, device=dev, sampler=cfg.sampler)
        self.unet.cpu()
        images = from_model_space(x, self.image_shape[1])
        return ImageSet(images, y, self.class_names, name=f"{self.name}-samples")

    # ------------------------------------------------------------------ persistence

    def save(self, directory: Path) -> None:
        """EMA UNet (diffusers ``save_pretrained``), config, classes, ledger and ``samples.png``."""
        if self.unet is None:
            raise RuntimeError(f"{self.name}: fit() or load() the model before saving")
        unet = self.unet
        meta = {"class_names": self.class_names, "image_shape": list(self.image_shape or ()),
                "side": self.side, "train_info": self.train_info}
        directory = write_artifacts(directory, self, meta,
                                    lambda d: unet.save_pretrained(d / _UNET_DIR))
        grid = self.sample(8 * len(self.class_names), seed=0)
        write_class_grid(grid, directory / GRID_FILE, rows=8, scale=max(1, 48 // self.image_shape[1]))

    @classmethod
    def load(cls, directory: Path) -> DiffusionGenerator:
        model, meta = open_artifacts(cls, directory, [f"{_UNET_DIR}/config.json"])
        model.side = int(meta["side"])
        model.unet = UNet2DModel.from_pretrained(
            Path(directory) / _UNET_DIR, local_files_only=True, low_cpu_mem_usage=False).eval()
        return model
