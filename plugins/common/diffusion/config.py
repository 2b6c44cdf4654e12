"""The options a DP diffusion recipe takes: dp-diffusion's, extended by privimage.

One model class so that PrivImage is *exactly* DP-diffusion plus a semantic
query, a selection and a pretraining: the same network, objective, DP-SGD
step and sampler, so a utility difference between them is the public data's
doing and nothing else's. The reconstruction attack builds one for its
(non-private) prior, so its UNet is dp-diffusion's too.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ppds_core import PluginConfig

__all__ = ["DiffusionConfig", "GRAD_SAMPLE_MODES"]

#: per-sample gradient modes of Opacus that work on diffusers' UNet2DModel
#: ("ew", expanded weights, fails inside diffusers' blocks; see docs/generators/dp-diffusion.md)
GRAD_SAMPLE_MODES = ("auto", "bk", "hooks", "functorch", "ghost")


class DiffusionConfig(PluginConfig):
    """DPDM-style class-conditional DDPM trained with DP-SGD (noise multiplicity K)."""

    # --- DP-SGD (names shared by every DP-SGD generator)
    epochs: int = Field(30, ge=1, description="passes over the private data: T = epochs · ⌈N / batch_size⌉ DP-SGD steps")
    steps: int | None = Field(None, ge=1, description="train for exactly this many DP-SGD steps instead of epochs")
    batch_size: int = Field(256, ge=1, description="expected (Poisson) batch size of DP-SGD")
    lr: float = Field(2e-3, gt=0, description="Adam learning rate of DP-SGD training")
    max_grad_norm: float = Field(1.0, gt=0, description="per-example clipping norm C")
    grad_sample_mode: Literal["auto", "bk", "hooks", "functorch", "ghost"] = Field(
        "auto", description="per-sample gradient mode: auto (the fastest exact mode for the UNet: bk) | bk (one backward) | Opacus hooks | functorch | ghost (needs noise_multiplicity=1)")
    noise_multiplicity: int = Field(
        2, ge=1, description="K: noise draws per example; its K losses are averaged before clipping")
    max_physical_batch_size: int | None = Field(
        None, ge=1, description="examples per forward/backward slice of a Poisson batch (memory: "
        "slice × K rows at a time); clipping, noise and ε are those of the whole batch. None: no slicing")
    weight_decay: float = Field(0.0, ge=0)
    # --- diffusion
    num_train_timesteps: int = Field(1000, ge=10)
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "squaredcos_cap_v2"
    ema_decay: float = Field(0.999, ge=0, lt=1, description="EMA of weights, used for sampling (warm-up: min(decay, (1+n)/(10+n)))")
    sampler: Literal["ddim", "dpm-solver"] = Field(
        "dpm-solver", description="sampling scheduler, built from its config (offline): DPM-Solver++ "
        "(2nd-order multistep) or DDIM (η = 0)")
    sample_steps: int = Field(20, ge=1, description="sampler steps (network evaluations, ×2 with guidance)")
    guidance_scale: float = Field(0.0, ge=0, description="classifier-free guidance w: ε = (1+w)·ε(x|y) − w·ε(x); needs label_dropout > 0")
    label_dropout: float = Field(0.0, ge=0, lt=1, description="probability a training label is replaced by the null class (for guidance)")
    # --- network (diffusers UNet2DModel)
    image_size: int | None = Field(None, ge=4, le=1024, description="resize images to this square side (None: native; at most 1024)")
    block_out_channels: list[int] = Field(default_factory=lambda: [16, 32], description="channels per resolution level (nf × channel multipliers)")
    layers_per_block: int = Field(1, ge=1)
    attention: bool = Field(False, description="self-attention in the lowest-resolution blocks and the middle block")
    norm_num_groups: int = Field(8, ge=1, description="GroupNorm groups (no BatchNorm: per-sample gradients need it)")
    dropout: float = Field(0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _check(self) -> DiffusionConfig:
        bad = [c for c in self.block_out_channels if c % self.norm_num_groups]
        if bad or not self.block_out_channels:
            raise ValueError(
                f"block_out_channels {self.block_out_channels} must be non-empty and each divisible "
                f"by norm_num_groups={self.norm_num_groups}"
            )
        if self.grad_sample_mode == "ghost" and self.noise_multiplicity > 1:
            raise ValueError(
                "grad_sample_mode 'ghost' computes per-example norms layer by layer from the "
                f"B·K rows, so it cannot average K={self.noise_multiplicity} losses before clipping; "
                "use 'hooks' or 'functorch', or set noise_multiplicity: 1"
            )
        if self.grad_sample_mode == "ghost" and self.max_physical_batch_size is not None:
            raise ValueError("max_physical_batch_size needs grad_sample_mode 'hooks' or 'functorch', not 'ghost'")
        if self.guidance_scale > 0 and self.label_dropout == 0:
            raise ValueError(
                "guidance_scale > 0 needs an unconditional model: set label_dropout (e.g. 0.1)"
            )
        return self
