"""The one hook a plugin implements.

A plugin module (the target of an entry point in the ``ppds`` group) defines::

    from ppds_core import hookimpl

    @hookimpl
    def register_plugins(register):
        register(MyGenerator)
        register(MyMetric)

``register`` accepts any subclass of Generator, Metric, Attack or
DatasetProvider. One hook for every kind keeps third-party packages to a
few lines.
"""

from __future__ import annotations

import pluggy

__all__ = ["hookimpl", "hookspec", "PROJECT"]

PROJECT = "ppds"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_plugins(register):  # pragma: no cover - specification only
    """Call ``register(PluginClass)`` for each plugin class this module provides."""
