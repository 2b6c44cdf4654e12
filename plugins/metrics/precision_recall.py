"""The ``precision-recall`` metric: k-NN manifold precision (realism) and recall (coverage).

Kynkäänniemi et al. 2019, in the domain feature space of ``fd-domain``
(offline default) or in Inception features (:mod:`.fid`'s weights).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from ppds_plugins.common.devices import device_of
from ppds_plugins.common.subsample import subsample
from pydantic import Field

from ppds_core import EvalContext, ImageSet, Measurement, Metric, PluginConfig, hookimpl

from ._domain import DomainOptions
from ._fid_core import extract_features
from ._inception import find_inception_weights, inception_extractor, weights_id
from ._inputs import check_enough, check_same_shape
from ._manifold import precision_recall
from ._reference_cache import cached_reference, reference_key

__all__ = ["PrecisionRecall", "register_plugins"]


class PrecisionRecall(Metric):
    """k-NN manifold precision (realism) and recall (coverage), Kynkäänniemi et al. 2019.

    Two measurements, both higher-is-better, named after their feature space:
    ``precision-domain`` / ``recall-domain`` (holdout classifier, offline
    default) or ``precision-inception`` / ``recall-inception``.
    """

    name: ClassVar[str] = "precision-recall"
    higher_is_better: ClassVar[bool | None] = True

    class Config(DomainOptions):
        k: int = Field(3, ge=1, description="neighbourhood size (DPImageBench uses 4)")
        features: Literal["domain", "inception"] = Field("domain", description="feature space")
        weights: str | None = Field(
            None, description="Inception weights file, for features: inception"
        )
        download: bool = Field(False, description="allow downloading the Inception weights")
        max_samples: int | None = Field(5000, ge=2, description="cap on images per side")

    @classmethod
    def smoke_config(cls, config: PluginConfig) -> PluginConfig:
        return config.model_copy(update={"epochs": 1})

    def _features(
        self, ctx: EvalContext, real: ImageSet, fake: ImageSet
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        if cfg.features == "domain":
            check_same_shape(fake, real, "precision-recall")
            space = cfg.space(ctx)
            real_feats = space.real_features
            if len(real_feats) > len(real):  # capped: the same subsample, in the cached space
                real_feats = space.features(real.images)
            return real_feats, space.features(fake.images)
        weights = find_inception_weights(cfg.weights, cfg.download)
        extractor = inception_extractor(weights)
        key = reference_key(real=real.fingerprint(), weights=weights_id(weights))
        cached = cached_reference(
            ctx.cache_dir,
            "inception-features",
            key,
            lambda: {
                "features": extract_features(extractor, real.images, device=device_of(ctx))
            },
        )
        return cached["features"], extract_features(
            extractor, fake.images, device=device_of(ctx)
        )

    def evaluate(self, ctx: EvalContext) -> list[Measurement]:
        cfg = self.config
        check_enough(ctx.synthetic, "precision-recall", cfg.k + 1)
        real = subsample(ctx.splits.holdout, cfg.max_samples, 0)
        fake = subsample(ctx.synthetic, cfg.max_samples, ctx.seed)
        real_feats, fake_feats = self._features(ctx, real, fake)
        precision, recall = precision_recall(real_feats, fake_feats, cfg.k)
        extra = {
            "k": cfg.k,
            "features": cfg.features,
            "n_real": len(real),
            "n_synthetic": len(fake),
        }
        return [
            Measurement(f"precision-{cfg.features}", precision, True, dict(extra)),
            Measurement(f"recall-{cfg.features}", recall, True, dict(extra)),
        ]


@hookimpl
def register_plugins(register) -> None:
    register(PrecisionRecall)
