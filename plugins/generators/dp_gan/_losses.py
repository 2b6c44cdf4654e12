"""Hinge losses of the conditional GAN, and the fake batches both players use."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["LOSSES", "d_hinge_per_row", "d_loss_per_row", "g_hinge", "g_loss", "fake_labels"]

#: the discriminator / generator objectives ``loss`` may name
LOSSES = ("hinge", "nonsat")


def d_hinge_per_row(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """One hinge loss per row of the concatenated [real; fake] batch.

    The discriminator sees real and fake images as one batch (as in the
    reference code), so every row is its own "example" for per-sample
    clipping: a private image only ever touches its own row, which keeps the
    sensitivity at one clipped gradient while fakes are clipped like the rest.
    """
    return torch.cat([F.relu(1.0 - real_scores), F.relu(1.0 + fake_scores)])


def g_hinge(fake_scores: torch.Tensor) -> torch.Tensor:
    """The generator's hinge objective: raise the discriminator's score of fakes."""
    return -fake_scores.mean()


def d_loss_per_row(loss: str, real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """Per-row discriminator losses of [real; fake] for ``loss`` (``hinge`` or ``nonsat``).

    ``nonsat`` is the logistic (non-saturating) GAN loss: softplus(−D(x)) for
    real rows, softplus(D(G(z))) for fakes; unlike the hinge it never stops
    pushing a row that is already on the right side of the margin.
    """
    if loss == "hinge":
        return d_hinge_per_row(real_scores, fake_scores)
    if loss == "nonsat":
        return torch.cat([F.softplus(-real_scores), F.softplus(fake_scores)])
    raise ValueError(f"unknown GAN loss {loss!r}; choose from {LOSSES}")


def g_loss(loss: str, fake_scores: torch.Tensor) -> torch.Tensor:
    """The generator's objective for ``loss``: hinge −D(G(z)), or softplus(−D(G(z)))."""
    if loss == "hinge":
        return g_hinge(fake_scores)
    if loss == "nonsat":
        return F.softplus(-fake_scores).mean()
    raise ValueError(f"unknown GAN loss {loss!r}; choose from {LOSSES}")


def fake_labels(n: int, num_classes: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Uniform random class labels for ``n`` fakes (no peek at the private label mix)."""
    return torch.randint(num_classes, (n,), device=device)
