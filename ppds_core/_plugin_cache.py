"""What ``ppds plugins list`` shows, without importing the plugins that have not changed.

Importing every plugin (torch, Lightning, diffusers, …) is nearly all of a
``plugins list``. So the rows of each entry point that loaded cleanly (its
plugins' names and kinds) are kept in a JSON file under the user cache folder
(``$PPDS_CACHE_DIR``, else ``$XDG_CACHE_HOME/ppds``, else ``~/.cache/ppds``), one
file per Python environment, under keys that change whenever the answer could:

- the environment's: ppds' and Python's versions, the interpreter, and the
  ``*.dist-info`` (``.egg-info``, ``.pth``) names in every ``sys.path`` folder —
  ``pip install``, upgrade or uninstall adds, renames or removes one, so a new or
  upgraded dependency re-imports everything;
- each entry point's: its name and value, its distribution's name and version,
  and the path, size and modification time of every file of the top-level
  package it lives in (so a plugin edited in place, a source checkout or an
  editable install, is imported again).

An entry point whose import failed is never cached: it is imported, and its
error shown, every time, so installing what it was missing shows at once. The
switches (``PPDS_DISABLE_PLUGINS`` / ``PPDS_ENABLE_PLUGINS``) are applied after
the cache, as without it. A cache that cannot be read or written is ignored.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from ._version import __version__
from .registry import PluginInfo, Registry, entry_point_distribution

__all__ = ["PluginCache", "cache_dir", "list_plugins_cached"]

#: bump when the file's layout changes: an old file is then ignored
FORMAT = 1


def cache_dir() -> Path:
    """``$PPDS_CACHE_DIR``, else ``$XDG_CACHE_HOME/ppds``, else ``~/.cache/ppds``."""
    if os.environ.get("PPDS_CACHE_DIR"):
        return Path(os.environ["PPDS_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "ppds"


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


#: what an installed distribution leaves in a sys.path folder (its name carries the version)
_INSTALLED = (".dist-info", ".egg-info", ".egg-link", ".pth")


def _installed(entry: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(entry or ".") if n.endswith(_INSTALLED))
    except OSError:
        return []


def environment_key() -> str:
    """Changes with ppds, Python, the interpreter, or any distribution installed, upgraded or
    removed on sys.path (each leaves a ``NAME-VERSION.dist-info`` folder, or the like)."""
    found = [(entry, names) for entry in sys.path for names in [_installed(entry)] if names]
    return _digest({"ppds": __version__, "python": sys.version, "executable": sys.executable,
                    "installed": found})


def _tree(top: str) -> str | None:
    """Fingerprint of every file of top-level package (or module) ``top``; None if not found.

    ``find_spec`` of a top-level name locates it without running its code."""
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    roots = list(spec.submodule_search_locations or [])
    files: list[tuple[str, int, int]] = []
    if not roots:
        if not spec.origin or not os.path.isfile(spec.origin):
            return None
        st = os.stat(spec.origin)
        files.append((spec.origin, st.st_size, st.st_mtime_ns))
    for root in roots:
        for folder, subdirs, names in os.walk(root):
            subdirs[:] = sorted(d for d in subdirs if d != "__pycache__")
            for name in sorted(names):
                path = os.path.join(folder, name)
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                files.append((path, st.st_size, st.st_mtime_ns))
    return _digest(files)


class PluginCache:
    """The cache file of this environment; ``Registry(cache=…)`` reads and fills it."""

    def __init__(self, folder: Path | None = None):
        folder = folder if folder is not None else cache_dir()
        where = _digest([sys.prefix, sys.executable])[:16]
        self.path = folder / f"plugins-{where}.json"
        self.env = environment_key()
        self.entries: dict[str, dict[str, Any]] = {}
        self._trees: dict[str, str | None] = {}
        self._dists: dict[int, tuple[str, str]] = {}
        self._dirty = False
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("format") == FORMAT and data.get("env") == self.env:
                self.entries = dict(data.get("entry_points") or {})
        except (OSError, ValueError, AttributeError):
            pass  # no cache yet, or an unreadable one: it is rebuilt

    def _dist(self, ep: metadata.EntryPoint) -> tuple[str, str]:
        """``entry_point_distribution`` once per distribution (it parses METADATA each time)."""
        dist = getattr(ep, "dist", None)
        if id(dist) not in self._dists:
            self._dists[id(dist)] = entry_point_distribution(ep)
        return self._dists[id(dist)]

    def _key(self, ep: metadata.EntryPoint) -> str | None:
        top = ep.value.split(":")[0].strip().split(".")[0]
        if top not in self._trees:
            self._trees[top] = _tree(top)
        if self._trees[top] is None:
            return None  # cannot see its files: never cached
        return _digest([ep.name, ep.value, self._dist(ep), self._trees[top]])

    def _slot(self, ep: metadata.EntryPoint) -> str:  # two distributions may use one entry-point name
        return f"{self._dist(ep)[0]}:{ep.name}"

    def get(self, ep: metadata.EntryPoint) -> list[PluginInfo] | None:
        """The cached rows of ``ep`` (``cls`` None), or None when it must be imported."""
        entry = self.entries.get(self._slot(ep))
        if not entry or entry.get("key") is None or entry.get("key") != self._key(ep):
            return None
        dist_name, dist_version = self._dist(ep)
        return [PluginInfo(name, kind, dist_name, dist_version, ep.value, entry_point_name=ep.name)
                for name, kind in entry["rows"]]

    def put(self, ep: metadata.EntryPoint, infos: list[PluginInfo]) -> None:
        """Remember the rows of a freshly imported ``ep``; a broken one is forgotten."""
        key = self._key(ep)
        if key is None or any(i.status != "ok" for i in infos):
            self._dirty |= self.entries.pop(self._slot(ep), None) is not None
            return
        self.entries[self._slot(ep)] = {"key": key, "rows": [[i.name, i.kind] for i in infos]}
        self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        from .atomic import atomic_write_text

        data = {"format": FORMAT, "ppds": __version__, "env": self.env, "entry_points": self.entries}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps(data, indent=1, sort_keys=True))
        except Exception:  # noqa: BLE001 - a read-only or odd cache folder only costs speed
            return
        self._dirty = False


def list_plugins_cached(kind: str | None = None, use_cache: bool = True) -> list[PluginInfo]:
    """``list_plugins(kind)`` for display: every row, broken ones included, but ``cls`` is
    None for plugins whose entry point was answered from the cache (not imported)."""
    cache = PluginCache() if use_cache else None
    registry = Registry(cache=cache)
    if cache is not None:
        cache.save()
    return registry.list(kind)
