"""The privacy room: the ledger, accountants, noise calibration and ReRo bounds.

Names resolve on first use (PEP 562), so ``ppds bounds rero`` imports the bounds
without the accountants and the ledger's pydantic models.
"""

from importlib import import_module
from typing import TYPE_CHECKING

#: public name → the submodule that defines it
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("ACCOUNTANTS", "calibrate_noise_multiplier", "dp_sgd_epsilon", "epsilon_of",
                     "epsilon_of_history", "gdp_epsilon", "gdp_mu", "ledger_epsilon",
                     "make_opacus_accountant"), ".accounting"),
    **dict.fromkeys(("ReRoEstimate", "effective_noise_std", "rero_composition", "rero_dp", "rero_dpsgd",
                     "rero_gdp", "rero_numerical", "uninformed_mse_cdf", "uninformed_mse_mean",
                     "uninformed_mse_quantile", "uninformed_ncc"), ".bounds"),
    **dict.fromkeys(("DPSGDSpend", "GaussianSpend", "Ledger", "Spend"), ".ledger"),
    **dict.fromkeys(("SEEDED_NOISE_NOTE", "mechanism_generator", "mechanism_seed"), ".randomness"),
    **dict.fromkeys(("GaussianRelease", "gaussian_release"), ".release"),
    **dict.fromkeys(("EPSILON_RTOL", "verify_ledger", "within_target"), ".verify"),
}

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from .accounting import (
        ACCOUNTANTS,
        calibrate_noise_multiplier,
        dp_sgd_epsilon,
        epsilon_of,
        epsilon_of_history,
        gdp_epsilon,
        gdp_mu,
        ledger_epsilon,
        make_opacus_accountant,
    )
    from .bounds import (
        ReRoEstimate,
        effective_noise_std,
        rero_composition,
        rero_dp,
        rero_dpsgd,
        rero_gdp,
        rero_numerical,
        uninformed_mse_cdf,
        uninformed_mse_mean,
        uninformed_mse_quantile,
        uninformed_ncc,
    )
    from .ledger import DPSGDSpend, GaussianSpend, Ledger, Spend
    from .randomness import SEEDED_NOISE_NOTE, mechanism_generator, mechanism_seed
    from .release import GaussianRelease, gaussian_release
    from .verify import EPSILON_RTOL, verify_ledger, within_target

__all__ = [
    # ledger
    "DPSGDSpend",
    "GaussianSpend",
    "Ledger",
    "Spend",
    # releases and their verification
    "GaussianRelease",
    "gaussian_release",
    "EPSILON_RTOL",
    "verify_ledger",
    "within_target",
    # randomness of the mechanisms
    "SEEDED_NOISE_NOTE",
    "mechanism_generator",
    "mechanism_seed",
    # accounting
    "ACCOUNTANTS",
    "epsilon_of",
    "epsilon_of_history",
    "dp_sgd_epsilon",
    "gdp_mu",
    "gdp_epsilon",
    "calibrate_noise_multiplier",
    "ledger_epsilon",
    "make_opacus_accountant",
    # bounds
    "ReRoEstimate",
    "rero_gdp",
    "rero_dp",
    "rero_dpsgd",
    "rero_composition",
    "rero_numerical",
    "effective_noise_std",
    "uninformed_mse_cdf",
    "uninformed_mse_mean",
    "uninformed_mse_quantile",
    "uninformed_ncc",
]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
