"""The core stays small: it never imports a plugin, never names one, and knows nothing of any.

Plugin knowledge in the core is anything that has to change when a plugin
does: its package name in code, an attack's knob as a core constant, a
convention on how measurements are spelled (docs/architecture.md, "Core and
plugins"). Each check names every offender and the rule it breaks.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from ppds_core import list_plugins

CORE = Path(__file__).resolve().parents[1] / "ppds_core"


def _core_sources():
    return sorted(p for p in CORE.rglob("*.py") if "testing" not in p.parts)


def _code_strings(tree: ast.AST):
    """(line, text) of every string constant that is not a docstring (f-string pieces included)."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.body and isinstance(node.body[0], ast.Expr) and isinstance(
                    getattr(node.body[0], "value", None), ast.Constant):
                docstrings.add(id(node.body[0].value))
    for n in ast.walk(tree):
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings:
            yield n.lineno, n.value


def _string_constants(tree: ast.AST) -> set[str]:
    return {text for _, text in _code_strings(tree)}


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


# -- no plugin knowledge beyond string literals (issue 13) -------------------
#
# The checks below cover all of ppds_core, the conformance kit included: it
# ships to third-party authors and must not lean on first-party plugins either.

PLUGIN_PACKAGE = "ppds_plugins"
#: words that name an attack's own machinery; a core constant named with one is an attack's knob
ATTACK_WORDS = {"SHADOW", "SHADOWS", "CANARY", "CANARIES", "LIRA", "MIA", "MIAS", "AUDIT",
                "ATTACKER"}
#: the one place allowed to read a role from a name: rows written before ``role`` existed carry
#: it only there, and an old run folder's violations must still be flagged, not hidden
LEGACY_NAME_READS = {("ppds_core/matrix/row.py", "role_of")}
#: string methods (and pandas ``.str`` accessors) that test a name's affix
AFFIX_CHECKS = {"endswith", "startswith", "removesuffix", "removeprefix", "contains", "match",
                "fullmatch", "search"}


def _all_core_sources():
    return sorted(CORE.rglob("*.py"))


def test_core_names_ppds_plugins_only_in_docstrings_and_comments():
    """The rule: ``ppds_plugins`` may appear in docstrings and comments (prose saying where
    first-party plugins come from: the entry-point group); nowhere in code: no import, and
    no other string constant (a logger list, an import by name, a module path)."""
    offenders = []
    for path in _all_core_sources():
        tree = ast.parse(path.read_text())
        rel = path.relative_to(CORE.parent)
        offenders += [f"{rel}:{line} {text!r}" for line, text in _code_strings(tree)
                      if PLUGIN_PACKAGE in text]
        for node in ast.walk(tree):
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{rel}:{node.lineno} imports {m}" for m in mods
                          if m.split(".")[0] == PLUGIN_PACKAGE]
    assert not offenders, (f"core code naming {PLUGIN_PACKAGE} (allowed only in docstrings and "
                           f"comments; plugins come through the entry-point group): "
                           f"{'; '.join(offenders)}")


def _constants(tree: ast.Module):
    """(line, NAME) of every UPPER_CASE module- or class-level assignment: the module's
    constants (lower-case fields are interface or bookkeeping, e.g. a context's
    ``shadow_samples`` that an attack sets, or the runner's ``shadow_fits`` counter)."""
    bodies = [tree.body] + [n.body for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    for body in bodies:
        for node in body:
            targets = (node.targets if isinstance(node, ast.Assign)
                       else [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign))
                       else [])
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name) and re.fullmatch(r"_*[A-Z][A-Z0-9_]*", n.id):
                        yield node.lineno, n.id


def test_core_defines_no_attack_constants():
    """How many images a shadow model draws, how many canaries an audit plants: the attack
    decides (its Config, its capabilities), so the runner cannot drift from it."""
    offenders = []
    for path in _all_core_sources():
        for line, name in _constants(ast.parse(path.read_text())):
            words = set(name.upper().strip("_").split("_"))
            if words & ATTACK_WORDS:
                offenders.append(f"{path.relative_to(CORE.parent)}:{line} {name}")
    assert not offenders, (f"core constants naming an attack's machinery "
                           f"({', '.join(sorted(ATTACK_WORDS))}): {'; '.join(offenders)}")


def _is_affix(text: str) -> bool:
    """A piece of a hyphenated measurement name: ``-violation``, ``lira-``, or a regex anchoring one."""
    return bool(re.fullmatch(r"-[A-Za-z][\w-]*\$?|\^?[A-Za-z][\w]*-", text))


def _affix_checks(tree: ast.Module, exempt: frozenset[str] = frozenset()):
    """(line, affix) wherever code tests a string against a name affix, outside the
    functions named in ``exempt``."""
    consts = {}
    for node in tree.body:  # VIOLATION_SUFFIX = "-violation" resolves too
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)):
            consts.update({t.id: node.value.value for t in node.targets if isinstance(t, ast.Name)})

    def affixes(arg):
        items = arg.elts if isinstance(arg, (ast.Tuple, ast.List, ast.Set)) else [arg]
        for a in items:
            text = (a.value if isinstance(a, ast.Constant) and isinstance(a.value, str)
                    else consts.get(a.id) if isinstance(a, ast.Name) else None)
            if text is not None and _is_affix(text):
                yield text

    skipped = {id(n) for fn in ast.walk(tree)
               if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and fn.name in exempt
               for n in ast.walk(fn)}
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in AFFIX_CHECKS):
            for arg in node.args:
                yield from ((node.lineno, a) for a in affixes(arg))
        elif isinstance(node, ast.Compare) and any(isinstance(op, (ast.In, ast.NotIn))
                                                   for op in node.ops):
            yield from ((node.lineno, a) for a in affixes(node.left))


def test_core_checks_no_measurement_name_suffix_conventions():
    """A measurement's role (headline, violation flag) travels with it explicitly; the
    core never infers it from how a plugin or the evaluator spelled the name."""
    offenders = []
    for path in _all_core_sources():
        rel = path.relative_to(CORE.parent).as_posix()
        exempt = frozenset(fn for where, fn in LEGACY_NAME_READS if where == rel)
        offenders += [f"{rel}:{line} tests a name against {affix!r}"
                      for line, affix in _affix_checks(ast.parse(path.read_text()), exempt)]
    assert not offenders, f"core code keying on measurement-name affixes: {'; '.join(offenders)}"


def test_the_affix_rule_catches_suffix_checks_and_spares_other_string_tests():
    caught = ast.parse('S = "-violation"\n'
                       'a = name.endswith("-violation")\n'
                       'b = df["name"].str.endswith(S)\n'
                       'c = "-epsilon-violation" in name\n'
                       'd = name.startswith(("lira-", "mia-"))\n'
                       'e = re.search("-violation$", name)\n')
    assert sorted(line for line, _ in _affix_checks(caught)) == [2, 3, 4, 5, 5, 6]
    spared = ast.parse('a = m.name.startswith("cmd_")\n'
                       'b = err.endswith("Error")\n'
                       'c = "--json" in argv\n'
                       'd = text.lstrip().startswith("{")\n')
    assert list(_affix_checks(spared)) == []
    legacy = ast.parse('def role_of(r):\n    return "-violation" in r["name"]\n'
                       'def other(r):\n    return "-violation" in r["name"]\n')
    assert [line for line, _ in _affix_checks(legacy, frozenset({"role_of"}))] == [4]
