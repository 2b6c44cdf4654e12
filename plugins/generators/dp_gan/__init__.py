"""DP-GAN: a conditional hinge GAN whose discriminator alone trains with DP-SGD.

Entry point ``ppds_plugins.generators.dp_gan`` registers :class:`DPGAN` as
``dp-gan``. The private modules hold one job each: ``_config`` (its options),
``_nets`` (architectures sized from the image shape), ``_losses`` (hinge
losses), ``_module`` (the discriminator's private step and the generator's
step against a non-private mirror of it), ``_train`` (the plan and the run
through the core's DP-SGD engine) and ``_plugin`` (fit / sample / save /
load). The EMA, the sample grid, the pixel units and the saved-model layout
come from :mod:`ppds_plugins.common`.
"""

from __future__ import annotations

from ppds_core import hookimpl

from ._config import DPGANConfig
from ._plugin import DPGAN

__all__ = ["DPGAN", "DPGANConfig", "register_plugins"]


@hookimpl
def register_plugins(register):
    register(DPGAN)
