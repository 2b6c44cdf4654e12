"""PrivImage's options: DP-diffusion's plus the semantic query, selection and pretraining."""

from __future__ import annotations

from typing import Annotated, Literal

from ppds_plugins.common.diffusion.config import DiffusionConfig
from pydantic import Field

__all__ = ["PrivImageConfig"]


class PrivImageConfig(DiffusionConfig):
    """Defaults sized for embedded data (digits with glyphs as public data)."""

    label_dropout: float = Field(0.1, ge=0, lt=1, description="null-class probability in pretraining and fine-tuning (classifier-free guidance)")
    query_sigma: Annotated[float, Field(gt=0)] | Literal["auto"] = Field(
        "auto", description="σ_q: the query histogram gets N(0, (σ_q·√k)²) noise per cell. 'auto' "
        "gives the query query_budget_share of the target's μ² (μ-GDP): σ_q = 1.58 at ε = 10, 11.8 "
        "at ε = 1 (δ = 1e-5). A number fixes it (DPImageBench CIFAR-10: 50)")
    # Measured on digits (quickstart-sized privimage, seed 0): share 0.01 → 0.1 took ε = 1
    # downstream accuracy from 21.2 % to 32.5 % (selection 2 → 8 of 10 digits) and left ε = 10
    # level (51.2 % vs 50.6 %); DP-SGD's σ rose 4.4 % at ε = 1 and 2.6 % at ε = 10.
    query_budget_share: float = Field(
        0.1, gt=0, lt=1, description="with query_sigma 'auto': the query's share of the budget's "
        "μ²; DP-SGD's noise then rises by about half this share (0.1: 2.6 % at ε = 10)")
    query_augment: bool = Field(
        True, description="train the query classifier on restyled public images (stroke weight, "
        "ink, 1-px shifts) so it votes by shape; made for rendered glyphs vs handwriting")
    query_topk: int = Field(1, ge=1, description="k: public classes each private image votes for")
    query_epochs: int = Field(10, ge=1, description="epochs of the public-label classifier (the semantic query function)")
    selection_ratio: float = Field(0.3, gt=0, le=1, description="fraction of the public classes selected in all, shared among the private classes (at least one each); DPImageBench CIFAR-10 with ImageNet: 0.05")
    selection_order: Literal["class", "round-robin"] = Field(
        "class", description="'class': each private class takes all its public classes in turn "
        "(DPImageBench); 'round-robin': each takes its best free class before any takes a second, "
        "which stops one class's second choice from cascading (mnist5k: see docs)")
    classes_per_private_class: int | None = Field(None, ge=1, description="public classes per private class (overrides selection_ratio)")
    pretrain_epochs: int = Field(20, ge=0, description="non-private epochs on the selected public images")
    pretrain_batch_size: int = Field(128, ge=1)
    pretrain_lr: float = Field(2e-3, gt=0)
