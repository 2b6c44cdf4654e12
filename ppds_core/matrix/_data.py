"""The one way a dataset name becomes splits.

A matrix file, ``ppds fit`` and :func:`ppds_core.load_dataset` all name a
dataset (and optionally a public set) and want its splits. Each goes through
here, so they validate the same options, apply ``--smoke`` the same way and
load the public set the same way (its training pool, before the private
dataset's splits are drawn):

- :func:`resolve_dataset` — names and options → a :class:`ResolvedDataset`
  (the matrix resolves its own in :func:`~ppds_core.matrix.config.load_matrix`,
  with the file and place in every error);
- :func:`check_available` — the cheap "can it load here?" check, one line;
- :func:`load_splits` — a :class:`ResolvedDataset` → :class:`~ppds_core.imageset.Splits`;
- :func:`check_deltas` — δ < 1/N of each private split, before any cell runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..budget import check_delta_for
from ..errors import BudgetError, ConfigError, DataNotFoundError
from ..imageset import Splits
from ..interfaces import DatasetProvider
from .config import ResolvedDataset, ResolvedMatrix, ResolvedPlugin, resolve_plugin

__all__ = ["check_available", "check_datasets_available", "check_deltas", "dataset_splits", "load_splits",
           "resolve_dataset"]


def _provider(p: ResolvedPlugin) -> DatasetProvider:
    provider = p.cls(p.config)
    assert isinstance(provider, DatasetProvider)
    return provider


def check_available(p: ResolvedPlugin, prefix: str = "") -> None:
    """DataNotFoundError (``prefix`` + one line) when dataset ``p`` cannot be loaded here."""
    avail = _provider(p).availability()
    if not avail.available:
        raise DataNotFoundError(f"{prefix}dataset {p.name!r} is not available here: {avail.detail}")


def check_datasets_available(matrix: ResolvedMatrix) -> None:
    """DataNotFoundError naming the first dataset that cannot be loaded here."""
    for d in matrix.datasets:
        for p in (d.plugin, d.public):
            if p is not None:
                check_available(p, f"{matrix.source}: {p.where}: ")


def check_deltas(matrix: ResolvedMatrix, cells, splits_of: Callable[[Any], Splits] | None = None) -> None:
    """Refuse the matrix (exit 2) if a private cell's δ is not below 1/N of its private split.

    Run before any cell, so ``delta: 0.5`` is one line at validation rather than
    a failed fit in every cell. ``splits_of(cell)`` loads (and may cache) a cell's
    splits; a dataset that fails to load is left to its cells, which record it.
    """
    sizes: dict[int, int | None] = {}
    for cell in cells:
        if cell.generator is None or not cell.budget.is_private:
            continue
        if cell.dataset_index not in sizes:
            try:
                sizes[cell.dataset_index] = len((splits_of or (lambda c: load_splits(c.dataset)))(cell).private)
            except Exception:  # noqa: BLE001 - recorded per cell when the cell runs
                sizes[cell.dataset_index] = None
        n = sizes[cell.dataset_index]
        try:
            if n is not None:
                check_delta_for(cell.delta, n)
        except BudgetError as err:
            raise ConfigError(f"{matrix.source}: delta: {err} (dataset "
                              f"{cell.dataset.plugin.name!r})") from None


def load_splits(dataset: ResolvedDataset) -> Splits:
    """Private / holdout / test splits of ``dataset``, with its public set's training pool."""
    public = None
    if dataset.public is not None:
        public = _provider(dataset.public).load()[0]
    return _provider(dataset.plugin).splits(public=public)


def _named(name: str, config: dict[str, Any] | None, smoke: bool, check: bool) -> ResolvedPlugin:
    plugin = resolve_plugin(name, "dataset", config, smoke=smoke)
    if check:
        check_available(plugin)
    return plugin


def resolve_dataset(name: str, config: dict[str, Any] | None = None,
                    public: str | dict[str, Any] | None = None, *, smoke: bool = False,
                    check: bool = False) -> ResolvedDataset:
    """Dataset ``name`` (and ``public``: a name, or ``{"name": ..., "config": {...}}`` as in a matrix).

    ``check`` runs :func:`check_available` on each before the next is resolved.
    """
    plugin = _named(name, config, smoke, check)
    pub = None
    if public is not None:
        pub_name, pub_config = (public, None) if isinstance(public, str) else (public["name"], public.get("config"))
        pub = _named(pub_name, pub_config, smoke, check)
    return ResolvedDataset(plugin, pub)


def dataset_splits(name: str, config: dict[str, Any] | None = None,
                   public: str | dict[str, Any] | None = None, *, smoke: bool = False,
                   check: bool = False) -> Splits:
    """:func:`load_splits` of :func:`resolve_dataset` (``ppds fit``, :func:`ppds_core.load_dataset`)."""
    return load_splits(resolve_dataset(name, config, public, smoke=smoke, check=check))
