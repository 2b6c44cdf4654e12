"""Throw-away plugin distributions, for tests of plugin discovery.

A real ``pip install`` is slow and touches the environment; a folder holding
modules plus a ``NAME-VERSION.dist-info`` with ``METADATA`` and
``entry_points.txt`` is exactly what ``importlib.metadata`` reads, so putting
that folder on ``sys.path`` (or ``PYTHONPATH`` for a subprocess) makes its
plugins visible the way an installed package's are.
"""

from __future__ import annotations

import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path

__all__ = ["make_plugin_distribution", "plugin_path"]


def make_plugin_distribution(
    root: Path,
    dist_name: str,
    modules: dict[str, str],
    entry_points: dict[str, str],
    version: str = "0.0.1",
) -> Path:
    """Write modules and a dist-info under ``root``; return ``root``.

    ``modules`` maps a module name (``"my_plugin"`` or ``"pkg.mod"``) to its
    source; ``entry_points`` maps an entry-point name to ``"module"`` or
    ``"module:attr"`` in the ``ppds`` group.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for mod, source in modules.items():
        parts = mod.split(".")
        folder = root.joinpath(*parts[:-1])
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(1, len(parts)):
            init = root.joinpath(*parts[:i], "__init__.py")
            if not init.exists():
                init.write_text("")
        (folder / f"{parts[-1]}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist_name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: {version}\n")
    eps = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[ppds]\n{eps}\n")
    return root


@contextmanager
def plugin_path(root: Path):
    """Make a distribution written by :func:`make_plugin_distribution` visible in-process.

    Resets the registry on entry and exit, and forgets the distribution's
    modules on exit so later tests import fresh copies.
    """
    from ..registry import reset_registry

    root = Path(root)
    before = set(sys.modules)
    sys.path.insert(0, str(root))
    reset_registry()
    try:
        yield root
    finally:
        sys.path.remove(str(root))
        for name in set(sys.modules) - before:
            mod = sys.modules.get(name)
            if getattr(mod, "__file__", None) and str(root) in str(mod.__file__):
                del sys.modules[name]
        reset_registry()
