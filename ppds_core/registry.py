"""Discover plugins from the ``ppds`` entry-point group, robustly.

Every entry point (first-party ones included) loads inside its own
try/except, so a broken third-party package is *listed* as broken with its
error and never takes the CLI down. Name clashes across distributions are
reported naming both. ``PPDS_DISABLE_PLUGINS`` (comma list, or ``*`` for all)
and ``PPDS_ENABLE_PLUGINS`` (allow-list) switch entry points or plugin names
off before anything is imported.
"""

from __future__ import annotations

import os
import re
import traceback
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

import pluggy

from . import hookspecs
from .errors import BrokenPluginError, PluginClashError, PluginNotFoundError, did_you_mean

if TYPE_CHECKING:
    from ._plugin_cache import PluginCache
    from .interfaces import Plugin

__all__ = ["PluginInfo", "Registry", "get_registry", "reset_registry", "ENTRY_POINT_GROUP",
           "KINDS"]  # noqa: F822 - KINDS resolves in __getattr__ (it imports torch)

ENTRY_POINT_GROUP = "ppds"


def _kinds() -> dict[str, type[Plugin]]:
    """Kind name → base class. The interfaces import torch: only loading a plugin needs them."""
    from .interfaces import Attack, DatasetProvider, Generator, Metric

    return {"generator": Generator, "metric": Metric, "attack": Attack, "dataset": DatasetProvider}


def __getattr__(name: str):  # KINDS, resolved on first use (PEP 562)
    if name == "KINDS":
        return _kinds()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class PluginInfo:
    """One row of `ppds plugins list`."""

    name: str
    kind: str
    distribution: str
    version: str
    entry_point: str
    status: str = "ok"  # ok | broken
    error: str | None = None
    cls: type[Plugin] | None = None
    entry_point_name: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "distribution": self.distribution,
            "version": self.version,
            "entry_point": self.entry_point,
            "status": self.status,
            "error": self.error,
        }


