"""The ``dp-diffusion`` generator plugin (DPDM-style DP diffusion model).

``_model`` holds the generator (fit / sample / save / load), ``_train`` its
DP-SGD run through the core's engine. The network, objective, sampler and
config live in :mod:`ppds_plugins.common.diffusion`, shared with privimage
(which subclasses :class:`DiffusionGenerator`) and the reconstruction prior.
"""

from __future__ import annotations

from ppds_plugins.common.diffusion.config import DiffusionConfig

from ppds_core import hookimpl

from ._model import DiffusionGenerator

__all__ = ["DiffusionGenerator", "DiffusionConfig"]


@hookimpl
def register_plugins(register):
    register(DiffusionGenerator)
