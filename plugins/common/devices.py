"""Which torch device a plugin computes on, from the cell's ``trainer`` options.

Two rules, kept apart on purpose because their defaults differ:

* :func:`device_for` (metrics, attacks' classifiers): evaluation is cheap to
  move, so it uses a GPU whenever one is visible unless the matrix says
  ``accelerator: cpu``.
* :func:`requested_device` (a generator's own non-private work: sampling,
  public pretraining): it follows the trainer that fits the generator, so a
  GPU only when ``accelerator`` asks for one (or ``auto`` finds one), and a
  clear error when it asks for a GPU that is not there.
"""

from __future__ import annotations

from typing import Any

import torch

from ppds_core import ConfigError

__all__ = ["default_device", "device_for", "requested_device"]


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_for(trainer: dict | None) -> torch.device:
    """The device a metric should use for a cell: CPU when the matrix asks for it, else the default."""
    accelerator = str((trainer or {}).get("accelerator", "auto")).lower()
    return torch.device("cpu") if accelerator == "cpu" else default_device()


def requested_device(trainer: dict[str, Any]) -> torch.device:
    """Where sampling and non-private pretraining run: the GPU if the trainer asks for one."""
    acc = str(trainer.get("accelerator", "cpu")).lower()
    if acc in ("gpu", "cuda") or (acc == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("trainer.accelerator asks for a GPU but torch sees no CUDA device here")
        return torch.device("cuda")
    return torch.device("cpu")
