"""The one answer to "which device does this cell compute on".

A cell's fit, its sampling and its measurements all follow the matrix's
``trainer.accelerator``, so a GPU is used for all of them or for none. The
default is the DP-SGD engine's (docs/dp-sgd-engine.md, "Trainer options"):
CPU. The runner resolves it once per run and hands it down in
:attr:`FitContext.device <ppds_core.interfaces.FitContext.device>` and
:attr:`EvalContext.device <ppds_core.interfaces.EvalContext.device>`; a context
built by hand without one resolves it from its own ``trainer`` the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["DEFAULT_ACCELERATOR", "resolve_device"]

#: what an absent ``trainer.accelerator`` means (the engine gives Lightning the same)
DEFAULT_ACCELERATOR = "cpu"
#: accelerators that mean "a GPU, if torch sees one"
_GPU_ACCELERATORS = ("gpu", "cuda", "auto")


def resolve_device(trainer: Mapping[str, Any] | None) -> str:
    """``"cuda"`` or ``"cpu"`` for these trainer options.

    ``cuda`` only when ``accelerator`` is ``gpu``, ``cuda`` or ``auto`` and torch
    sees a CUDA device; otherwise ``cpu`` (a GPU asked for but absent is
    Lightning's error at fit time, not a silent GPU here). torch is asked only
    when a GPU is asked for: ``torch.cuda.is_available()`` must not run in the
    runner before ``_isolation`` made it safe for forked units.
    """
    accelerator = str((trainer or {}).get("accelerator", DEFAULT_ACCELERATOR)).lower()
    if accelerator not in _GPU_ACCELERATORS:
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
