"""The ``privimage`` generator plugin: DP-diffusion + semantic query on public data."""

from __future__ import annotations

from ppds_core import hookimpl

from ._config import PrivImageConfig
from ._plugin import PrivImage

__all__ = ["PrivImage", "PrivImageConfig"]


@hookimpl
def register_plugins(register):
    register(PrivImage)
