"""The ``fid`` metric: Fréchet Inception Distance with the standard 2015 Inception weights.

``fid`` is the standard number (torchmetrics + the 2015 Inception weights)
or nothing: skipped, with instructions, when the weights file is not on this
machine. Its offline substitute is ``fd-domain`` (:mod:`.fd_domain`);
realism and coverage separately are ``precision-recall``
(:mod:`.precision_recall`). All compare the synthetic set with the
*holdout* split by default: real data the generator never saw, so copying
training images is not rewarded.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from ppds_plugins.common.devices import device_of
from ppds_plugins.common.subsample import subsample
from pydantic import Field

from ppds_core import EvalContext, ImageSet, Measurement, Metric, PluginConfig, hookimpl

from ._fid_core import fid_against, fid_metric
from ._inception import find_inception_weights, inception_extractor, weights_id
from ._inputs import check_enough
from ._reference_cache import reference_key

__all__ = ["Fid", "register_plugins"]


def _reference_set(ctx: EvalContext, which: str) -> ImageSet:
    return ctx.splits.holdout if which == "holdout" else ctx.splits.test


class Fid(Metric):
    """Fréchet Inception Distance with the standard 2015 Inception weights (lower is better).

    Skipped, with instructions, when the weights file is not on this machine:
    a number from any other network would not be FID.
    """

    name: ClassVar[str] = "fid"
    higher_is_better: ClassVar[bool | None] = False

    class Config(PluginConfig):
        weights: str | None = Field(
            None,
            description="local Inception weights file (else $PPDS_FID_WEIGHTS, else the torch hub cache)",
        )
        download: bool = Field(
            False, description="allow downloading the weights into the torch hub cache"
        )
        reference: Literal["holdout", "test"] = Field(
            "holdout", description="real split the samples are compared with"
        )
        max_samples: int | None = Field(
            None, ge=2, description="cap on images per side (None: all)"
        )
        batch_size: int = Field(64, ge=1)
        antialias: bool = Field(
            True,
            description="torchmetrics' resize to 299 px; same as plain bilinear when upsampling",
        )

    def __init__(self, config=None, **options: Any):
        super().__init__(config, **options)
        self._extractor: torch.nn.Module | None = None
        self._extractor_label = ""

    def with_extractor(self, extractor: torch.nn.Module, label: str) -> Fid:
        """Use another feature network (tests): the result is then named ``fd-<label>``, not ``fid``."""
        if not label or label == "inception":
            raise ValueError("a substitute extractor needs its own label, e.g. 'randomconv'")
        self._extractor, self._extractor_label = extractor, label
        return self

    def evaluate(self, ctx: EvalContext) -> list[Measurement]:
        cfg = self.config
        check_enough(ctx.synthetic, "fid")
        real = subsample(_reference_set(ctx, cfg.reference), cfg.max_samples, 0)
        fake = subsample(ctx.synthetic, cfg.max_samples, ctx.seed)
        if self._extractor is not None:
            metric = fid_metric(self._extractor, real.images, batch_size=cfg.batch_size)
            name, source = f"fd-{self._extractor_label}", self._extractor_label
        else:
            weights = find_inception_weights(cfg.weights, cfg.download)
            extractor = inception_extractor(weights, cfg.antialias)
            extractor.num_features = 2048  # spares torchmetrics a 299-px probe forward
            key = reference_key(
                real=real.fingerprint(), weights=weights_id(weights), antialias=cfg.antialias
            )
            metric = fid_metric(
                extractor,
                real.images,
                key=key,
                cache_dir=ctx.cache_dir,
                batch_size=cfg.batch_size,
                device=device_of(ctx),
            )
            name, source = "fid", weights.name
        value = fid_against(metric, fake.images, cfg.batch_size)
        extra = {
            "reference": cfg.reference,
            "n_real": len(real),
            "n_synthetic": len(fake),
            "features": source,
        }
        return [Measurement(name, value, self.higher_is_better, extra)]


@hookimpl
def register_plugins(register) -> None:
    register(Fid)
