"""ppds core: plugin interfaces, registry, data, privacy engine, matrix runner.

No generator, attack or metric lives here; they arrive through the ``ppds``
entry-point group (first-party ones from ``ppds_plugins`` included).
"""

from ._version import __version__
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
    # The runner imports Lightning and Opacus; load it only when asked for.
    if name in ("run_matrix", "fit_generator", "ResultRow"):
        from . import matrix

        return getattr(matrix, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
