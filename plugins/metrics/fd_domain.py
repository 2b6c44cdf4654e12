"""The ``fd-domain`` metric: a Fréchet distance in a holdout-trained classifier's features.

The honest offline substitute for FID (:mod:`.fid`) when the Inception
weights are not on the machine: the feature space is the penultimate layer
of a classifier trained on the holdout split (:mod:`._domain`), so it is
comparable across every cell of a run on one dataset split, never with
published FIDs.
"""

from __future__ import annotations

from typing import ClassVar

from ppds_plugins.common.subsample import subsample
from pydantic import Field

from ppds_core import EvalContext, Measurement, Metric, hookimpl

from ._domain import DomainOptions
from ._frechet import frechet_distance, gaussian_stats
from ._inputs import check_enough, check_same_shape

__all__ = ["FdDomain", "register_plugins"]


class FdDomain(Metric):
    """Fréchet distance in a holdout-trained classifier's penultimate features (lower is better).

    The offline default: not FID and not comparable with published FIDs, but
    comparable across every cell of a run on the same dataset split.
    """

    name: ClassVar[str] = "fd-domain"
    higher_is_better: ClassVar[bool | None] = False

    class Config(DomainOptions):
        max_samples: int | None = Field(
            None, ge=2, description="cap on synthetic images (None: all)"
        )

    def evaluate(self, ctx: EvalContext) -> list[Measurement]:
        cfg = self.config
        check_enough(ctx.synthetic, "fd-domain")
        check_same_shape(ctx.synthetic, ctx.splits.holdout, "fd-domain")
        space = cfg.space(ctx)
        fake = subsample(ctx.synthetic, cfg.max_samples, ctx.seed)
        value = frechet_distance(gaussian_stats(space.features(fake.images)), space.real_stats)
        extra = {
            "reference": "holdout",
            "n_real": space.real_stats.n,
            "n_synthetic": len(fake),
            "private_reference": space.private_fd,
            "extractor_val_accuracy": space.val_accuracy,
        }
        return [Measurement(self.name, value, self.higher_is_better, extra)]


@hookimpl
def register_plugins(register) -> None:
    register(FdDomain)
