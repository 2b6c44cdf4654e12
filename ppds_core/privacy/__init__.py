"""The privacy room: the ledger, accountants, noise calibration and ReRo bounds."""

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
