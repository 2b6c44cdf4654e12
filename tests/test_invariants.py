"""Source invariants, checked on every CI run: no code from data, no redirectable temp names.

Scans the Python source of ``ppds_core/`` and ``plugins/`` (the syntax tree,
so comments and docstrings do not count) for:

- ``torch.load`` without ``weights_only=True``, and ``weights_only=False`` anywhere;
- ``np.load`` without ``allow_pickle=False``, and ``allow_pickle=True`` anywhere;
- ``pickle.load``/``loads``/``Unpickler`` outside CIFAR-10's restricted unpickler
  (``plugins/datasets/_cifar.py``), and other code-running loaders (``dill``,
  ``joblib``, ``marshal``, ``yaml.unsafe_load``, ``yaml.load`` with anything but a
  ``SafeLoader`` (subclass), ``torch.hub.load_state_dict_from_url``);
- string literals naming a predictable temp file (``….tmp``), which a link planted
  in a shared run folder could redirect; temp files come from ``ppds_core.atomic``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for d in ("ppds_core", "plugins") for p in (ROOT / d).rglob("*.py"))
#: the one place a pickle is read: a restricted unpickler that admits only numpy arrays
PICKLE_ALLOWED = {Path("plugins/datasets/_cifar.py")}
_TMP_NAME = re.compile(r"\.tmp(\.|$)")
_BANNED_CALLS = {
    ("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"),
    ("cPickle", "load"), ("_pickle", "load"), ("dill", "load"), ("dill", "loads"),
    ("joblib", "load"), ("marshal", "load"), ("marshal", "loads"),
    ("yaml", "unsafe_load"), ("yaml", "full_load"),
    ("hub", "load_state_dict_from_url"), ("shelve", "open"),
}


def _dotted(node: ast.AST) -> tuple[str, str] | None:
    """(``a``, ``b``) for a call to ``…a.b``; None for anything else."""
    if isinstance(node, ast.Attribute):
        base = node.value
        name = base.id if isinstance(base, ast.Name) else base.attr if isinstance(base, ast.Attribute) else ""
        return name, node.attr
    return None


def _keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value.value if isinstance(kw.value, ast.Constant) else "<expr>"
    return None


_SAFE_LOADERS = {"SafeLoader", "CSafeLoader"}


def _safe_yaml_loaders(tree: ast.AST) -> set[str]:
    """Classes of this module that subclass PyYAML's SafeLoader (a strict config reader)."""
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
            and any(getattr(b, "attr", getattr(b, "id", None)) in _SAFE_LOADERS for b in node.bases)}


def _yaml_load_is_safe(call: ast.Call, safe_classes: set[str]) -> bool:
    loader = next((kw.value for kw in call.keywords if kw.arg == "Loader"), None)
    if loader is None and len(call.args) > 1:
        loader = call.args[1]
    name = getattr(loader, "attr", getattr(loader, "id", None))
    return name in _SAFE_LOADERS or name in safe_classes


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            ids.add(id(node.value))  # a bare string statement: documentation, not a name
    return ids


def violations(source: str, path: Path) -> list[str]:
    """Every breach of the module doc's rules in one file's source, as ``path:line: what``."""
    tree = ast.parse(source)
    docs = _docstrings(tree)
    safe_yaml = _safe_yaml_loaders(tree)
    found = []

    def bad(node: ast.AST, what: str) -> None:
        found.append(f"{path}:{getattr(node, 'lineno', '?')}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            target = _dotted(node.func)
            if target == ("torch", "load") and _keyword(node, "weights_only") is not True:
                bad(node, "torch.load without weights_only=True")
            if target in {("np", "load"), ("numpy", "load")} and _keyword(node, "allow_pickle") is not False:
                bad(node, "np.load without allow_pickle=False")
            if target == ("yaml", "load") and not _yaml_load_is_safe(node, safe_yaml):
                bad(node, "yaml.load without a SafeLoader: a loader that can run code from the file")
            if target in _BANNED_CALLS and path not in PICKLE_ALLOWED:
                bad(node, f"{'.'.join(target)}: a loader that can run code from the file")
            if _keyword(node, "allow_pickle") is True:
                bad(node, "allow_pickle=True")
            if _keyword(node, "weights_only") is False:
                bad(node, "weights_only=False")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            if any(n.split(".")[0] in ("dill", "cloudpickle", "shelve") for n in names):
                bad(node, "imports a pickle-based loader")
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
              and _TMP_NAME.search(node.value)):
            bad(node, f"predictable temp name {node.value!r}: use ppds_core.atomic")
    return found


def test_the_scan_covers_the_code_base():
    assert len(SOURCES) > 50
    assert ROOT / "ppds_core" / "matrix" / "_workers.py" in SOURCES
    assert ROOT / "plugins" / "metrics" / "_inception.py" in SOURCES


@pytest.mark.parametrize("snippet, rule", [
    ("import torch\ntorch.load(p)\n", "torch.load without weights_only=True"),
    ("import torch\ntorch.load(p, map_location='cpu', weights_only=False)\n", "weights_only=False"),
    ("import numpy as np\nnp.load(p)\n", "np.load without allow_pickle=False"),
    ("import numpy as np\nnp.load(p, allow_pickle=True)\n", "allow_pickle=True"),
    ("import pickle\npickle.load(f)\n", "pickle.load"),
    ("import yaml\nyaml.load(t, Loader=yaml.Loader)\n", "yaml.load"),
    ("import yaml\nyaml.load(t)\n", "yaml.load"),
    ("class Mine(yaml.Loader):\n    pass\nyaml.load(t, Loader=Mine)\n", "yaml.load"),
    ("torch.hub.load_state_dict_from_url(u)\n", "hub.load_state_dict_from_url"),
    ("tmp = path.with_name(path.name + '.tmp')\n", "predictable temp name"),
    ("tmp = out / (MARKER + '.tmp')\n", "predictable temp name"),
    ("tmp = path.with_name(f'{path.name}.{pid}.tmp')\n", "predictable temp name"),
    ("tmp = path.with_name(path.name + '.tmp.npz')\n", "predictable temp name"),
])
def test_the_scanner_catches_each_rule(snippet, rule):
    found = violations(snippet, Path("ppds_core/example.py"))
    assert any(rule in v for v in found), found


def test_the_scanner_accepts_the_safe_forms():
    ok = ('"""Docs may say name.tmp."""\nimport torch, numpy as np\n'
          "torch.load(p, map_location='cpu', weights_only=True)\n"
          "np.load(p, allow_pickle=False)\nyaml.safe_load(t)\n"
          "class Strict(yaml.SafeLoader):\n    pass\n"
          "yaml.load(t, Loader=Strict)\nyaml.load(t, Loader=yaml.SafeLoader)\n")
    assert violations(ok, Path("ppds_core/example.py")) == []


def test_no_code_runs_from_data_and_no_temp_name_is_predictable():
    found = [v for p in SOURCES for v in violations(p.read_text(encoding="utf-8"), p.relative_to(ROOT))]
    assert found == []
