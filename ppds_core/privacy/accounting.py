"""ε of a ledger's spends: RDP, PRV (Opacus) and GDP (closed form, here).

Every ε ppds reports comes from one of these functions, applied to the exact
mechanisms on the ledger: DP-SGD is T steps of the *Poisson*-subsampled
Gaussian mechanism with (σ, q); a :class:`GaussianSpend` is ``count`` runs of
the full-data Gaussian mechanism (q = 1). Compositions of different spends
(PrivImage's semantic query followed by DP-SGD) go to the accountant as one
heterogeneous history of ``(noise_multiplier, sample_rate, steps)`` tuples —
the Opacus accountants' history format, so the training engine's record
(σ, q, steps done) and an independent re-computation agree by construction.

Accountants (one module each in :mod:`ppds_core.privacy.accountants`, chosen
by name from one table):

- ``prv`` (default): Opacus' PRV accountant (Gopi et al. 2021), the tight one.
  It returns an *upper* bound (estimate + ``eps_error``); ppds picks
  ``eps_error`` relative to the ε at hand rather than Opacus' fixed 0.01, so
  small budgets are not inflated by several %.
- ``rdp``: Opacus' RDP accountant on a denser order grid than its default
  (a looser but very robust upper bound).
- ``gdp`` (``ppds bounds`` only, never a ledger): μ-GDP via the central-limit approximation of Bu et al. 2020,
  μ = q·√T·√(e^{1/σ²} − 1), composed as μ = √(Σ μᵢ²), converted with
  δ(ε) = Φ(−ε/μ + μ/2) − e^ε·Φ(−ε/μ − μ/2). Full-data Gaussian mechanisms
  (q = 1) are *exactly* (√T/σ)-GDP and use that. The CLT approximation can
  *under*-estimate ε; it is here for comparison with papers that use it, and
  :data:`LEDGER_ACCOUNTANTS` leaves it out of calibration, training and ledgers.

This module is the stable import path; the implementations live in the package.
"""

from __future__ import annotations

from typing import Any

from .accountants import (
    ACCOUNTANTS,
    EPSILON_OF,
    LEDGER_ACCOUNTANTS,
    Calibration,
    History,
    calibrate,
    calibrate_noise_multiplier,
    check_accountant,
    check_ledger_accountant,
    dp_sgd_epsilon,
    epsilon_of,
    epsilon_of_history,
    gdp_delta,
    gdp_epsilon,
    gdp_mu,
    gdp_mu_for,
    ledger_epsilon,
    spends_to_history,
)

# the implementation's names as this module spelled them before the split (benchmarks
# clear these caches; tests compare them with Opacus)
from .accountants._common import check_delta as _check_delta  # noqa: F401
from .accountants._common import check_mechanism as _check_mechanism  # noqa: F401
from .accountants._prv import opacus_prv_upper as _opacus_prv_upper  # noqa: F401
from .accountants._prv import prv_epsilon_memo as _prv_epsilon_memo  # noqa: F401
from .accountants._prv import prv_epsilon_uncached as _prv_epsilon  # noqa: F401
from .accountants._prv import safe_domain_size as _safe_domain_size  # noqa: F401
from .accountants._rdp import RDP_INT_ORDERS as _RDP_INT_ORDERS  # noqa: F401
from .accountants._rdp import RDP_ORDERS as _RDP_ORDERS  # noqa: F401
from .accountants._rdp import RDP_ORDERS_T as _RDP_ORDERS_T  # noqa: F401
from .accountants._rdp import history_rdp as _history_rdp  # noqa: F401
from .accountants._rdp import one_step_rdp as _one_step_rdp  # noqa: F401
from .accountants._rdp import rdp_at_order as _rdp_at_order  # noqa: F401
from .accountants._rdp import rdp_epsilon as _rdp_epsilon  # noqa: F401
from .accountants._rdp import rdp_epsilon_at as _rdp_epsilon_at  # noqa: F401

__all__ = [
    "ACCOUNTANTS",
    "EPSILON_OF",
    "History",
    "spends_to_history",
    "epsilon_of",
    "epsilon_of_history",
    "dp_sgd_epsilon",
    "gdp_mu",
    "gdp_epsilon",
    "gdp_delta",
    "gdp_mu_for",
    "Calibration",
    "calibrate",
    "calibrate_noise_multiplier",
    "ledger_epsilon",
    "make_opacus_accountant",
    "check_accountant",
    "check_ledger_accountant",
    "LEDGER_ACCOUNTANTS",
]

def make_opacus_accountant(name: str) -> Any:
    """A fresh Opacus accountant of that kind, for code that steps one itself.

    The engine does not: its record of a run is (σ, q, steps done), the
    history such an accountant would hold. Its ``history`` feeds
    :func:`epsilon_of_history`. Only ledger accountants are offered.
    """
    check_ledger_accountant(name)
    from opacus.accountants import PRVAccountant, RDPAccountant

    return {"rdp": RDPAccountant, "prv": PRVAccountant}[name]()
