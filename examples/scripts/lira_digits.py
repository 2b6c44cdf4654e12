"""LiRA on ``digits``: a memorising non-private generator vs the same recipe at ε = 1.

For each ε the script trains the target generator on a *small* private split
(memorisation is easiest when each image is seen many times), releases
``--synthetic`` samples, and runs the ``lira`` attack with ``--shadow-models``
matched shadow generators: the same recipe and ε, each trained on a subset of
private ∪ holdout of the target's size (with ``--holdout`` = ``--private`` every
candidate is IN for half of them), exactly as inside a matrix cell. It reports
AUC with its 95 % interval, TPR at low FPR and the empirical ε lower bound, and
draws the ROC curves on log-log axes. The defaults are the memorising reference
of docs/attacks.md (dp-gan, 16 shadows; about 10 min of one CPU thread for both ε).

    .venv/bin/python examples/scripts/lira_digits.py --out /tmp/lira-digits --threads 1
    .venv/bin/python examples/scripts/lira_digits.py --generator dp-gan --set epochs=400

Outputs: ``OUT/summary.json``, ``OUT/roc.png``, ``OUT/eps-<ε>/scores.npz``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from ppds_plugins.attacks.lira import LiRA

from ppds_core import FitContext, PrivacyBudget, load_dataset
from ppds_core.api import create_plugin
from ppds_core.interfaces import EvalContext

#: dp-gan options of the memorising reference: 200 epochs over 100 images, narrow nets
MEMORISE = {"epochs": 200, "batch_size": 50, "d_updates": 1, "g_width": 16, "d_width": 16}


def _parse_sets(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key] = yaml.safe_load(value)
    return out


def run_one(args, gen_config: dict, epsilon: float, out: Path) -> dict:
    splits = load_dataset("digits", {"private": args.private, "holdout": args.holdout,
                                     "test": 100, "split_seed": args.seed})
    budget = PrivacyBudget(epsilon=epsilon, delta=args.delta)
    t0 = time.time()
    target = create_plugin(args.generator, "generator", gen_config)
    ledger = target.fit(splits.private, budget, FitContext(seed=args.seed))
    fit_seconds = time.time() - t0

    calls = []

    def fit_fresh(private, seed):
        calls.append(len(private))
        g = type(target)(target.config)  # an untrained copy of the target's recipe
        g.fit(private, budget, FitContext(seed=seed))
        return g

    ctx = EvalContext(splits=splits, synthetic=target.sample(args.synthetic, seed=args.seed + 1),
                      generator=target, budget=budget, ledger=ledger, seed=args.seed,
                      cache_dir=out / "cache", workdir=out / f"eps-{epsilon:g}", fit_fresh=fit_fresh)
    attack = LiRA(shadow_models=args.shadow_models, population=2 * min(args.private, args.holdout),
                  synthetic_samples=args.synthetic, features=args.features,
                  convention=args.convention)
    rows = attack.evaluate(ctx)
    res = {r.name: {"value": r.value, **{k: v for k, v in r.extra.items()
                                         if k in ("ci_low", "ci_high", "point_estimate")}}
           for r in rows}
    res["epsilon_spent"] = ledger.epsilon_spent if ledger.is_private else "inf"
    res["target_fit_seconds"] = fit_seconds
    res["shadow_fits"] = calls
    res["total_seconds"] = time.time() - t0
    return res


def plot(out: Path, epsilons: list[float]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ppds_core.evaluation import auc, read_scores, roc_curve

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for eps in epsilons:
        s, m = read_scores(out / f"eps-{eps:g}" / "scores.npz")
        c = roc_curve(s, m)
        label = "ε=∞" if math.isinf(eps) else f"ε={eps:g}"
        ax.plot(np.maximum(c.fpr, 1e-3), np.maximum(c.tpr, 1e-3),
                label=f"{label} (AUC {auc(c):.3f})")
    ax.plot([1e-3, 1], [1e-3, 1], "k--", lw=0.8, label="chance")
    ax.set(xscale="log", yscale="log", xlim=(1e-3, 1), ylim=(1e-3, 1),
           xlabel="false positive rate", ylabel="true positive rate", title="LiRA on digits")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = out / "roc.png"
    fig.savefig(path, dpi=120)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("lira-digits"))
    ap.add_argument("--generator", default="dp-gan")
    ap.add_argument("--set", action="append", default=[], help="generator option key=value "
                    "(default: the memorising recipe, " + ", ".join(f"{k}={v}" for k, v in MEMORISE.items())
                    + "; any --set replaces it)")
    ap.add_argument("--epsilons", nargs="+", default=["inf", "1"])
    ap.add_argument("--private", type=int, default=100, help="private split size (small: memorise)")
    ap.add_argument("--holdout", type=int, default=100)
    ap.add_argument("--shadow-models", type=int, default=16)
    ap.add_argument("--convention", default="paper", choices=["paper", "reference"])
    ap.add_argument("--synthetic", type=int, default=1000)
    ap.add_argument("--features", default="pixels", choices=["pixels", "pca"])
    ap.add_argument("--delta", type=float, default=1e-5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (1 is far faster on a loaded machine)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    gen_config = _parse_sets(args.set) if args.set else dict(MEMORISE)
    epsilons = [math.inf if e == "inf" else float(e) for e in args.epsilons]
    summary = {"generator": args.generator, "config": gen_config, "private": args.private,
               "holdout": args.holdout, "shadow_models": args.shadow_models,
               "convention": args.convention, "results": {}}
    for eps in epsilons:
        res = run_one(args, gen_config, eps, args.out)
        summary["results"]["inf" if math.isinf(eps) else f"{eps:g}"] = res
        a = res["lira-auc"]
        print(f"ε={eps:g}: LiRA AUC {a['value']:.3f} [{a['ci_low']:.3f}, {a['ci_high']:.3f}], "
              f"TPR@1%FPR {res['lira-tpr@1%fpr']['value']:.3f}, "
              f"ε_lb {res['lira-epsilon-lb']['value']:.2f} ({res['total_seconds']:.0f} s)",
              flush=True)
        (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print("ROC plot:", plot(args.out, epsilons))


if __name__ == "__main__":
    main()
