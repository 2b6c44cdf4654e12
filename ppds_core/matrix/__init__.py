"""The matrix runner: config → cells → fits and measurements → results.jsonl.

See docs/matrix.md for the config reference, cache semantics, sharding and
the results schema.
"""

from importlib import import_module

# Exports resolve on first use: the runner pulls in Lightning and Opacus, which
# `ppds --version` or `ppds leaderboard` should not pay for.
_EXPORTS = {
    "Cell": "cells", "content_hash": "cells", "expand_cells": "cells", "in_shard": "cells",
    "parse_shard": "cells",
    "MatrixConfig": "config", "ResolvedMatrix": "config", "load_matrix": "config",
    "FitOutcome": "fit", "fit_and_save": "fit", "fit_generator": "fit", "load_fitted": "fit",
    "REQUIRED_KEYS": "results", "RESULTS_FILE": "results", "append_rows": "results",
    "read_results": "results", "read_rows": "results", "ResultRow": "row",
    "RunSummary": "runner", "run_matrix": "runner", "run_worker": "_worker", "run_status": "_status",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Cell",
    "content_hash",
    "expand_cells",
    "in_shard",
    "parse_shard",
    "MatrixConfig",
    "ResolvedMatrix",
    "load_matrix",
    "FitOutcome",
    "fit_and_save",
    "fit_generator",
    "load_fitted",
    "REQUIRED_KEYS",
    "RESULTS_FILE",
    "append_rows",
    "read_results",
    "read_rows",
    "ResultRow",
    "RunSummary",
    "run_matrix",
    "run_worker",
    "run_status",
    "quickstart_config_path",
]


def quickstart_config_path():
    """The bundled quickstart matrix (package data, so it works from an installed wheel)."""
    from importlib.resources import files

    return files(__name__).joinpath("quickstart.yaml")
