"""The domain feature space: a classifier trained on the *holdout* split.

Without downloadable Inception weights, the most meaningful offline feature
space for e.g. 8×8 digits is a classifier's penultimate layer trained on the
dataset itself. It is trained on the holdout split only: the private split is
what the generator saw (features fitted to it would favour memorisation) and
the test split belongs to final utility metrics. Distances in it are called
``fd-domain``, never FID: they are not comparable with published FIDs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from ppds_plugins.common.classifiers import (
    Arch,
    Classifier,
    build_classifier,
    embed,
    resolve_arch,
    train_classifier,
)
from ppds_plugins.common.devices import device_of
from pydantic import Field

from ppds_core import EvalContext, PluginConfig, SkipMeasurement, Splits

from ._frechet import GaussianStats, frechet_distance, gaussian_stats
from ._reference_cache import cached_reference, reference_key

__all__ = ["DomainSpace", "DomainOptions", "domain_space"]

#: bump when the recipe below changes, so stale cache entries are not reused
_RECIPE_VERSION = 1
_MODELS: dict[str, Classifier] = {}


@dataclass
class DomainSpace:
    """A trained holdout classifier, the holdout's features and their Gaussian statistics."""

    key: str
    model: Classifier
    real_features: torch.Tensor
    real_stats: GaussianStats
    #: FD of the private split's features to the holdout's: what a generator that
    #: copied its training data exactly would score (the floor to read a value against)
    private_fd: float
    val_accuracy: float | None
    device: torch.device | None = None

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return embed(self.model, images, device=self.device)


class DomainOptions(PluginConfig):
    """How the holdout classifier that defines the domain feature space is trained.

    The options ``fd-domain`` and ``precision-recall`` share, so both read one
    cached space when they agree.
    """

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
                            seed=self.seed, device=device_of(ctx))


def _train_reference(
    splits: Splits, arch: Arch, epochs: int, seed: int, device: torch.device | None = None
) -> dict:
    """Train the holdout classifier (validated on 10% of the holdout) and summarise the real data."""
    holdout = splits.holdout
    if len(holdout) < 20:
        raise SkipMeasurement(
            f"the holdout split has {len(holdout)} images; the domain classifier needs ≥ 20"
        )
    perm = torch.randperm(len(holdout), generator=torch.Generator().manual_seed(seed))
    n_val = max(len(holdout) // 10, 1)
    model = train_classifier(
        holdout.subset(perm[n_val:]),
        val=holdout.subset(perm[:n_val]),
        epochs=epochs,
        seed=seed,
        arch=arch,
    )
    real = embed(model, holdout.images)
    stats = gaussian_stats(real)
    private_fd = frechet_distance(
        gaussian_stats(embed(model, splits.private.images, device=device)), stats
    )
    return {
        "state_dict": model.state_dict(),
        "arch": resolve_arch(holdout.shape, arch),
        "shape": list(holdout.shape),
        "num_classes": holdout.num_classes,
        "real_features": real,
        "mu": torch.from_numpy(stats.mu),
        "sigma": torch.from_numpy(stats.sigma),
        "n": stats.n,
        "private_fd": private_fd,
        "val_accuracy": model.training_log.best_val_accuracy,  # type: ignore[attr-defined]
    }


def domain_space(
    splits: Splits,
    cache_dir: Path | None,
    *,
    arch: Arch = "auto",
    epochs: int = 20,
    seed: int = 0,
    device: torch.device | None = None,
) -> DomainSpace:
    """The domain feature space of these splits, trained at most once per cache."""
    key = reference_key(
        version=_RECIPE_VERSION,
        holdout=splits.holdout.fingerprint(),
        private=splits.private.fingerprint(),
        arch=arch,
        epochs=epochs,
        seed=seed,
    )
    ref = cached_reference(
        cache_dir, "domain", key, lambda: _train_reference(splits, arch, epochs, seed, device)
    )
    if key not in _MODELS:
        model = build_classifier(tuple(ref["shape"]), int(ref["num_classes"]), ref["arch"])
        model.load_state_dict(ref["state_dict"])
        _MODELS[key] = model.eval()
    stats = GaussianStats(ref["mu"].numpy(), ref["sigma"].numpy(), int(ref["n"]))
    return DomainSpace(
        key,
        _MODELS[key],
        ref["real_features"],
        stats,
        float(ref["private_fd"]),
        ref["val_accuracy"],
        device,
    )
