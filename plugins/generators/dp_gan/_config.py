"""DP-GAN's options, with defaults tuned for the embedded ``digits`` set on a CPU."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ppds_core import PluginConfig

__all__ = ["DPGANConfig"]


class DPGANConfig(PluginConfig):
    """Options of the DP-GAN recipe (DPImageBench's ``dpsgd_gan``).

    ``epochs`` and ``batch_size`` refer to the *private* discriminator: it
    draws Poisson batches at rate q = batch_size / N and takes
    T = epochs · ⌈N / batch_size⌉ DP-SGD steps (the engine's schedule); the
    generator takes one step every ``d_updates`` of them.
    """

    epochs: int = Field(120, ge=1, description="passes over the private data by the discriminator")
    batch_size: int = Field(256, ge=1, description="expected Poisson batch size of real images")
    lr: float = Field(2e-3, gt=0, description="discriminator learning rate (Adam)")
    g_lr: float | None = Field(None, gt=0, description="generator learning rate (Adam); None = lr")
    betas: tuple[float, float] = Field((0.5, 0.999), description="Adam betas of both networks")
    max_grad_norm: float = Field(0.1, gt=0, description="per-example clipping bound C")
    loss: Literal["hinge", "nonsat"] = Field(
        "hinge", description="GAN objective: hinge | nonsat (logistic, non-saturating)")
    d_updates: int = Field(2, ge=1, description="discriminator steps per generator step")
    latent_dim: int = Field(32, ge=1, description="size of the generator's noise vector")
    g_width: int | None = Field(
        None, ge=1, description="generator channels at the finest level; None = by image size"
    )
    d_width: int | None = Field(
        None, ge=1, description="discriminator channels at the finest level; None = by image size"
    )
    d_norm: Literal["group", "none"] = Field(
        "group", description="normalisation in the discriminator (BatchNorm cannot be private)"
    )
    g_norm: Literal["group", "batch", "none"] = Field(
        "group", description="normalisation in the generator (not private: BatchNorm is allowed)"
    )
    fake_batch_size: int | None = Field(
        None, ge=1, description="fakes per discriminator / generator step; None = batch_size"
    )
    ema: float = Field(0.99, ge=0, lt=1, description="decay of the generator EMA used for sampling")
    grad_sample_mode: Literal["auto", "bk", "hooks", "functorch", "ghost", "ew"] = Field(
        "auto", description="per-sample gradient mode: auto (the fastest exact mode for the "
        "discriminator: bk) | bk (one backward) | Opacus hooks | functorch | ghost | ew")
    accountant: str | None = Field(None, description="rdp | prv | gdp; None = the run's accountant")
