"""Where torch keeps downloaded weights, shared by the Inception (FID) and LPIPS loaders."""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["hub_checkpoint_dir"]


def hub_checkpoint_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints``: where torch-fidelity and torchvision cache weights."""
    return Path(torch.hub.get_dir()) / "checkpoints"
