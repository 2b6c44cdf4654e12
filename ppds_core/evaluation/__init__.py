"""Attack-agnostic evaluation: ROC curves, TPR at low FPR, empirical ε bounds.

Any attack that produces per-candidate scores (higher = more likely a
member) with known membership gets the same summary rows through
:func:`membership_measurements`, and the same ``scores.npz`` file the
leaderboard plots ROC curves from.
"""

from .membership import membership_measurements, read_scores, write_scores
from .roc import (
    EpsilonBound,
    RocCurve,
    auc,
    auc_confidence_interval,
    balanced_accuracy,
    clopper_pearson,
    epsilon_from_rates,
    epsilon_lower_bound,
    roc_curve,
    tpr_at_fpr,
)

__all__ = [
    "RocCurve",
    "roc_curve",
    "auc",
    "auc_confidence_interval",
    "tpr_at_fpr",
    "balanced_accuracy",
    "clopper_pearson",
    "EpsilonBound",
    "epsilon_lower_bound",
    "epsilon_from_rates",
    "membership_measurements",
    "write_scores",
    "read_scores",
]
