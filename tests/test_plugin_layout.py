"""Plugins share code through ``ppds_plugins.common``, never through each other's private modules.

An underscored module (``_domain``, ``_prior`` …) is an implementation detail
of the package folder that holds it: the modules *in that folder* may import
it, nothing else may — not a sibling plugin package (privimage reaching into
dp_diffusion), not a sub-package (lira reaching up into ``attacks``). What
two plugins need lives in the public layer ``ppds_plugins.common``, which in
turn imports no plugin. Both rules are checked on the source (AST), so a
lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
ROOT_PACKAGE = "ppds_plugins"  # what plugins/ is installed as
SHARED = f"{ROOT_PACKAGE}.common"


def _dotted(path: Path) -> tuple[str, str]:
    """(module, the package folder it sits in) for a file under plugins/."""
    parts = [ROOT_PACKAGE, *path.relative_to(PLUGINS).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
        return ".".join(parts), ".".join(parts)
    return ".".join(parts), ".".join(parts[:-1])


def imports_of(source: str, package: str) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in ``source``, relative ones resolved
    against ``package``; ``from pkg import name`` also yields ``pkg.name``, which is
    the module when ``name`` is one."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def private_home(module: str) -> str | None:
    """The package folder that owns ``module``'s first underscored part, or None if it has none."""
    parts = module.split(".")
    if parts[0] != ROOT_PACKAGE:
        return None
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return None


def _plugin_sources():
    for path in sorted(PLUGINS.rglob("*.py")):
        module, package = _dotted(path)
        yield path, module, package, path.read_text(encoding="utf-8")


def test_no_plugin_module_imports_a_private_module_of_another_package():
    offenders = set()
    for path, _, package, source in _plugin_sources():
        for line, imported in imports_of(source, package):
            home = private_home(imported)
            if home is not None and home != package:
                private = ".".join(imported.split(".")[: len(home.split(".")) + 1])
                offenders.add(f"plugins/{path.relative_to(PLUGINS)}:{line} imports {private} "
                              f"(private to {home}; share it through {SHARED})")
    assert not offenders, "\n".join(sorted(offenders))


def test_the_shared_layer_imports_no_plugin():
    offenders = []
    for path, module, package, source in _plugin_sources():
        if not (module == SHARED or module.startswith(SHARED + ".")):
            continue
        for line, imported in imports_of(source, package):
            if imported.startswith(ROOT_PACKAGE + ".") and not imported.startswith(SHARED):
                offenders.append(f"plugins/{path.relative_to(PLUGINS)}:{line} imports {imported}")
    assert not offenders, "ppds_plugins.common must stay below the plugins:\n" + "\n".join(offenders)


@pytest.mark.parametrize(("source", "package", "expected"), [
    # lira reaching up into attacks' private module: relative, one level up
    ("from .._features import FeatureMap", "ppds_plugins.attacks.lira", "ppds_plugins.attacks._features"),
    # a lazy absolute import inside a function is still an import
    ("def f():\n    from ppds_plugins.metrics._pairwise import mse\n", "ppds_plugins.attacks.reconstruction",
     "ppds_plugins.metrics._pairwise"),
    # `from . import _math` imports the module _math
    ("from . import _math", "ppds_plugins.attacks.lira", "ppds_plugins.attacks.lira._math"),
])
def test_the_scan_resolves_relative_lazy_and_from_package_imports(source, package, expected):
    assert expected in [m for _, m in imports_of(source, package)]


def test_a_private_module_belongs_to_the_folder_that_holds_it():
    assert private_home("ppds_plugins.attacks._features") == "ppds_plugins.attacks"
    assert private_home("ppds_plugins.generators.dp_diffusion._model.DiffusionGenerator") == (
        "ppds_plugins.generators.dp_diffusion")
    assert private_home("ppds_plugins.common.diffusion.unet") is None
    assert private_home("ppds_core._private") is None  # the core has its own boundary test
