"""DP-MERF's options, with defaults tuned for the embedded ``digits`` set on a CPU."""

from __future__ import annotations

from pydantic import Field, field_validator

from ppds_core import PluginConfig

__all__ = ["DPMERFConfig", "PIXEL_BANDWIDTH"]

#: default kernel bandwidth per √pixel: σ_rff = PIXEL_BANDWIDTH · √(C·H·W) when ``rff_sigma`` is
#: None. A rule on the image *size* only (public): a median-distance heuristic on the private
#: images would be a query on them that no ledger records. See docs/generators/dp-merf.md.
PIXEL_BANDWIDTH = 0.31


class DPMERFConfig(PluginConfig):
    """Options of the DP-MERF recipe (ParkLabML/DP-MERF ``code_balanced``, DPImageBench ``DP-MERF``).

    Only ``features`` and ``rff_sigma`` touch the private data (they define the
    released embedding); everything else shapes the post-processing fit of the
    generator to that one release and costs no privacy.
    """

    features: int = Field(
        2000, ge=2, description="random Fourier features D (D/2 frequencies, cos and sin each)")
    rff_sigma: float | None = Field(
        None, gt=0, description="Gaussian-kernel bandwidth σ: frequencies W ~ N(0, σ⁻² I) on "
        "flattened [0, 1] images; None = 0.31·√(C·H·W) (the reference's --rff-sigma s is σ = √s)")
    steps: int = Field(500, ge=1, description="Adam steps of the generator on the released embedding")
    batch_size: int = Field(500, ge=1, description="generated images per step")
    lr: float = Field(1e-2, gt=0, description="generator learning rate (Adam)")
    lr_decay: float = Field(0.9, gt=0, le=1, description="learning-rate factor every lr_decay_every steps")
    lr_decay_every: int = Field(50, ge=1, description="steps between learning-rate decays")
    latent_dim: int = Field(5, ge=1, description="size of the generator's noise code")
    hidden: int = Field(200, ge=1, description="width of the generator's hidden fully connected layer")
    g_width: int = Field(16, ge=1, description="channels of the generator's coarsest feature map "
                         "(halved at each upsampling)")
    kernel_size: int = Field(5, ge=1, description="generator convolution kernel size (odd)")
    batch_norm: bool = Field(True, description="BatchNorm after the generator's two linear layers")
    accountant: str | None = Field(None, description="rdp | prv; None = the run's accountant")

    @field_validator("features")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 2:
            raise ValueError(f"must be even (cos and sin of D/2 frequencies), got {v}")
        return v

    @field_validator("kernel_size")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"must be odd so 'same' padding keeps the image size, got {v}")
        return v