def _env_list(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None or not raw.strip():
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


def _short_error(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" ({last[0].filename}:{last[0].lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


def entry_point_distribution(ep: metadata.EntryPoint) -> tuple[str, str]:
    """(name, version) of the distribution that declares ``ep``; "?" when unknown."""
    dist = getattr(ep, "dist", None)
    return (dist.metadata["Name"], dist.version) if dist is not None else ("?", "?")


class Registry:
    """All plugins visible in this environment, by kind and name."""

    def __init__(self, entry_points: list[metadata.EntryPoint] | None = None,
                 cache: PluginCache | None = None):
        """``cache`` (``ppds plugins list`` only): rows of unchanged entry points come from it,
        not from importing them, so their ``cls`` is None; such a registry only lists."""
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._infos: list[PluginInfo] = []
        self._by_name: dict[str, list[PluginInfo]] = {}
        eps = entry_points if entry_points is not None else list(
            metadata.entry_points(group=ENTRY_POINT_GROUP)
        )
        disabled = _env_list("PPDS_DISABLE_PLUGINS") or set()
        allowed = _env_list("PPDS_ENABLE_PLUGINS")
        self._disabled, self._allowed = disabled, allowed
        for ep in sorted(eps, key=lambda e: e.name):
            if {"*", "all", ep.name} & disabled:  # switched-off code is never imported
                continue
            infos = cache.get(ep) if cache is not None else None
            if infos is None:
                infos = self._load(ep)
                if cache is not None:
                    cache.put(ep, infos)
            self._infos.extend(info for info in infos if self._kept(info))
        self._index()

    def _kept(self, info: PluginInfo) -> bool:
        """Apply the switches to a loaded plugin (by its name or its entry point's)."""
        if info.name in self._disabled:
            return False
        allowed = self._allowed
        return allowed is None or info.name in allowed or info.entry_point_name in allowed

    def _load(self, ep: metadata.EntryPoint) -> list[PluginInfo]:
        """Import one entry point: its plugins, or one broken row saying why (switches not applied)."""
        dist_name, dist_version = entry_point_distribution(ep)

        def broken(err: str) -> list[PluginInfo]:
            return [PluginInfo(ep.name, "unknown", dist_name, dist_version, ep.value, "broken", err, None,
                               ep.name)]

        try:
            module = ep.load()
        except BaseException as exc:  # noqa: BLE001 - sys.exit / KeyboardInterrupt at import too:
            # a broken plugin must never take the host down
            return broken(f"failed to import {ep.value}: {_short_error(exc)}")
        try:
            self.pm.register(module, name=f"{dist_name}:{ep.name}")
        except BaseException as exc:  # noqa: BLE001 - bad hook signature, duplicate registration, …
            return broken(f"invalid hooks in {ep.value}: {_short_error(exc)}")
        impls = [i for i in self.pm.hook.register_plugins.get_hookimpls() if i.plugin is module]
        if not impls:
            return broken(f"{ep.value} defines no register_plugins hook (decorate it with @ppds_core.hookimpl)")
        found: list[PluginInfo] = []
        from .interfaces import PluginConfig

        kinds = _kinds()

        def register(cls: Any) -> None:
            kind = next((k for k, base in kinds.items() if isinstance(cls, type) and issubclass(cls, base)), None)
            if kind is None:
                raise TypeError(f"{cls!r} is not a Generator, Metric, Attack or DatasetProvider subclass")
            name = getattr(cls, "name", None)
            if not isinstance(name, str) or not name:
                raise TypeError(f"{cls.__name__} has no 'name'")
            if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,63}", name) or ".." in name:
                # a name becomes part of folder names in the run folder: no separators, no '..'
                raise TypeError(f"{cls.__name__}.name {name!r} is not allowed; use lower-case letters, "
                                "digits and - _ . (at most 64 characters)")
            if getattr(cls, "__abstractmethods__", None):
                raise TypeError(f"{cls.__name__} leaves abstract methods {sorted(cls.__abstractmethods__)}")
            config = getattr(cls, "Config", None)
            if not (isinstance(config, type) and issubclass(config, PluginConfig)):
                raise TypeError(f"{cls.__name__}.Config must be a ppds_core.PluginConfig subclass (a strict "
                                f"pydantic model), got {config!r}")
            if kind == "generator" and not isinstance(getattr(cls, "trains_with_dp_sgd", None), bool):
                raise TypeError(
                    f"{cls.__name__} does not declare trains_with_dp_sgd: set it to True if it trains "
                    "with ppds' DP-SGD engine, or False if it privatises its data another way")
            found.append(
                PluginInfo(name, kind, dist_name, dist_version, ep.value, cls=cls, entry_point_name=ep.name)
            )

        try:
            for impl in impls:
                impl.function(register=register)
        except BaseException as exc:  # noqa: BLE001 - sys.exit in register_plugins included
            return broken(f"register_plugins in {ep.value} failed: {_short_error(exc)}")
        return found

    def _index(self) -> None:
        self._by_name = {}
        for info in self._infos:
            if info.status == "ok":
                self._by_name.setdefault(info.name, []).append(info)
        for name, infos in self._by_name.items():
            if len(infos) > 1:
                who = " and ".join(f"{i.distribution} ({i.entry_point})" for i in infos)
                for info in infos:
                    info.status = "broken"
                    info.error = f"name clash: {name!r} is registered by {who}; uninstall one of them"

    # ------------------------------------------------------------------ queries

    def list(self, kind: str | None = None, include_broken: bool = True) -> list[PluginInfo]:
        rows = [i for i in self._infos if kind is None or i.kind == kind]
        if not include_broken:
            rows = [i for i in rows if i.status == "ok"]
        return sorted(rows, key=lambda i: (i.kind, i.name))

    def names(self, kind: str | None = None) -> list[str]:
        return sorted({i.name for i in self.list(kind, include_broken=False)})

    def info(self, name: str, kind: str | None = None) -> PluginInfo:
        """The plugin's row; errors say "did you mean" / why it is broken / who clashes."""
        matches = [i for i in self._infos if i.name == name and (kind is None or i.kind in (kind, "unknown"))]
        ok = [i for i in matches if i.status == "ok"]
        if ok:
            return ok[0]
        if matches:
            if any(i.error and i.error.startswith("name clash") for i in matches):
                raise PluginClashError(matches[0].error)
            raise BrokenPluginError(f"plugin {name!r} is broken: {matches[0].error}")
        what = f"{kind} plugin" if kind else "plugin"
        pool = self.names(kind)
        hint = did_you_mean(name, pool)
        if not hint:
            hint = f" (available: {', '.join(pool) or 'none'}; `ppds plugins list` shows all)"
        raise PluginNotFoundError(f"unknown {what} {name!r}{hint}")

    def get(self, name: str, kind: str | None = None) -> type[Plugin]:
        """The plugin class registered under ``name``."""
        cls = self.info(name, kind).cls
        assert cls is not None
        return cls


_REGISTRY: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, built on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = Registry()
    return _REGISTRY


def reset_registry() -> None:
    """Forget the cached registry (after installing a plugin, or in tests)."""
    global _REGISTRY
    _REGISTRY = None
