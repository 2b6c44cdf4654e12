"""The diffusion prior: dp-diffusion's UNet, trained *without* DP on the adversary's data.

The adversary owns the holdout split (same distribution as the targets) and
any public data (``glyphs`` for digits: a distribution shift). Training is
plain Adam on the DDPM ε-prediction loss of dp-diffusion's own objective
(noise multiplicity 1), unconditional (every label is the null class: the
adversary does not know the target's label). The trained weights are cached
under the run's ``cache_dir`` keyed by the data fingerprint and the recipe, so
every cell of a run (and every μ of a sweep) reuses one prior. The cache is in
a run folder others may write to, so it is read with ``weights_only=True``
(a planted pickle is refused in one line, unrun) and written atomically.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from ppds_plugins.common.diffusion.config import DiffusionConfig
from ppds_plugins.common.diffusion.objective import NoiseMultiplicityDDPMLoss, make_train_scheduler
from ppds_plugins.common.diffusion.unet import build_unet
from ppds_plugins.common.pixels import to_signed, to_uint8

from ppds_core.atomic import atomic_open
from ppds_core.errors import UnsafeFileError
from ppds_core.imageset import ImageSet
from ppds_core.safe_load import load_tensors

__all__ = ["Prior", "fit_prior", "fit_or_load_prior", "match_shape"]


class Prior:
    """A trained unconditional UNet plus the schedule it was trained with."""

    def __init__(self, unet, cfg: DiffusionConfig, shape: tuple[int, int, int]):
        self.unet, self.cfg, self.shape = unet.eval(), cfg, shape
        self.scheduler = make_train_scheduler(cfg.num_train_timesteps, cfg.beta_schedule)

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return self.scheduler.alphas_cumprod.double()


def match_shape(images: ImageSet, shape: tuple[int, int, int]) -> torch.Tensor:
    """``images`` as (N, *shape): channel-averaged/repeated and resized, in [0, 1]."""
    x = images.images
    c, h, w = shape
    if x.shape[1] != c:
        x = x.mean(1, keepdim=True).repeat(1, c, 1, 1)
    if tuple(x.shape[-2:]) != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False,
                          antialias=x.shape[-1] > w).clamp(0, 1)
    return x


def fit_prior(data: torch.Tensor, cfg: DiffusionConfig, steps: int, batch_size: int,
              seed: int) -> Prior:
    """Non-private DDPM training of dp-diffusion's UNet on ``data`` ((N, C, H, W) in [0, 1])."""
    torch.manual_seed(seed)
    shape = tuple(data.shape[1:])
    unet = build_unet(cfg, shape[0], shape[-1], num_classes=0)
    sched = make_train_scheduler(cfg.num_train_timesteps, cfg.beta_schedule)
    loss_fn = NoiseMultiplicityDDPMLoss(unet, sched, multiplicity=1, null_class=0)
    loss_fn.generator = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(unet.parameters(), lr=cfg.lr)
    x_all = to_signed(data)
    g = torch.Generator().manual_seed(seed + 1)
    unet.train()
    for _ in range(steps):
        idx = torch.randint(len(x_all), (min(batch_size, len(x_all)),), generator=g)
        x0 = x_all[idx]
        loss = loss_fn(x0, torch.zeros(len(idx), dtype=torch.long)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return Prior(unet, cfg, shape)  # type: ignore[arg-type]


def _key(data: torch.Tensor, cfg: DiffusionConfig, steps: int, batch_size: int, seed: int) -> str:
    h = hashlib.sha256()
    h.update(to_uint8(data).numpy().tobytes())
    h.update(json.dumps([cfg.model_dump(), steps, batch_size, seed, list(data.shape)],
                        sort_keys=True, default=str).encode())
    return h.hexdigest()[:20]


def fit_or_load_prior(data: torch.Tensor, cfg: DiffusionConfig, steps: int, batch_size: int,
                      seed: int, cache_dir: Path | None) -> Prior:
    """:func:`fit_prior`, cached as ``cache_dir/reconstruction-prior/<hash>.pt``."""
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / "reconstruction-prior" / f"{_key(data, cfg, steps, batch_size, seed)}.pt"
        if path.exists():
            shape = tuple(data.shape[1:])
            unet = build_unet(cfg, shape[0], shape[-1], num_classes=0)
            state = load_tensors(path, "reconstruction prior cache")
            try:
                unet.load_state_dict(state)
            except (RuntimeError, TypeError, AttributeError) as err:
                raise UnsafeFileError(
                    f"{path}: not this recipe's prior UNet ({str(err).splitlines()[0]}); "
                    "delete the file to retrain it"
                ) from None
            return Prior(unet, cfg, shape)  # type: ignore[arg-type]
    prior = fit_prior(data, cfg, steps, batch_size, seed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path) as fh:
            torch.save(prior.unet.state_dict(), fh)
    return prior
