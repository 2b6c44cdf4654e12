"""The core stays small: it never imports a plugin and never names one."""

from __future__ import annotations

import ast
from pathlib import Path

from ppds_core import list_plugins

CORE = Path(__file__).resolve().parents[1] / "ppds_core"


def _core_sources():
    return sorted(p for p in CORE.rglob("*.py") if "testing" not in p.parts)


def _string_constants(tree: ast.AST) -> set[str]:
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.body and isinstance(node.body[0], ast.Expr) and isinstance(
                    getattr(node.body[0], "value", None), ast.Constant):
                docstrings.add(id(node.body[0].value))
    return {
        n.value for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings
    }


def test_core_never_imports_first_party_plugins():
    for path in _core_sources():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mods = [node.module or ""]
            else:
                continue
            assert not any(m.startswith("ppds_plugins") for m in mods), f"{path} imports {mods}"


def test_core_code_names_no_generator_attack_or_metric():
    names = {r.name for r in list_plugins(include_broken=False)
             if r.kind in {"generator", "attack", "metric"}}
    for path in _core_sources():
        strings = _string_constants(ast.parse(path.read_text()))
        clash = names & strings
        assert not clash, f"{path.relative_to(CORE.parent)} names plugin(s) {sorted(clash)}"
