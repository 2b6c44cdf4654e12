"""Opacus' privacy analysis (``opacus.accountants.analysis.rdp`` / ``.prv``) without torch.

Every ε ppds reports is Opacus' analysis: its RDP of the subsampled Gaussian and
its PRV discretisation and composition. Those modules need only numpy and scipy,
but importing them the ordinary way runs ``opacus/__init__.py`` (PrivacyEngine,
GradSampleModule) and ``opacus/accountants/__init__.py`` (accountants that take a
DPOptimizer), which import torch: seconds, for ``ppds bounds`` that is pure maths.

So, until opacus itself has been imported, :func:`analysis` loads those same files
from opacus' own folder under a private package name (``_ppds_opacus``), skipping
the two ``__init__`` files: the same code, so the same numbers
(``tests/test_accounting.py`` compares both). ``prv/domain.py`` imports
``RDPAccountant`` for ``compute_safe_domain_size``, which ppds does not use
(:func:`._prv.safe_domain_size` is its memoized twin); the private package gets a
stand-in that refuses to be built. Once opacus is imported (any training run), its
real modules are returned. If opacus' layout ever differs, the ordinary import is
used: slower, never wrong.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

__all__ = ["analysis", "OPACUS_DEFAULT_ALPHAS"]

#: Opacus' ``RDPAccountant.DEFAULT_ALPHAS`` (the orders of its PRV domain size), as
#: floats; a test checks it against Opacus'
OPACUS_DEFAULT_ALPHAS: tuple[float, ...] = tuple(
    float(a) for a in [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)))

_PRIVATE = "_ppds_opacus"


class _NoAccountant:
    """Stands in for ``opacus.accountants.RDPAccountant`` inside the private package."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError("ppds loads Opacus' analysis without its accountants; use "
                           "opacus.accountants.RDPAccountant (import opacus) for an accountant")


def _install_private() -> None:
    """Register ``_ppds_opacus`` and ``_ppds_opacus.accountants`` as bare packages over
    opacus' folders (their ``__init__`` not run) and the RDPAccountant stand-in."""
    if f"{_PRIVATE}.accountants" in sys.modules:
        return
    spec = importlib.util.find_spec("opacus")  # a top-level name: located, not imported
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("opacus is not installed")
    root = list(spec.submodule_search_locations)[0]
    for name, folder in ((_PRIVATE, root), (f"{_PRIVATE}.accountants", f"{root}/accountants")):
        package = types.ModuleType(name, f"opacus' {folder} without its __init__ (ppds)")
        package.__path__ = [folder]
        package.__package__ = name
        sys.modules[name] = package
    stub = types.ModuleType(f"{_PRIVATE}.accountants.rdp")
    stub.RDPAccountant = _NoAccountant  # type: ignore[attr-defined]
    sys.modules[stub.__name__] = stub


def analysis(name: str) -> types.ModuleType:
    """``opacus.accountants.analysis.<name>`` (``"rdp"`` or ``"prv"``), torch-free while
    opacus is not imported."""
    real = f"opacus.accountants.analysis.{name}"
    if "opacus" in sys.modules:
        return importlib.import_module(real)
    try:
        _install_private()
        return importlib.import_module(f"{_PRIVATE}.accountants.analysis.{name}")
    except Exception:  # noqa: BLE001 - another opacus layout: the ordinary import, torch and all
        return importlib.import_module(real)
