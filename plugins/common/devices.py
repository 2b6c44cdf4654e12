"""Which torch device a plugin computes on: the cell's, resolved once by the runner.

There is one rule (:func:`ppds_core.device.resolve_device`): a GPU only when
the matrix's ``trainer.accelerator`` asks for one (``gpu``, ``cuda``, or
``auto`` with a GPU visible), otherwise the CPU, the DP-SGD engine's own
default. A cell's fit, its sampling and its measurements therefore all run on
the same device. The runner puts the answer in ``FitContext.device`` /
``EvalContext.device``; plugins read it with :func:`device_of`.
"""

from __future__ import annotations

from typing import Any

import torch

from ppds_core import ConfigError
from ppds_core.device import DEFAULT_ACCELERATOR, resolve_device

__all__ = ["default_device", "device_of"]


def device_of(ctx: Any) -> torch.device:
    """The device of a fit or evaluation context (``ctx.device``).

    A GPU asked for by name (``gpu``/``cuda``) that torch does not see is a
    clear error here rather than a silent fall-back to the CPU, so a
    generator's non-private work (public pretraining, sampling) fails the way
    Lightning's private fit would.
    """
    accelerator = str((ctx.trainer or {}).get("accelerator", DEFAULT_ACCELERATOR)).lower()
    device = ctx.device or resolve_device(ctx.trainer)
    if accelerator in ("gpu", "cuda") and device != "cuda":
        raise ConfigError(
            f"trainer.accelerator is {accelerator!r} but torch sees no CUDA device here; "
            "set accelerator: cpu (or auto) to run on the CPU"
        )
    return torch.device(device)


def default_device() -> torch.device:
    """Where a helper called without a device computes: the CPU, as for a cell that names none."""
    return torch.device(resolve_device(None))
