"""The core owns ε: every ledger a generator returns is recomputed before it is believed.

Why: a ledger's ``epsilon_spent`` is written by plugin code. A third-party
generator that mis-adds its spends (claims 0.499 for spends worth 0.999),
overspends, or calls a noisy release "ε = ∞" would otherwise reach the board
as a privacy claim. So after every fit (``ppds run`` cells and shadow models,
``ppds fit``, DDP workers, the conformance kit) :func:`verify_ledger`
recomputes ε from the ledger's *spends* with the ledger's accountant, refuses
a claim below that by more than :data:`EPSILON_RTOL`, refuses a spend over the
target, and returns the ledger with the core's ε in ``epsilon_spent``.

ε = ∞ is not a claim about noise but the absence of one: it is accepted only
for a ledger whose target is ∞ and which lists no spend (the non-private
reference row). A finite target with no spend is refused too: a model that
"spent nothing" trained on the private data without any recorded mechanism.
"""

from __future__ import annotations

import math

from ..budget import EPSILON_RTOL, PrivacyBudget, within_budget
from ..errors import LedgerError
from .accounting import check_ledger_accountant, ledger_epsilon
from .ledger import Ledger

__all__ = ["EPSILON_RTOL", "LedgerError", "verify_ledger", "within_target"]

#: "spent ≤ target" and "claim = recomputed" share the budget's one tolerance
within_target = within_budget


def verify_ledger(ledger: object, budget: PrivacyBudget, plugin: str) -> Ledger:
    """The ledger with the core's ε, or a :class:`LedgerError` naming ``plugin`` and the fix."""
    who = f"generator {plugin!r}"
    if not isinstance(ledger, Ledger):
        raise LedgerError(f"{who}: fit() must return its Ledger, got {type(ledger).__name__}")
    if ledger.target_epsilon != budget.epsilon or not math.isclose(ledger.delta, budget.delta):
        raise LedgerError(
            f"{who} was asked for (ε={budget.epsilon:g}, δ={budget.delta:g}) but its ledger records "
            f"(ε={ledger.target_epsilon:g}, δ={ledger.delta:g}); build the ledger from the budget "
            "fit() receives"
        )
    if not budget.is_private:
        if ledger.spends:
            raise LedgerError(
                f"{who}: its ε = ∞ ledger lists {len(ledger.spends)} spend(s); a noisy release is a "
                "finite-ε claim (record it under a finite budget), and the non-private reference "
                "lists no spend"
            )
        return ledger.model_copy(update={"epsilon_spent": math.inf})
    if not ledger.spends:
        raise LedgerError(
            f"{who} trained at ε={budget.epsilon:g} but its ledger lists no spend; record every "
            "mechanism that touched the private data (ppds_core.privacy.gaussian_release, or the "
            "DP-SGD engine's ledger)"
        )
    accountant = check_ledger_accountant(ledger.accountant, where=f"{who}'s ledger")
    recomputed = ledger_epsilon(ledger)
    claim = ledger.epsilon_spent
    if not (isinstance(claim, int | float) and claim >= recomputed * (1 - EPSILON_RTOL)):
        raise LedgerError(
            f"{who} claims ε={claim:.4g} but its spends compose to ε={recomputed:.4g} "
            f"(δ={ledger.delta:g}, {accountant}); ε_spent must be the accountant's ε of all spends "
            "(ppds_core.privacy.epsilon_of)"
        )
    if not within_target(recomputed, budget.epsilon):
        raise LedgerError(
            f"{who} spent ε={recomputed:.4g} (recomputed from its spends, δ={ledger.delta:g}, "
            f"{accountant}) over its target ε={budget.epsilon:g}; add noise or spend less"
        )
    return ledger.model_copy(update={"epsilon_spent": recomputed})
