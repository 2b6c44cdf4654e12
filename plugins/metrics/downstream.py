"""``downstream-accuracy``: train on the synthetic samples, test on real data.

The DPImageBench protocol: a classifier trained only on labelled synthetic
images is tested on the real test split; its accuracy says how much of the
task the samples carry. Model selection (best epoch, early stopping) uses a
validation part carved out of the *synthetic* set, never the test split.
Each row also carries ``real_reference``: the same recipe trained on the
real private split — the accuracy a perfect generator could hope for —
computed once per dataset split and cached under the run's ``cache_dir``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from ppds_plugins.common import classifiers
from ppds_plugins.common.devices import device_of
from ppds_plugins.common.subsample import subsample
from pydantic import Field

from ppds_core import (
    EvalContext,
    ImageSet,
    Measurement,
    Metric,
    PluginConfig,
    SkipMeasurement,
    Splits,
    hookimpl,
)

from ._reference_cache import cached_reference, reference_key

__all__ = ["DownstreamAccuracy", "split_validation", "register_plugins"]

#: bump when the recipe changes, so cached real references are recomputed
_RECIPE_VERSION = 1


def split_validation(
    data: ImageSet, fraction: float, seed: int
) -> tuple[ImageSet, ImageSet | None]:
    """(train, val): a seeded random ``fraction`` of ``data`` held out for model selection."""
    n_val = int(round(len(data) * fraction))
    if fraction <= 0 or n_val < 1 or len(data) - n_val < 1:
        return data, None
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    return data.subset(perm[n_val:], f"{data.name}/train"), data.subset(
        perm[:n_val], f"{data.name}/val"
    )


class DownstreamAccuracy(Metric):
    """Accuracy on the real test split of a classifier trained on the synthetic samples."""

    name: ClassVar[str] = "downstream-accuracy"
    higher_is_better: ClassVar[bool | None] = True
    needs: ClassVar[frozenset[str]] = frozenset({"labels"})

    class Config(PluginConfig):
        arch: Literal["auto", "cnn", "resnet"] = Field(
            "auto",
            description="classifier: small CNN, or a ResNet-style net (auto: resnet for ≥32 px RGB)",
        )
        epochs: int = Field(20, ge=1, description="maximum training epochs")
        patience: int | None = Field(
            5, ge=1, description="stop after this many epochs without validation gain"
        )
        val_fraction: float = Field(
            0.1, ge=0.0, lt=1.0, description="part of the synthetic set used for model selection"
        )
        batch_size: int = Field(64, ge=1)
        lr: float = Field(2e-3, gt=0)
        max_train: int | None = Field(
            None, ge=2, description="cap on synthetic images used (None: all)"
        )
        real_reference: bool = Field(
            True, description="also report the same recipe trained on the private split"
        )

    @classmethod
    def smoke_config(cls, config: PluginConfig) -> PluginConfig:
        return config.model_copy(update={"epochs": 1, "patience": None})

    def _train(
        self, data: ImageSet, seed: int, num_classes: int, device: torch.device | None = None
    ):
        cfg = self.config
        train, val = split_validation(data, cfg.val_fraction, seed)
        model = classifiers.train_classifier(
            train,
            val=val,
            epochs=cfg.epochs,
            seed=seed,
            arch=cfg.arch,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            patience=cfg.patience,
            num_classes=num_classes,
            device=device,
        )
        return model, len(train), len(val) if val is not None else 0

    def real_reference(
        self, splits: Splits, cache_dir, device: torch.device | None = None
    ) -> dict[str, Any]:
        """The recipe trained on the private split (seed 0), tested on the test split; cached."""
        cfg = self.config
        options = cfg.model_dump(exclude={"real_reference", "max_train"})
        key = reference_key(
            version=_RECIPE_VERSION,
            private=splits.private.fingerprint(),
            test=splits.test.fingerprint(),
            **options,
        )

        def compute() -> dict[str, Any]:
            model, n_train, n_val = self._train(splits.private, 0, splits.test.num_classes, device)
            log = model.training_log  # type: ignore[attr-defined]
            acc = classifiers.accuracy(model, splits.test)
            return {"accuracy": acc, "n_train": n_train, "best_epoch": log.best_epoch}

        return cached_reference(cache_dir, "downstream-real", key, compute)

    def evaluate(self, ctx: EvalContext) -> list[Measurement]:
        cfg = self.config
        synthetic, test = ctx.synthetic, ctx.splits.test
        if len(test) == 0:
            raise SkipMeasurement("downstream-accuracy: the test split is empty")
        if synthetic.num_classes != test.num_classes:
            raise SkipMeasurement(
                f"downstream-accuracy: synthetic samples have {synthetic.num_classes} classes, "
                f"the test split {test.num_classes}; labels are not comparable"
            )
        if synthetic.shape != test.shape:
            raise SkipMeasurement(
                f"downstream-accuracy: synthetic images are {synthetic.shape} (C×H×W) but test images "
                f"are {test.shape}; generate at the dataset's resolution"
            )
        if len(synthetic) < 2:
            raise SkipMeasurement(
                f"downstream-accuracy: needs ≥ 2 synthetic images, got {len(synthetic)}"
            )
        synthetic = subsample(synthetic, cfg.max_train, ctx.seed)
        device = device_of(ctx)
        model, n_train, n_val = self._train(synthetic, ctx.seed, test.num_classes, device)
        log = model.training_log  # type: ignore[attr-defined]
        extra: dict[str, Any] = {
            "n_train": n_train,
            "n_val": n_val,
            "n_test": len(test),
            "arch": log.arch,
            "best_epoch": log.best_epoch,
            "val_accuracy": log.best_val_accuracy,
        }
        if cfg.real_reference:
            ref = self.real_reference(ctx.splits, ctx.cache_dir, device)
            extra["real_reference"] = ref["accuracy"]
            extra["real_reference_n_train"] = ref["n_train"]
        return [
            Measurement(self.name, classifiers.accuracy(model, test, device=device), True, extra)
        ]


@hookimpl
def register_plugins(register) -> None:
    register(DownstreamAccuracy)
