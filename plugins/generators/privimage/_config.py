"""PrivImage's options: DP-diffusion's plus the semantic query, selection and pretraining."""

from __future__ import annotations

from ppds_plugins.generators.dp_diffusion._config import DiffusionConfig
from pydantic import Field

__all__ = ["PrivImageConfig"]


class PrivImageConfig(DiffusionConfig):
    """Defaults sized for embedded data (digits with glyphs as public data)."""

    label_dropout: float = Field(0.1, ge=0, lt=1, description="null-class probability in pretraining and fine-tuning (classifier-free guidance)")
    # Measured on digits (898 images, ~90 per class) with glyphs, ε = 10, PRV: over 20 noise
    # draws × 3 query-classifier seeds the own glyph is in a mean 7.65 of 10 digits' selection
    # at σ_q = 4 vs 6.2 at σ_q = 10 (6 and 9 almost never: the font's 6/9 get ~0 votes), while
    # DP-SGD's σ rises only 1.751 → 1.760. diffusion_digits.py seeds 0/1, σ_q 10 → 4: hits
    # 6 → 8 / 8 → 7, accuracy 58.8 → 75.7 % / 74.2 → 79.1 %. But σ_q = 4 alone costs
    # ε ≈ 0.93 (δ = 1e-5), nearly all of an ε = 1 budget, so the default stays at 10.
    query_sigma: float = Field(10.0, gt=0, description="σ_q: the query histogram gets N(0, (σ_q·√k)²) noise per cell (DPImageBench CIFAR-10: 50). Small private sets at large ε select better with less noise: digits at ε = 10 do best near 4 (ε of the query alone: 0.93 at δ = 1e-5)")
    query_topk: int = Field(1, ge=1, description="k: public classes each private image votes for")
    query_epochs: int = Field(10, ge=1, description="epochs of the public-label classifier (the semantic query function)")
    selection_ratio: float = Field(0.3, gt=0, le=1, description="fraction of the public classes selected in all, shared among the private classes (at least one each); DPImageBench CIFAR-10 with ImageNet: 0.05")
    classes_per_private_class: int | None = Field(None, ge=1, description="public classes per private class (overrides selection_ratio)")
    pretrain_epochs: int = Field(20, ge=0, description="non-private epochs on the selected public images")
    pretrain_batch_size: int = Field(128, ge=1)
    pretrain_lr: float = Field(2e-3, gt=0)
