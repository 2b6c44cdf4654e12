"""The core stays readable: no module over 400 lines, no function over 80.

Fitness functions (issue 13): they fail the moment a core module or function
outgrows its budget, so the layout cannot drift back one commit at a time.
Each failure names every offender and the limit it breaks. The plugin side
of the layout (no plugin imports another package's private module) is
tests/test_plugin_layout.py; the core's boundary, tests/test_core_boundaries.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "ppds_core"

#: lines one ``ppds_core`` module may hold (CONTRIBUTING.md, "Layout")
MAX_MODULE_LINES = 400
#: lines one function or method may span, ``def`` to its last line, docstring included
MAX_FUNCTION_LINES = 80


def _core_modules() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def _functions(tree: ast.AST):
    """Every def in a module with its qualified name (``Class.method``, ``outer.<locals>.inner``)."""
    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                yield name, child
                yield from walk(child, f"{name}.<locals>.")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{child.name}.")
            else:
                yield from walk(child, prefix)
    yield from walk(tree, "")


def test_no_core_module_is_over_400_lines():
    over = []
    for path in _core_modules():
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > MAX_MODULE_LINES:
            over.append(f"{path.relative_to(ROOT)} ({n} lines)")
    assert not over, f"core modules over the {MAX_MODULE_LINES}-line budget: {', '.join(over)}"


def test_no_core_function_is_over_80_lines():
    over = []
    for path in _core_modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for name, fn in _functions(tree):
            n = fn.end_lineno - fn.lineno + 1
            if n > MAX_FUNCTION_LINES:
                over.append(f"{path.relative_to(ROOT)}:{fn.lineno} {name} ({n} lines)")
    assert not over, f"core functions over the {MAX_FUNCTION_LINES}-line budget: {', '.join(over)}"


def test_the_function_budget_counts_methods_and_nested_functions():
    tree = ast.parse("class A:\n    def m(self):\n        def inner():\n            pass\n")
    assert [name for name, _ in _functions(tree)] == ["A.m", "A.m.<locals>.inner"]
