"""Pairwise metrics ``mse``, ``psnr``, ``ssim``, ``lpips`` as matrix metrics: nearest-neighbour memorisation.

These metrics compare *pairs* of images; the reconstruction attack uses them
per (target, reconstruction) pair through
:func:`ppds_plugins.common.pairwise.pairwise_scores`.
A generator cell has no pairs, so in the matrix each one answers a privacy
question instead: *how close does the synthetic set come to the images it
was trained on?* For up to ``max_private`` private images, the score against
the most similar of up to ``max_synthetic`` synthetic samples is averaged
(measurement ``<metric>-nn-private``). The same is computed for as many
holdout images (``extra.holdout_reference``): real images the generator never
saw. A private value clearly closer than the holdout reference means the
samples sit nearer their training images than generalisation explains —
memorisation. ``extra.exact_copies`` counts private images with a pixel-exact
copy (MSE < 1e-10) in the samples.

``higher_is_better`` reads as privacy: farther from the training images is
better (True for the distances MSE and LPIPS, False for the similarities
PSNR and SSIM). Read it beside the holdout reference: pure noise is far from
everything.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from ppds_plugins.common.pairwise import PSNR_CAP_DB, lpips_name, nearest_scores
from ppds_plugins.common.subsample import subsample
from pydantic import Field

from ppds_core import (
    EvalContext,
    Measurement,
    Metric,
    PluginConfig,
    SkipMeasurement,
    hookimpl,
)

__all__ = ["Lpips", "Ssim", "Psnr", "Mse", "register_plugins"]

#: MSE below this counts as an exact copy
EXACT_COPY_MSE = 1e-10


class _NearestOptions(PluginConfig):
    max_private: int = Field(200, ge=1, description="private (and holdout) images scored")
    max_synthetic: int = Field(
        1000, ge=1, description="synthetic samples searched for each one's nearest"
    )


class _NearestNeighbourMetric(Metric):
    """Shared evaluate: nearest-synthetic score of private vs holdout images."""

    metric: ClassVar[str]

    def _measurement_base(self) -> str:
        return self.metric

    def _nearest(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return nearest_scores(queries, keys, self.metric)

    def evaluate(self, ctx: EvalContext) -> list[Measurement]:
        cfg = self.config
        private, holdout, synthetic = ctx.splits.private, ctx.splits.holdout, ctx.synthetic
        if len(synthetic) == 0 or len(private) == 0:
            raise SkipMeasurement(f"{self.name}: needs synthetic and private images")
        if synthetic.shape != private.shape:
            raise SkipMeasurement(
                f"{self.name}: synthetic images are {synthetic.shape} (C×H×W) but the private "
                f"images are {private.shape}; pixel-wise comparison needs equal shapes"
            )
        keys = subsample(synthetic, cfg.max_synthetic, ctx.seed).images
        queries = subsample(private, cfg.max_private, ctx.seed).images
        scores = self._nearest(queries, keys)
        copies = int((nearest_scores(queries, keys, "mse") < EXACT_COPY_MSE).sum())
        extra: dict[str, Any] = {
            "n_private": len(queries),
            "n_synthetic": len(keys),
            "exact_copies": copies,
            "aggregate": "mean over private images of the score against the nearest synthetic sample",
        }
        if len(holdout):
            ref_queries = subsample(holdout, min(cfg.max_private, len(queries)), ctx.seed).images
            extra["holdout_reference"] = float(
                self._finite(self._nearest(ref_queries, keys)).mean()
            )
        value = float(self._finite(scores).mean())
        return [
            Measurement(
                f"{self._measurement_base()}-nn-private", value, self.higher_is_better, extra
            )
        ]

    @staticmethod
    def _finite(scores: torch.Tensor) -> torch.Tensor:
        return scores.clamp(max=PSNR_CAP_DB)


class Mse(_NearestNeighbourMetric):
    """Nearest-neighbour pixel MSE from private images to the samples (memorisation; see module doc)."""

    name: ClassVar[str] = "mse"
    metric: ClassVar[str] = "mse"
    higher_is_better: ClassVar[bool | None] = True
    Config = _NearestOptions


class Psnr(_NearestNeighbourMetric):
    """Nearest-neighbour PSNR (dB, exact copies capped at 100 dB) from private images to the samples."""

    name: ClassVar[str] = "psnr"
    metric: ClassVar[str] = "psnr"
    higher_is_better: ClassVar[bool | None] = False
    Config = _NearestOptions


class Ssim(_NearestNeighbourMetric):
    """Nearest-neighbour SSIM from private images to the samples (exact, all pairs: keep caps small)."""

    name: ClassVar[str] = "ssim"
    metric: ClassVar[str] = "ssim"
    higher_is_better: ClassVar[bool | None] = False

    class Config(_NearestOptions):
        max_private: int = Field(100, ge=1, description="private (and holdout) images scored")
        max_synthetic: int = Field(
            500, ge=1, description="synthetic samples searched for each one's nearest"
        )


class Lpips(_NearestNeighbourMetric):
    """Nearest-neighbour LPIPS from private images to the samples (AlexNet or VGG backbone).

    Skipped, naming the file, when torchvision's ImageNet backbone checkpoint
    is not on this machine; ``backbone_weights: random`` runs with a random
    backbone and reports ``lpips-randombackbone-nn-private``.
    """

    name: ClassVar[str] = "lpips"
    metric: ClassVar[str] = "lpips"
    higher_is_better: ClassVar[bool | None] = True

    class Config(_NearestOptions):
        net: Literal["alex", "vgg"] = Field("alex", description="LPIPS backbone")
        backbone_weights: str | None = Field(
            None,
            description="torchvision checkpoint file (else $PPDS_LPIPS_BACKBONE, else the torch hub cache); "
            "'random' = untrained backbone, reported under another name",
        )
        download: bool = Field(
            False, description="allow downloading the backbone into the torch hub cache"
        )

    def _measurement_base(self) -> str:
        return lpips_name(self.config.net, self.config.backbone_weights)

    def _nearest(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        return nearest_scores(
            queries,
            keys,
            "lpips",
            lpips_net=cfg.net,
            backbone_weights=cfg.backbone_weights,
            download=cfg.download,
        )


@hookimpl
def register_plugins(register) -> None:
    register(Lpips)
    register(Ssim)
    register(Psnr)
    register(Mse)
