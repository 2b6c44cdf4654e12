"""The ``dp-diffusion`` generator plugin (DPDM-style DP diffusion model)."""

from __future__ import annotations

from ppds_core import hookimpl

from ._config import DiffusionConfig
from ._model import DiffusionGenerator

__all__ = ["DiffusionGenerator", "DiffusionConfig"]


@hookimpl
def register_plugins(register):
    register(DiffusionGenerator)
