"""ε of real ledgers by ppds' PRV vs Google's dp_accounting PLD, and gdp's under-reporting.

    python benchmarks/prv_vs_pld.py runs/quickstart            # every cells/*/ledger.json
    python benchmarks/prv_vs_pld.py --gdp-grid                 # gdp ÷ PLD over a (σ, q, T) grid

Why: the core recomputes every ledger's ε with the ledger's accountant; this
checks that accountant against an independent implementation (dp_accounting's
privacy-loss-distribution accountant, `pip install dp-accounting`, a dev extra)
on the exact spends a run recorded, and measures how far the gdp (CLT)
approximation falls below it — the reason gdp may not fill a ledger.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path


def _pld_epsilon(history, delta: float) -> float:
    import dp_accounting
    from dp_accounting import pld

    events = []
    for sigma, q, steps in history:
        inner = dp_accounting.GaussianDpEvent(sigma)
        event = inner if q >= 1 else dp_accounting.PoissonSampledDpEvent(q, inner)
        events.append(dp_accounting.SelfComposedDpEvent(event, steps))
    acc = pld.PLDAccountant(value_discretization_interval=1e-4)
    acc.compose(dp_accounting.ComposedDpEvent(events))
    return float(acc.get_epsilon(delta))


def ledgers(run: Path) -> list[dict]:
    from ppds_core.privacy import Ledger
    from ppds_core.privacy.accounting import epsilon_of, spends_to_history

    out = []
    for path in sorted(run.glob("cells/*/ledger.json")):
        led = Ledger.read(path)
        if not led.is_private or not led.spends:
            continue
        cell = json.loads((path.parent / "cell.json").read_text()).get("label", path.parent.name)
        history = spends_to_history(led.spends)
        prv = epsilon_of(led.spends, led.delta, "prv")
        pld_eps = _pld_epsilon(history, led.delta)
        out.append({"cell": cell, "target": led.target_epsilon, "prv": prv, "pld": pld_eps,
                    "rel": prv / pld_eps - 1, "history": history})
    return out


def gdp_grid() -> list[dict]:
    from ppds_core.privacy.accounting import dp_sgd_epsilon

    rows = []
    for sigma, q, steps in itertools.product((0.6, 1.0, 2.0, 5.0), (0.01, 0.036, 0.143, 0.5),
                                             (2, 30, 300, 3000)):
        gdp = dp_sgd_epsilon(sigma, q, steps, 1e-5, "gdp")
        pld_eps = _pld_epsilon([(sigma, q, steps)], 1e-5)
        rows.append({"sigma": sigma, "q": q, "steps": steps, "gdp": gdp, "pld": pld_eps,
                     "ratio": gdp / pld_eps if pld_eps > 0 else float("nan")})
    return rows


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", nargs="?", type=Path, help="a run folder (cells/*/ledger.json)")
    p.add_argument("--gdp-grid", action="store_true", help="gdp ÷ PLD over a (σ, q, T) grid")
    args = p.parse_args(argv)
    if args.run:
        rows = ledgers(args.run)
        print("| cell | target ε | ppds PRV | dp_accounting PLD | PRV ÷ PLD − 1 |\n|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['cell']} | {r['target']:g} | {r['prv']:.5f} | {r['pld']:.5f} | {r['rel']:+.2%} |")
        if rows:
            print(f"\nmax |PRV ÷ PLD − 1| = {max(abs(r['rel']) for r in rows):.3%} over {len(rows)} ledgers")
    if args.gdp_grid:
        rows = gdp_grid()
        under = [r for r in rows if r["ratio"] < 1]
        worst = min(rows, key=lambda r: r["ratio"])
        print(f"gdp below PLD at {len(under)} of {len(rows)} grid points (δ = 1e-5); worst "
              f"gdp ÷ PLD = {worst['ratio']:.3f} at σ={worst['sigma']}, q={worst['q']}, T={worst['steps']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
