"""Where a privacy mechanism's randomness comes from.

Why this module exists: a DP guarantee holds against an adversary who knows
everything but the randomness of the mechanism. A matrix's seed is public (it
sits in the config, the results and the board), so noise or Poisson batches
derived from it are known to anyone who reads the config: retraining with
that seed on D′ ∪ {z} and on D′ tells the two apart perfectly, whatever the
ledger says. So every privacy mechanism (DP-SGD's Gaussian noise and Poisson
sampling, a Gaussian release, PrivImage's semantic query) draws from the
operating system's entropy by default, while everything that is not a
privacy mechanism (model initialisation, data splits, sampling of images)
stays seeded and reproducible.

``reproducible_noise=True`` (matrix ``reproducible_noise: true``, ``ppds fit
--reproducible-noise``, ``FitContext.reproducible_noise``) derives the
mechanisms' randomness from the seed instead, for tests and bit-exact
comparisons; the ledger records it (``reproducible_noise: true`` plus a
note) and the board says so: ε then does not hold against a reader of the
config.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

__all__ = ["SEEDED_NOISE_NOTE", "derived_seed", "mechanism_seed", "mechanism_generator"]

#: the ledger note of a run whose mechanisms drew seeded randomness
SEEDED_NOISE_NOTE = (
    "noise seeded from a public seed (reproducible_noise): ε does not hold against a reader "
    "of the config"
)


def derived_seed(seed: int, *tags: object) -> int:
    """Independent 63-bit seeds from one seed and a tag path (sampler, noise, each rank)."""
    text = ":".join(str(t) for t in (seed, *tags)).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") & (2**63 - 1)


def mechanism_seed(seed: int, *tags: object, reproducible: bool = False) -> int:
    """The seed of a privacy mechanism's generator: OS entropy unless ``reproducible``."""
    if reproducible:
        return derived_seed(seed, *tags)
    return secrets.randbits(63)


def mechanism_generator(seed: int, *tags: object, reproducible: bool = False,
                        device: Any = "cpu") -> Any:
    """A ``torch.Generator`` for a privacy mechanism (see :func:`mechanism_seed`).

    ``torch.Generator`` is not a cryptographic generator: with OS-entropy seeds
    its output cannot be predicted from anything public, which is the threat
    the seed posed. A run that must also resist an adversary who observes the
    generator's outputs uses ``secure_rng`` (torchcsprng) in the engine.
    """
    import torch

    g = torch.Generator(device=device)
    g.manual_seed(mechanism_seed(seed, *tags, reproducible=reproducible))
    return g
