"""Privacy accounting: Opacus computed from scratch (the old path) vs ppds' memoized one.

Why: accounting took 20 of 31 s of a DP-GAN fit on digits — calibration
(~20 ε evaluations, each dominated by Opacus' fractional-order RDP series
inside the PRV domain size) and the progress ε recomputed every few steps.
ppds now memoizes the one-step RDP per (q, σ, order), sizes the PRV domain
from it, brackets σ with integer-order RDP and reports RDP upper bounds mid-run.

Every "new" timing starts from cleared ppds caches (what a fresh process
pays); "warm" repeats a call, as progress reports do. Each row also checks
that both paths give the same number (RDP, PRV: bit-identical; calibration:
both σ feasible, within the 1e-3 tolerance of each other).
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np

warnings.simplefilter("ignore")


def _old_rdp(history, delta, orders) -> float:
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.history = list(history)
    return max(0.0, float(acc.get_epsilon(delta=delta, alphas=list(orders))))


def _old_prv(history, delta) -> float:
    """The PRV evaluation as it was: Opacus' accountant, which sizes its domain with
    Opacus' unmemoized RDP, after one more domain sizing to bound the grid."""
    from opacus.accountants import PRVAccountant
    from opacus.accountants.analysis.prv import (
        PoissonSubsampledGaussianPRV,
        compute_safe_domain_size,
    )

    from ppds_core.privacy.accounting import _RDP_ORDERS

    eps_rdp = _old_rdp(history, delta, _RDP_ORDERS)
    delta_error = delta / 1000
    eps_error = min(0.01, max(3e-4, 3e-3 * eps_rdp))
    compute_safe_domain_size([PoissonSubsampledGaussianPRV(q, s) for s, q, _ in history],
                             [t for _, _, t in history], eps_error=eps_error,
                             delta_error=delta_error)
    acc = PRVAccountant()
    acc.history = list(history)
    with np.errstate(all="ignore"):
        eps = float(acc.get_epsilon(delta=delta, eps_error=eps_error, delta_error=delta_error))
    return max(0.0, min(eps, eps_rdp))


def _old_calibration(target: float, delta: float, q: float, steps: int) -> tuple[float, int]:
    """The plain strategy: RDP doubling for a feasible σ, then geometric bisection
    with the PRV accountant to rtol 1e-3. Returns (σ, PRV evaluations)."""
    from ppds_core.privacy.accounting import _RDP_ORDERS

    hi = 1.0
    while _old_rdp([(hi, q, steps)], delta, _RDP_ORDERS) > target:
        hi *= 2
    lo, calls = hi / 4, 0
    while hi - lo > 1e-3 * hi:
        mid = math.sqrt(lo * hi)
        calls += 1
        if _old_prv([(mid, q, steps)], delta) <= target:
            hi = mid
        else:
            lo = mid
    return hi, calls


def _clear() -> None:
    from ppds_core.privacy import accounting

    accounting._rdp_at_order.cache_clear()
    accounting._one_step_rdp.cache_clear()
    accounting._prv_epsilon_memo.cache_clear()


def _time(fn: Callable[[], object], rounds: int, clear: bool) -> tuple[float, object]:
    times, value = [], None
    for _ in range(rounds):
        if clear:
            _clear()
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds for the fast rows (median)")
    args = parser.parse_args()

    from ppds_core.privacy import accounting as acc
    from ppds_core.privacy.accounting import calibrate_noise_multiplier, epsilon_of_history

    _old_rdp([(1.0, 0.1, 1)], 1e-5, acc._RDP_ORDERS)  # imports, outside the timings
    rows: list[tuple[str, float, float, str]] = []

    hist, delta = [(1.1, 0.01, 1000)], 1e-5
    t_old, e_old = _time(lambda: _old_rdp(hist, delta, acc._RDP_ORDERS), args.rounds, False)
    t_new, e_new = _time(lambda: epsilon_of_history(hist, delta, "rdp"), args.rounds, True)
    t_warm, _ = _time(lambda: epsilon_of_history(hist, delta, "rdp"), args.rounds, False)
    rows.append(("RDP ε, σ=1.1 q=0.01 T=1000 (cold cache)", t_old, t_new, f"same ε: {e_old == e_new}"))
    rows.append(("RDP ε, same history again (warm cache)", t_old, t_warm, "progress reports"))

    hist = [(0.95, 0.1425, 80)]
    t_old, e_old = _time(lambda: _old_prv(hist, delta), args.rounds, False)
    t_new, e_new = _time(lambda: epsilon_of_history(hist, delta, "prv"), args.rounds, True)
    rows.append(("PRV ε, σ=0.95 q=0.1425 T=80 (cold cache)", t_old, t_new, f"same ε: {e_old == e_new}"))

    def old_progress() -> float:  # 10 PRV reports over an 80-step run
        return [_old_prv([(0.95, 0.1425, t)], delta) for t in range(8, 81, 8)][-1]

    def new_progress() -> float:  # 9 RDP upper bounds, then the exact PRV ε at the end
        for t in range(8, 80, 8):
            epsilon_of_history([(0.95, 0.1425, t)], delta, "rdp")
        return epsilon_of_history([(0.95, 0.1425, 80)], delta, "prv")

    t_old, e_old = _time(old_progress, 1, False)
    t_new, e_new = _time(new_progress, 1, True)
    rows.append(("progress ε ×10 over T=80 (final PRV ε)", t_old, t_new, f"same final ε: {e_old == e_new}"))

    for target, q, steps in ((10.0, 0.1425, 80), (1.0, 0.01, 2000)):
        def old_cal(target=target, q=q, steps=steps) -> tuple[float, int]:
            return _old_calibration(target, delta, q, steps)

        def new_cal(target=target, q=q, steps=steps) -> float:
            return calibrate_noise_multiplier(target, delta, q, steps)

        t_old, (s_old, calls) = _time(old_cal, 1, False)
        counted: list = []
        real = acc._prv_epsilon
        acc._prv_epsilon = lambda h, d, counted=counted, real=real: counted.append(h) or real(h, d)
        try:
            t_new, s_new = _time(new_cal, 1, True)
        finally:
            acc._prv_epsilon = real
        note = (f"σ {s_old:.5f} → {s_new:.5f}; PRV evaluations {calls} → {len(counted)}; "
                f"ε(new σ) = {epsilon_of_history([(s_new, q, steps)], delta, 'prv'):.5f}")
        rows.append((f"calibrate σ to ε={target:g}, q={q:g}, T={steps}", t_old, t_new, note))

    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.machine()}, "
          f"Python {platform.python_version()}; median of {args.rounds} rounds for the "
          "ε rows, 1 for progress and calibration\n")
    print("| what | old (s) | new (s) | old / new | check |")
    print("| --- | --- | --- | --- | --- |")
    for what, t_old, t_new, note in rows:
        print(f"| {what} | {t_old:.3f} | {t_new:.4f} | {t_old / t_new:.1f}× | {note} |")


if __name__ == "__main__":
    main()
