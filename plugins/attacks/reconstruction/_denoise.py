"""Diffusion denoising of the observation, started at the matching noise level.

``y = x + N(0, s²)`` in model units is, up to scale, a point on the forward
diffusion path: ``√ᾱ·y = √ᾱ·x + √(1−ᾱ)·ε`` exactly when ᾱ = 1/(1 + s²). So
the reverse process starts at the timestep t* whose ᾱ_t* matches (derived in
FIELD-NOTES, not taken from the paper's code) with x_t* = √ᾱ_t*·y; the first
grid point at or above the observation's noise level is used and the missing
variance is added as fresh noise, so the level matches exactly.

Data consistency (our rule; the paper's exact rule is not published in the
notes): at every step the prior's estimate x̂₀ is pulled toward y by the
Gaussian posterior weight ``λ = c·v_t / (v_t + s²)`` with
``v_t = (1 − ᾱ_t)/ᾱ_t`` (the noise-to-signal ratio of x_t, a proxy for the
uncertainty of x̂₀); at t* λ = c/2, and it fades to 0 as t → 0 so the prior
has the last word on fine detail. ``c = 0`` is pure prior denoising.

Steps are DDIM with stochasticity η (η = 1: ancestral sampling), so several
runs with different seeds are several posterior samples; their spread is the
multi-sample consistency that predicts success without the target.
"""

from __future__ import annotations

import torch

from ._prior import Prior

__all__ = ["reconstruct", "sample_prior", "start_index"]


def _grid(prior: Prior, steps: int) -> torch.Tensor:
    """Descending timesteps from T−1 to 0 (``steps`` points)."""
    T = prior.cfg.num_train_timesteps
    return torch.linspace(T - 1, 0, max(2, steps)).round().long().unique_consecutive()


def start_index(prior: Prior, grid: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Per target: index into ``grid`` of the last timestep with ᾱ_t ≤ 1/(1 + s²)."""
    a = prior.alphas_cumprod[grid]  # increasing along the (descending-t) grid
    target = 1.0 / (1.0 + s.double() ** 2)
    idx = torch.searchsorted(a.contiguous(), target.contiguous(), right=True) - 1
    return idx.clamp(0, len(grid) - 1)


@torch.no_grad()
def reconstruct(prior: Prior, y: torch.Tensor | None, s: torch.Tensor, *, steps: int = 50,
                consistency: float = 1.0, eta: float = 1.0, seed: int = 0,
                n: int | None = None, chunk: int = 512) -> torch.Tensor:
    """x̂₀ in model units for observations ``y`` ((N, C, S, S), model units) with noise ``s`` (N,).

    ``y=None`` samples the prior from pure noise (``n`` samples).
    """
    gen = torch.Generator().manual_seed(seed)
    grid = _grid(prior, steps)
    ac = prior.alphas_cumprod
    if y is None:
        shape = (n, *prior.shape)
        y = torch.zeros(shape)
        s = torch.full((n,), float("inf"))
        consistency = 0.0
    out = []
    for lo in range(0, y.shape[0], chunk):
        out.append(_run(prior, y[lo : lo + chunk].double(), s[lo : lo + chunk].double(), grid,
                        ac, consistency, eta, gen))
    return torch.cat(out).float()


def _run(prior, y, s, grid, ac, consistency, eta, gen):
    n = y.shape[0]
    view = (-1,) + (1,) * (y.ndim - 1)
    start = start_index(prior, grid, s)
    x = torch.zeros_like(y)
    active = torch.zeros(n, dtype=torch.bool)
    s2 = (s**2).view(view)
    for k, t in enumerate(grid.tolist()):
        a_t = ac[t]
        new = start == k
        if new.any():
            # x_t = √ᾱ_t·y' with y' = y scaled so its noise is at most the level, plus the rest
            sn = s[new].view(view)
            scale = torch.where(torch.isfinite(sn), torch.clamp(
                torch.sqrt((1 - a_t) / (a_t * sn**2)), max=1.0), torch.zeros_like(sn))
            have = a_t * (scale * torch.nan_to_num(sn, posinf=0.0)) ** 2
            extra = torch.sqrt(torch.clamp(1 - a_t - have, min=0.0))
            z = torch.randn(y[new].shape, generator=gen, dtype=y.dtype)
            x[new] = a_t.sqrt() * scale * y[new] + extra * z
            active |= new
        if not active.any():
            continue
        xa = x[active]
        labels = torch.zeros(xa.shape[0], dtype=torch.long)
        eps = prior.unet(xa.float(), torch.tensor(t), class_labels=labels).sample.double()
        x0 = ((xa - (1 - a_t).sqrt() * eps) / a_t.sqrt()).clamp(-1, 1)
        if consistency > 0:
            v = (1 - a_t) / a_t
            lam = consistency * v / (v + s2[active])
            x0 = x0 + lam.clamp(max=1.0) * (y[active] - x0)
        eps = (xa - a_t.sqrt() * x0) / (1 - a_t).sqrt()
        if k + 1 < len(grid):
            a_p = ac[grid[k + 1]]
            sig = eta * torch.sqrt((1 - a_p) / (1 - a_t) * (1 - a_t / a_p))
            dirn = torch.sqrt(torch.clamp(1 - a_p - sig**2, min=0.0))
            z = torch.randn(xa.shape, generator=gen, dtype=xa.dtype)
            x[active] = a_p.sqrt() * x0 + dirn * eps + sig * z
        else:
            x[active] = x0
    return x


def sample_prior(prior: Prior, n: int, *, steps: int = 50, seed: int = 0) -> torch.Tensor:
    """``n`` unconditional prior samples in model units."""
    return reconstruct(prior, None, torch.empty(0), steps=steps, seed=seed, n=n)
