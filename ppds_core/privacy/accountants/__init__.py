"""One small module per accountant, behind one name → function table.

- :mod:`._rdp` — Opacus' RDP accountant on a denser order grid (memoized);
- :mod:`._prv` — Opacus' PRV accountant with ε-relative error (the default);
- :mod:`._gdp` — μ-GDP in closed form (``ppds bounds`` only, never a ledger);
- :mod:`._compose` — the table (:data:`EPSILON_OF`), the checks, and ε of a
  history, of ledger spends and of a ledger;
- :mod:`._calibrate` — the smallest σ within a target, and its ε.

:mod:`ppds_core.privacy.accounting` is the public face of all of them.
"""

from ._calibrate import Calibration, calibrate, calibrate_noise_multiplier
from ._common import History
from ._compose import (
    ACCOUNTANTS,
    EPSILON_OF,
    LEDGER_ACCOUNTANTS,
    check_accountant,
    check_ledger_accountant,
    dp_sgd_epsilon,
    epsilon_of,
    epsilon_of_history,
    ledger_epsilon,
    spends_to_history,
)
from ._gdp import gdp_delta, gdp_epsilon, gdp_mu, gdp_mu_for

__all__ = [
    "ACCOUNTANTS",
    "EPSILON_OF",
    "LEDGER_ACCOUNTANTS",
    "Calibration",
    "History",
    "calibrate",
    "calibrate_noise_multiplier",
    "check_accountant",
    "check_ledger_accountant",
    "dp_sgd_epsilon",
    "epsilon_of",
    "epsilon_of_history",
    "gdp_delta",
    "gdp_epsilon",
    "gdp_mu",
    "gdp_mu_for",
    "ledger_epsilon",
    "spends_to_history",
]
