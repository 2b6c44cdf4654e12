"""FID with torchmetrics, the real side computed once per (real set, extractor).

torchmetrics' ``FrechetInceptionDistance`` accumulates feature sums; with
``reset_real_features=False`` its real-side state survives ``reset()``, so one
metric object per real set serves every synthetic set of a run. Its real
state is also written to the run's cache, so another process restores it
instead of pushing thousands of real images through Inception again.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance

from ._inception import to_inception_input
from ._reference_cache import cached_reference

__all__ = ["REAL_STATE", "fid_metric", "fid_against", "extract_features"]

#: torchmetrics state that describes the real set
REAL_STATE = ("real_features_sum", "real_features_cov_sum", "real_features_num_samples")
_METRICS: dict[str, FrechetInceptionDistance] = {}


def _batches(images: torch.Tensor, batch_size: int):
    for start in range(0, len(images), batch_size):
        yield to_inception_input(images[start : start + batch_size])


def fid_metric(
    extractor: nn.Module,
    real: torch.Tensor,
    *,
    key: str | None = None,
    cache_dir: Path | None = None,
    batch_size: int = 64,
    device: torch.device | None = None,
) -> FrechetInceptionDistance:
    """A FID metric whose real side is ``real`` (canonical images), memoised under ``key``.

    ``extractor`` maps uint8 N×3×H×W images to N×D features and should carry
    ``num_features`` (torchmetrics otherwise probes it with a 299×299 image).
    Without ``key`` nothing is cached (used for injected test extractors).
    """
    if key is not None and key in _METRICS:
        return _METRICS[key]
    metric = FrechetInceptionDistance(feature=extractor, reset_real_features=False)
    if device is not None:
        metric = metric.to(device)

    def compute_real() -> dict:
        for batch in _batches(real, batch_size):
            metric.update(batch.to(metric.device), real=True)
        return {name: getattr(metric, name).detach().cpu() for name in REAL_STATE}

    if key is None:
        compute_real()
        return metric
    state = cached_reference(cache_dir, "fid-real", key, compute_real)
    for name in REAL_STATE:
        setattr(metric, name, state[name].to(metric.device))
    _METRICS[key] = metric
    return metric


def fid_against(
    metric: FrechetInceptionDistance, fake: torch.Tensor, batch_size: int = 64
) -> float:
    """FID of ``fake`` (canonical images) against the metric's real side."""
    metric.reset()  # keeps the real side: reset_real_features=False
    for batch in _batches(fake, batch_size):
        metric.update(batch.to(metric.device), real=False)
    # FID ≥ 0 exactly; torchmetrics' eigvals route can return −1e-20 for identical sets
    return max(float(metric.compute()), 0.0)


@torch.no_grad()
def extract_features(
    extractor: nn.Module, images: torch.Tensor, batch_size: int = 64, device=None
) -> torch.Tensor:
    """N×D features of canonical images through an Inception-style (uint8-input) extractor."""
    if device is not None:
        extractor = extractor.to(device)
    dev = next(extractor.parameters()).device
    return torch.cat(
        [
            extractor(b.to(dev)).reshape(len(b), -1).double().cpu()
            for b in _batches(images, batch_size)
        ]
    )
