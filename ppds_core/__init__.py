"""ppds core: plugin interfaces, registry, data, privacy engine, matrix runner.

No generator, attack or metric lives here; they arrive through the ``ppds``
entry-point group (first-party ones from ``ppds_plugins`` included).

Every public name resolves on first use (PEP 562): ``import ppds_core`` (and so
every ``ppds`` command, ``--version`` included) costs no torch, Lightning or
Opacus import; ``from ppds_core import Generator`` imports what it needs.
"""

from importlib import import_module
from typing import TYPE_CHECKING

from ._version import __version__

#: public name → the module (relative to this package) that defines it
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("create_plugin", "describe_plugin", "get_plugin", "list_datasets",
                     "list_plugins", "load_dataset"), ".api"),
    "PrivacyBudget": ".budget",
    **dict.fromkeys(("BrokenPluginError", "BudgetError", "ConfigError", "DataNotFoundError",
                     "LedgerError", "PluginClashError", "PluginNotFoundError", "PpdsError",
                     "SkipMeasurement", "UnsafeFileError", "WeightsNotFoundError"), ".errors"),
    "hookimpl": ".hookspecs",
    **dict.fromkeys(("ImageSet", "Splits", "SplitSizes", "make_splits"), ".imageset"),
    **dict.fromkeys(("Attack", "Availability", "DatasetConfig", "DatasetProvider", "EvalContext",
                     "FitContext", "Generator", "Measurement", "Metric", "Plugin", "PluginConfig"),
                    ".interfaces"),
    **dict.fromkeys(("DPSGDSpend", "GaussianSpend", "Ledger"), ".privacy.ledger"),
    **dict.fromkeys(("GaussianRelease", "gaussian_release"), ".privacy.release"),
    **dict.fromkeys(("PluginInfo", "get_registry", "reset_registry"), ".registry"),
    # the runner imports Lightning and Opacus
    **dict.fromkeys(("run_matrix", "fit_generator", "ResultRow"), ".matrix"),
}

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from .api import (
        create_plugin,
        describe_plugin,
        get_plugin,
        list_datasets,
        list_plugins,
        load_dataset,
    )
    from .budget import PrivacyBudget
    from .errors import (
        BrokenPluginError,
        BudgetError,
        ConfigError,
        DataNotFoundError,
        LedgerError,
        PluginClashError,
        PluginNotFoundError,
        PpdsError,
        SkipMeasurement,
        UnsafeFileError,
        WeightsNotFoundError,
    )
    from .hookspecs import hookimpl
    from .imageset import ImageSet, Splits, SplitSizes, make_splits
    from .interfaces import (
        Attack,
        Availability,
        DatasetConfig,
        DatasetProvider,
        EvalContext,
        FitContext,
        Generator,
        Measurement,
        Metric,
        Plugin,
        PluginConfig,
    )
    from .matrix import ResultRow, fit_generator, run_matrix
    from .privacy.ledger import DPSGDSpend, GaussianSpend, Ledger
    from .privacy.release import GaussianRelease, gaussian_release
    from .registry import PluginInfo, get_registry, reset_registry

__all__ = [
    "__version__",
    # plugin API
    "hookimpl",
    "Plugin",
    "PluginConfig",
    "Generator",
    "FitContext",
    "Metric",
    "Attack",
    "EvalContext",
    "Measurement",
    "DatasetProvider",
    "DatasetConfig",
    "Availability",
    # data and budgets
    "ImageSet",
    "Splits",
    "SplitSizes",
    "make_splits",
    "PrivacyBudget",
    "Ledger",
    "DPSGDSpend",
    "GaussianSpend",
    "GaussianRelease",
    "gaussian_release",
    # registry and calls
    "PluginInfo",
    "get_registry",
    "reset_registry",
    "list_plugins",
    "get_plugin",
    "create_plugin",
    "describe_plugin",
    "list_datasets",
    "load_dataset",
    "run_matrix",
    "fit_generator",
    "ResultRow",
    # errors
    "PpdsError",
    "ConfigError",
    "PluginNotFoundError",
    "PluginClashError",
    "BrokenPluginError",
    "DataNotFoundError",
    "WeightsNotFoundError",
    "BudgetError",
    "LedgerError",
    "UnsafeFileError",
    "SkipMeasurement",
]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
