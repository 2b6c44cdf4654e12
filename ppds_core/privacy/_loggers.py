"""Opt-in experiment trackers for DP-SGD fits: ``trainer: {logger: NAME}``.

Off by default (the engine's Trainer has ``logger=False``). A matrix (or
``FitContext.trainer``) may name one of :data:`LOGGERS`; the engine builds that
Lightning logger with its files under the fit's working directory, so its logs
stay inside the run folder, and every tracker is configured offline: CSV and
TensorBoard write files, MLflow a local ``file:`` store, Weights & Biases
``offline=True`` (sync later with ``wandb sync`` if you want to). Besides what
a module logs itself, the engine logs the privacy spent so far at each progress
step (``dp/epsilon`` or ``dp/epsilon_rdp_upper``, see
:meth:`DPSGDState.progress_info`) and the training loss (``dp/loss``).

A Lightning ``Logger`` object (Python API) is passed through as it is.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError, did_you_mean

__all__ = ["LOGGERS", "check_logger_option", "build_logger"]


def _csv(save_dir: Path):
    from pytorch_lightning.loggers import CSVLogger

    return CSVLogger(save_dir=str(save_dir), name="csv")


def _tensorboard(save_dir: Path):
    from pytorch_lightning.loggers import TensorBoardLogger

    return TensorBoardLogger(save_dir=str(save_dir), name="tensorboard", default_hp_metric=False)


def _mlflow(save_dir: Path):
    from pytorch_lightning.loggers import MLFlowLogger

    return MLFlowLogger(experiment_name="ppds", tracking_uri=(save_dir / "mlruns").resolve().as_uri())


def _wandb(save_dir: Path):
    from pytorch_lightning.loggers import WandbLogger

    return WandbLogger(save_dir=str(save_dir), project="ppds", offline=True)


#: name → (builder, the module it needs or None, the install hint)
LOGGERS: dict[str, tuple[Callable[[Path], Any], str | None, str]] = {
    "csv": (_csv, None, ""),
    "tensorboard": (_tensorboard, "tensorboard", "pip install tensorboard"),
    "mlflow": (_mlflow, "mlflow", "pip install mlflow"),
    "wandb": (_wandb, "wandb", "pip install wandb"),
}


def check_logger_option(value: Any, where: str = "trainer") -> None:
    """Refuse an unknown tracker name, or one whose package is missing, in one line."""
    if value is None or isinstance(value, bool) or not isinstance(value, str):
        return  # False/True/None or a Logger object: Lightning's own meaning
    if value not in LOGGERS:
        raise ConfigError(f"{where}.logger: {value!r} is not a tracker ppds builds; use one of "
                          f"{', '.join(LOGGERS)} (or false){did_you_mean(value, sorted(LOGGERS))}")
    _, module, hint = LOGGERS[value]
    if module is not None and importlib.util.find_spec(module) is None:
        raise ConfigError(f"{where}.logger: {value!r} needs the {module} package, which is not "
                          f"installed; {hint}, or choose 'csv'")


def build_logger(value: Any, save_dir: Path | None) -> Any:
    """The Lightning logger for the ``logger`` option (a name → a tracker under ``save_dir``)."""
    if not isinstance(value, str) or isinstance(value, bool):
        return value
    check_logger_option(value)
    base = Path(save_dir) if save_dir is not None else Path.cwd()
    base = base / "logs"
    base.mkdir(parents=True, exist_ok=True)
    return LOGGERS[value][0](base)
