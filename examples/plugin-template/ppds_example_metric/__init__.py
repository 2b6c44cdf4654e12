"""A complete third-party metric: mean-intensity gap between synthetic and real images.

Deliberately simple so the plumbing is what you read: a name, a strict
pydantic ``Config``, class-level metadata, ``evaluate`` returning
measurements, and one ``register_plugins`` hook.
"""

from __future__ import annotations

from pydantic import Field

from ppds_core import EvalContext, Measurement, Metric, PluginConfig, SkipMeasurement, hookimpl


class MeanIntensityGap(Metric):
    """|mean pixel of synthetic − mean pixel of real holdout|, per channel, averaged."""

    name = "mean-intensity-gap"
    higher_is_better = False

    class Config(PluginConfig):
        split: str = Field("holdout", description="real split to compare with: holdout or test")

    def evaluate(self, ctx: EvalContext) -> list[Measurement]:
        real = getattr(ctx.splits, self.config.split)
        if len(real) == 0:
            raise SkipMeasurement(f"the {self.config.split} split is empty")
        gap = (ctx.synthetic.images.mean(dim=(0, 2, 3)) - real.images.mean(dim=(0, 2, 3))).abs().mean()
        return [Measurement(self.name, float(gap), self.higher_is_better)]


@hookimpl
def register_plugins(register):
    register(MeanIntensityGap)
