"""DP-GAN: a conditional hinge GAN whose discriminator alone trains with DP-SGD.

Entry point ``ppds_plugins.generators.dp_gan`` registers :class:`DPGAN` as
``dp-gan``. The private modules hold one job each: ``_nets`` (architectures
sized from the image shape), ``_losses`` (hinge losses), ``_players`` (the
generator's step against a non-private mirror of the discriminator),
``_train`` (the loop around the core's DP-SGD engine), ``_plugin`` (fit /
sample / save / load) and ``_grid`` (the PNG sample grid).
"""

from __future__ import annotations

from ppds_core import hookimpl

from ._config import DPGANConfig
from ._plugin import DPGAN

__all__ = ["DPGAN", "DPGANConfig", "register_plugins"]


@hookimpl
def register_plugins(register):
    register(DPGAN)
