"""Poisson-sampled batches: the only sampling the DP-SGD accountant is told about.

Every example joins each batch independently with probability q = B/N, so
batch sizes vary and may be 0. The ε the accountant reports is for exactly
this sampling, so the engine builds the loader itself and refuses any other.

Differences from a bare ``opacus.data.DPDataLoader``, each for a reason:

- ``steps`` per epoch is ⌈N/B⌉ (integer arithmetic), so an "epoch" touches N
  examples in expectation and the planned T = epochs·⌈N/B⌉ is exact;
- under DDP each rank samples its own shard with its *own* generator (same
  seed on every rank would correlate inclusions across shards) and yields
  empty local batches instead of skipping them — a skipped batch would leave
  the ranks a different number of steps apart and deadlock the all-reduce.
"""

from __future__ import annotations

import torch
from opacus.data_loader import DPDataLoader, dtype_safe, shape_safe, wrap_collate_with_empty
from opacus.utils.uniform_sampler import (
    DistributedUniformWithReplacementSampler,
    UniformWithReplacementSampler,
)
from torch.utils.data import DataLoader, Dataset
from torch.utils.data._utils.collate import default_collate

__all__ = ["PoissonDataLoader", "is_poisson_loader"]


class _DistributedPoissonSampler(DistributedUniformWithReplacementSampler):
    """Opacus' sharded Poisson sampler, but empty local batches are yielded too."""

    def __iter__(self):
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.shuffle_seed + self.epoch)
            indices = torch.randperm(self.total_size, generator=g)
        else:
            indices = torch.arange(self.total_size)
        indices = indices[self.rank : self.total_size : self.num_replicas]
        for _ in range(self.num_batches):
            mask = torch.rand(self.num_samples, generator=self.generator) < self.sample_rate
            yield indices[mask.nonzero(as_tuple=False).reshape(-1)].tolist()


class PoissonDataLoader(DPDataLoader):
    """A ``DPDataLoader`` with a fixed number of steps per epoch (see module doc)."""

    def __init__(
        self,
        dataset: Dataset,
        *,
        sample_rate: float,
        steps_per_epoch: int,
        generator: torch.Generator | None,
        distributed: bool = False,
        shuffle_seed: int = 0,
        collate_fn=None,
        num_workers: int = 0,
    ) -> None:
        self.sample_rate = sample_rate
        self.distributed = distributed
        n = len(dataset)  # type: ignore[arg-type]
        if distributed:
            batch_sampler = _DistributedPoissonSampler(
                total_size=n, sample_rate=sample_rate, steps=steps_per_epoch,
                generator=generator, shuffle_seed=shuffle_seed,
            )
        else:
            batch_sampler = UniformWithReplacementSampler(
                num_samples=n, sample_rate=sample_rate, generator=generator, steps=steps_per_epoch
            )
        first = dataset[0]
        DataLoader.__init__(
            self,
            dataset=dataset,
            batch_sampler=batch_sampler,
            collate_fn=wrap_collate_with_empty(
                collate_fn=collate_fn or default_collate,
                sample_empty_shapes=[(0, *shape_safe(x)) for x in first],
                dtypes=[dtype_safe(x) for x in first],
            ),
            num_workers=num_workers,
            # no generator here: DataLoader.__iter__ draws a worker base seed from it,
            # which would shift the Poisson stream whenever an iterator is restarted
        )


def is_poisson_loader(loader: DataLoader) -> bool:
    """Whether ``loader`` draws Poisson batches (an Opacus sampler behind it)."""
    sampler = getattr(loader, "batch_sampler", None)
    return isinstance(loader, DPDataLoader) or isinstance(
        sampler, UniformWithReplacementSampler | DistributedUniformWithReplacementSampler
    )
