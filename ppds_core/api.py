"""The Python calls behind every CLI command that inspects plugins and data."""

from __future__ import annotations

from typing import Any

from .errors import PpdsError
from .imageset import Splits
from .interfaces import Availability, Plugin
from .registry import PluginInfo, get_registry

__all__ = ["list_plugins", "get_plugin", "create_plugin", "describe_plugin", "list_datasets", "load_dataset"]


def list_plugins(kind: str | None = None, include_broken: bool = True) -> list[PluginInfo]:
    """Every plugin found through the ``ppds`` entry points (broken ones too)."""
    return get_registry().list(kind, include_broken)


def get_plugin(name: str, kind: str | None = None) -> type[Plugin]:
    """The plugin class for ``name``; PluginNotFoundError with "did you mean" otherwise."""
    return get_registry().get(name, kind)


def create_plugin(name: str, kind: str | None = None, config: dict[str, Any] | None = None) -> Plugin:
    """An instance of plugin ``name`` with ``config`` validated by its own model."""
    cls = get_plugin(name, kind)
    cls.validate_config(config, where=f"{name}.config")
    return cls(config)


def describe_plugin(name: str) -> dict[str, Any]:
    """What `ppds plugins show` prints: metadata, JSON schema, defaults, capabilities."""
    info = get_registry().info(name)
    cls = info.cls
    assert cls is not None
    defaults = {}
    for key, f in cls.Config.model_fields.items():
        if not f.is_required():
            value = f.get_default(call_default_factory=True)
            defaults[key] = value.model_dump() if hasattr(value, "model_dump") else value
    doc = (cls.description or (cls.__doc__ or "")).strip()
    return {
        **info.to_dict(),
        "description": doc.split("\n\n")[0].replace("\n", " ") if doc else "",
        "config_schema": cls.Config.model_json_schema(),
        "defaults": defaults,
        "capabilities": cls.capabilities(),
    }


def list_datasets() -> list[dict[str, Any]]:
    """Each dataset plugin and whether it can be loaded here (and if not, what is missing)."""
    rows = []
    for info in list_plugins("dataset", include_broken=False):
        cls = info.cls
        try:
            avail = cls().availability()  # type: ignore[misc]
        except PpdsError as err:
            avail = Availability(False, str(err))
        rows.append(
            {
                "name": info.name,
                "embedded": bool(getattr(cls, "embedded", False)),
                "available": avail.available,
                "detail": avail.detail,
                "distribution": info.distribution,
            }
        )
    return rows


def load_dataset(name: str, config: dict[str, Any] | None = None,
                 public: str | dict[str, Any] | None = None) -> Splits:
    """Private / holdout / test splits of dataset ``name`` (plus ``public`` data if named).

    ``public`` takes the matrix config's forms: a dataset name, or
    ``{"name": ..., "config": {...}}`` to configure it.
    """
    # the matrix's own path (lazy: it imports the accountants)
    from .matrix._data import dataset_splits

    return dataset_splits(name, config, public)
