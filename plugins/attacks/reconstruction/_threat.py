"""The observation: one privatized DP-SGD gradient of the target, read as a noisy image.

Linear-layer threat model (Schwethelm et al., "Visual Privacy Auditing with
Diffusion Models"): with a linear first layer of M output units the weight
gradient of one example is an outer product g·xᵀ, so an adversary who shapes
g reads the privatized gradient back as ``y = x + N(0, σ_eff²·I)`` with
``σ_eff = σ·max(C/√M, ‖x‖₂)`` (σ the noise multiplier, C the clipping bound).

Units: x is the canonical image in [0, 1] per pixel and ‖x‖₂ is taken over all
its pixels in those units, so σ_eff is a per-pixel std in [0, 1] units. The
diffusion model works in [−1, 1] (twice the scale): there the noise std is
``s = 2·σ_eff``. With μ = C/(σ·C) = 1/σ the observation of one step is
μ-GDP, which is what the ReRo bound is evaluated at.
"""

from __future__ import annotations

import torch

from ppds_core.privacy.bounds import effective_noise_std

__all__ = ["sigma_eff", "observe"]


def sigma_eff(x: torch.Tensor, noise_multiplier: float, max_grad_norm: float,
              output_units: int) -> torch.Tensor:
    """Per-image σ_eff (shape (N,)) in canonical pixel units (the bounds module's formula)."""
    norms = x.flatten(1).norm(dim=1).tolist()
    return torch.tensor([effective_noise_std(noise_multiplier, max_grad_norm, output_units, n)
                         for n in norms], dtype=torch.float64)


def observe(x: torch.Tensor, noise_multiplier: float, max_grad_norm: float, output_units: int,
            generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(y, σ_eff): the adversary's noisy view of each target (not clipped to [0, 1])."""
    s = sigma_eff(x, noise_multiplier, max_grad_norm, output_units)
    noise = torch.randn(x.shape, generator=generator)
    return x + s.view(-1, 1, 1, 1).float() * noise, s
