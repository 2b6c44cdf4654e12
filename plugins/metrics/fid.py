"""Distribution metrics: ``fid``, ``fd-domain`` and ``precision-recall``.

``fid`` is the standard number (torchmetrics + the 2015 Inception weights)
or nothing; ``fd-domain`` is the honest offline substitute, a Fréchet
distance in the features of a classifier trained on the holdout split;
``precision-recall`` measures realism and coverage separately in either
space. All three compare the synthetic set with the *holdout* split by
default: real data the generator never saw, so copying training images is
not rewarded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field

from ppds_core import (
    EvalContext,
    ImageSet,
    Measurement,
    Metric,
    PluginConfig,
    SkipMeasurement,
    hookimpl,
)

from ._classifiers import device_for
from ._domain import DomainSpace, check_same_shape, domain_space
from ._fid_core import extract_features, fid_against, fid_metric
from ._frechet import frechet_distance, gaussian_stats
from ._inception import find_inception_weights, inception_extractor
from ._manifold import precision_recall
from ._reference_cache import cached_reference, reference_key

__all__ = ["Fid", "FdDomain", "PrecisionRecall", "register_plugins"]


def _reference_set(ctx: EvalContext, which: str) -> ImageSet:
    return ctx.splits.holdout if which == "holdout" else ctx.splits.test


def _subsample(images: ImageSet, limit: int | None, seed: int) -> ImageSet:
    if limit is None or len(images) <= limit:
        return images
    index = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:limit]
    return images.subset(index)


def _check_enough(synthetic: ImageSet, what: str, minimum: int = 2) -> None:
    if len(synthetic) < minimum:
        raise SkipMeasurement(
            f"{what} needs at least {minimum} synthetic images, got {len(synthetic)}"
        )


def _weights_id(path: Path) -> str:
    return f"{path.name}:{path.stat().st_size}"


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
        _check_enough(ctx.synthetic, "fid")
        real = _subsample(_reference_set(ctx, cfg.reference), cfg.max_samples, 0)
        fake = _subsample(ctx.synthetic, cfg.max_samples, ctx.seed)
        if self._extractor is not None:
            metric = fid_metric(self._extractor, real.images, batch_size=cfg.batch_size)
            name, source = f"fd-{self._extractor_label}", self._extractor_label
        else:
            weights = find_inception_weights(cfg.weights, cfg.download)
            extractor = inception_extractor(weights, cfg.antialias)
            extractor.num_features = 2048  # spares torchmetrics a 299-px probe forward
            key = reference_key(
                real=real.fingerprint(), weights=_weights_id(weights), antialias=cfg.antialias
            )
            metric = fid_metric(
                extractor,
                real.images,
                key=key,
                cache_dir=ctx.cache_dir,
                batch_size=cfg.batch_size,
                device=device_for(ctx.trainer),
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


class _DomainOptions(PluginConfig):
    """How the holdout classifier that defines the domain feature space is trained."""

    arch: Literal["auto", "cnn", "resnet"] = Field(
        "auto", description="classifier architecture (auto: resnet for ≥32 px RGB)"
    )
    epochs: int = Field(20, ge=1, description="training epochs (best epoch on 10% of the holdout)")
    seed: int = Field(
        0, description="fixed across matrix seeds, so every cell shares one feature space"
    )

    def space(self, ctx: EvalContext) -> DomainSpace:
        """The cell's domain feature space under these options (cached across cells)."""
        return domain_space(ctx.splits, ctx.cache_dir, arch=self.arch, epochs=self.epochs,
                            seed=self.seed, device=device_for(ctx.trainer))


class FdDomain(Metric):
    """Fréchet distance in a holdout-trained classifier's penultimate features (lower is better).

    The offline default: not FID and not comparable with published FIDs, but
    comparable across every cell of a run on the same dataset split.
    """

    name: ClassVar[str] = "fd-domain"
    higher_is_better: ClassVar[bool | None] = False

    class Config(_DomainOptions):
        max_samples: int | None = Field(
            None, ge=2, description="cap on synthetic images (None: all)"
        )

    def evaluate(self, ctx: EvalContext) -> list[Measurement]:
        cfg = self.config
        _check_enough(ctx.synthetic, "fd-domain")
        check_same_shape(ctx.synthetic, ctx.splits.holdout, "fd-domain")
        space = cfg.space(ctx)
        fake = _subsample(ctx.synthetic, cfg.max_samples, ctx.seed)
        value = frechet_distance(gaussian_stats(space.features(fake.images)), space.real_stats)
        extra = {
            "reference": "holdout",
            "n_real": space.real_stats.n,
            "n_synthetic": len(fake),
            "private_reference": space.private_fd,
            "extractor_val_accuracy": space.val_accuracy,
        }
        return [Measurement(self.name, value, self.higher_is_better, extra)]


class PrecisionRecall(Metric):
    """k-NN manifold precision (realism) and recall (coverage), Kynkäänniemi et al. 2019.

    Two measurements, both higher-is-better, named after their feature space:
    ``precision-domain`` / ``recall-domain`` (holdout classifier, offline
    default) or ``precision-inception`` / ``recall-inception``.
    """

    name: ClassVar[str] = "precision-recall"
    higher_is_better: ClassVar[bool | None] = True

    class Config(_DomainOptions):
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
        key = reference_key(real=real.fingerprint(), weights=_weights_id(weights))
        cached = cached_reference(
            ctx.cache_dir,
            "inception-features",
            key,
            lambda: {
                "features": extract_features(extractor, real.images, device=device_for(ctx.trainer))
            },
        )
        return cached["features"], extract_features(
            extractor, fake.images, device=device_for(ctx.trainer)
        )

    def evaluate(self, ctx: EvalContext) -> list[Measurement]:
        cfg = self.config
        _check_enough(ctx.synthetic, "precision-recall", cfg.k + 1)
        real = _subsample(ctx.splits.holdout, cfg.max_samples, 0)
        fake = _subsample(ctx.synthetic, cfg.max_samples, ctx.seed)
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
    register(Fid)
    register(FdDomain)
    register(PrecisionRecall)
