"""Lightning's side of DP-SGD: a DDP strategy without DDP's gradient sync, and the Trainer.

Why not Lightning's own DDP strategy: it wraps the module in
``DistributedDataParallel``, whose backward hooks average the *raw*
gradients across ranks. With DP-SGD the all-reduce must happen after
per-sample clipping and after rank 0 added the noise, which is what Opacus'
``DistributedDPOptimizer`` does itself. Under the DDP wrapper the raw
all-reduce is wasted work at best; with a plain (non-distributed) DP
optimizer each rank adds its own noise and steps on its own clipped gradient
and the replicas drift apart silently. So :class:`DPDDPStrategy` keeps
Lightning's process management (launch, process group, ranks, barriers) and
only broadcasts rank 0's weights at the start, like Opacus' ``DPDDP``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.overrides.distributed import _sync_module_states
from pytorch_lightning.strategies import DDPStrategy, SingleDeviceStrategy, Strategy

from ..errors import ConfigError, did_you_mean
from ._loggers import build_logger, check_logger_option

__all__ = ["DPDDPStrategy", "build_trainer", "ENGINE_OWNED_TRAINER_KEYS"]

#: Trainer options the engine sets itself: each would break the exact step
#: count, the Poisson sampler or per-sample clipping if a user changed it.
ENGINE_OWNED_TRAINER_KEYS: frozenset[str] = frozenset({
    "max_steps", "max_epochs", "min_steps", "min_epochs", "max_time",
    "use_distributed_sampler", "accumulate_grad_batches", "gradient_clip_val",
    "gradient_clip_algorithm", "limit_train_batches", "overfit_batches",
    "reload_dataloaders_every_n_epochs",
})

#: strategies that launch with a fresh interpreter per rank (``popen``): the
#: calling process is rank 0 and keeps the engine's state (steps, accountant)
_DDP_NAMES = {"ddp", "auto", "dp_ddp", "ddp_find_unused_parameters_false",
              "ddp_find_unused_parameters_true"}


class DPDDPStrategy(DDPStrategy):
    """Lightning DDP process management; gradients are reduced by the DP optimizer."""

    strategy_name = "ppds_dp_ddp"

    def configure_ddp(self) -> None:
        # no DistributedDataParallel wrapper: start every replica from rank 0's weights
        _sync_module_states(self.model)

    def _register_ddp_hooks(self) -> None:  # there is no DDP module to hook
        return None


def _world_size(cfg: dict[str, Any]) -> int | None:
    """devices × num_nodes when both are plain numbers, else None (unknown)."""
    devices = cfg.get("devices", 1)
    nodes = cfg.get("num_nodes", 1)
    if isinstance(devices, str) and devices.isdigit():
        devices = int(devices)
    if isinstance(devices, list | tuple):
        devices = len(devices)
    if isinstance(devices, int) and devices > 0 and isinstance(nodes, int):
        return devices * nodes
    return None


def _resolve_strategy(cfg: dict[str, Any]) -> str | Strategy:
    strategy = cfg.get("strategy", "auto")
    if isinstance(strategy, DPDDPStrategy | SingleDeviceStrategy):
        return strategy
    if isinstance(strategy, Strategy):
        raise ConfigError(
            f"trainer.strategy: {type(strategy).__name__} cannot run DP-SGD correctly "
            "(noise must be added once for the global batch); use strategy 'ddp' or 'auto'"
        )
    name = str(strategy)
    if name in ("single_device",):
        return name
    if name == "auto" and _world_size(cfg) == 1:
        return "auto"
    if name in _DDP_NAMES:
        return DPDDPStrategy(start_method="popen")
    raise ConfigError(
        f"trainer.strategy: {name!r} is not supported for DP-SGD; use 'auto' (one device) or "
        "'ddp' (several devices or nodes: noise added once on rank 0, gradients averaged by "
        "Opacus' DistributedDPOptimizer). Spawn/fork launchers run training in child "
        "processes whose privacy accountant the caller would never see."
    )


def _check_precision(cfg: dict[str, Any]) -> None:
    """Full precision only.

    fp16 needs a loss scaler, which scales per-sample gradients before clipping;
    with bf16 autocast Opacus' optimizers assign bf16 gradients to fp32
    parameters and fail (measured: hooks, functorch and ew; only ghost runs).
    """
    precision = str(cfg.get("precision", "32-true"))
    if precision not in {"32", "32-true", "64", "64-true"}:
        raise ConfigError(
            f"trainer.precision: {precision!r} is not supported for DP-SGD training (half "
            "precision breaks per-sample clipping or Opacus' optimizers); use '32-true' or '64-true'"
        )


def check_trainer_options(cfg: dict[str, Any], where: str = "trainer") -> None:
    """Refuse a key Lightning's Trainer does not take, with a suggestion (one ConfigError)."""
    import inspect

    known = set(inspect.signature(pl.Trainer.__init__).parameters) - {"self"}
    unknown = sorted(k for k in cfg if k not in known)
    if unknown:
        key = unknown[0]
        raise ConfigError(f"{where}.{key}: not an option of Lightning's Trainer"
                          f"{did_you_mean(str(key), sorted(known))}")
    check_logger_option(cfg.get("logger"), where)


def build_trainer(
    trainer_cfg: dict[str, Any] | None,
    *,
    max_epochs: int,
    callbacks: Sequence[pl.Callback],
    default_root_dir: Path | None,
) -> pl.Trainer:
    """A quiet CPU-by-default Trainer from the matrix's ``trainer`` dict.

    Everything in ``trainer_cfg`` is passed to Lightning, except the options
    the engine owns (:data:`ENGINE_OWNED_TRAINER_KEYS`), which are refused.
    """
    cfg = dict(trainer_cfg or {})
    check_trainer_options(cfg)
    owned = sorted(ENGINE_OWNED_TRAINER_KEYS & cfg.keys())
    if owned:
        raise ConfigError(
            f"trainer: {', '.join(owned)} cannot be set for DP-SGD training: the engine fixes the "
            "step count to the planned T and the sampling to Poisson; set epochs or steps in the "
            "generator's config instead"
        )
    _check_precision(cfg)
    cfg.setdefault("accelerator", "cpu")
    cfg.setdefault("devices", 1)
    cfg["strategy"] = _resolve_strategy(cfg)
    cfg.setdefault("enable_progress_bar", False)
    cfg.setdefault("enable_model_summary", False)
    # off unless asked for; a tracker name builds that logger, offline, inside the fit's folder
    cfg["logger"] = build_logger(cfg.get("logger", False), default_root_dir)
    cfg.setdefault("enable_checkpointing", False)
    cfg.setdefault("num_sanity_val_steps", 0)
    cfg["callbacks"] = [*cfg.get("callbacks", []), *callbacks]
    if default_root_dir is not None:
        cfg.setdefault("default_root_dir", str(default_root_dir))
    return pl.Trainer(
        max_epochs=max_epochs,
        max_steps=-1,
        use_distributed_sampler=False,
        **cfg,
    )
