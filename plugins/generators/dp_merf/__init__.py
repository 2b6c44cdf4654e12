"""DP-MERF: a generator trained to match one noisy random-feature mean embedding.

Entry point ``ppds_plugins.generators.dp_merf`` registers :class:`DPMERF` as
``dp-merf`` (Harder, Adamczewski & Park, AISTATS 2021; a DPImageBench
baseline). The private modules hold one job each: ``_config`` (its options),
``_features`` (random Fourier features and the class-conditional mean
embedding), ``_nets`` (the reference's small conditional generator), ``_train``
(the one Gaussian release and the post-processing fit of the generator) and
``_plugin`` (fit / sample / save / load). The privacy of the whole method is
one call to :func:`ppds_core.privacy.gaussian_release`.
"""

from __future__ import annotations

from ppds_core import hookimpl

from ._config import DPMERFConfig
from ._plugin import DPMERF

__all__ = ["DPMERF", "DPMERFConfig", "register_plugins"]


@hookimpl
def register_plugins(register):
    register(DPMERF)
