"""The matrix runner: config → cells → fits and measurements → results.jsonl.

See docs/matrix.md for the config reference, cache semantics, sharding and
the results schema.
"""

from .cells import Cell, content_hash, expand_cells, in_shard, parse_shard
from .config import MatrixConfig, ResolvedMatrix, load_matrix
from .fit import FitOutcome, fit_and_save, fit_generator, load_fitted
from .results import REQUIRED_KEYS, RESULTS_FILE, append_rows, read_results, read_rows
from .runner import RunSummary, run_matrix

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
    "RunSummary",
    "run_matrix",
    "quickstart_config_path",
]


def quickstart_config_path():
    """The bundled quickstart matrix (package data, so it works from an installed wheel)."""
    from importlib.resources import files

    return files(__name__).joinpath("quickstart.yaml")
