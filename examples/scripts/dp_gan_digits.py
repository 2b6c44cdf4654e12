"""DP-GAN on the embedded ``digits`` set: downstream accuracy at ε = 10 and ε = ∞.

Trains ``dp-gan`` with its default config (or ``--set key=value`` overrides)
on the private split of ``digits`` for each ε, samples 2,000 class-balanced
images, trains ppds' shared small classifier on them and reports its
accuracy on the real *test* split (which nothing else touches). Each model
is saved under ``OUT/eps-<ε>/`` with its ledger and ``samples.png``; the
numbers go to ``OUT/summary.json``.

    .venv/bin/python examples/scripts/dp_gan_digits.py --out /tmp/dpgan-digits
    .venv/bin/python examples/scripts/dp_gan_digits.py --epsilons 10 --set epochs=40
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import yaml
from ppds_plugins.common.classifiers import accuracy, train_classifier
from ppds_plugins.generators.dp_gan import DPGAN

from ppds_core import FitContext, PrivacyBudget, load_dataset


def _parse_sets(items: list[str]) -> dict:
    overrides = {}
    for item in items:
        key, _, value = item.partition("=")
        overrides[key] = yaml.safe_load(value)
    return overrides


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("dp-gan-digits"))
    ap.add_argument("--epsilons", nargs="+", default=["10", "inf"])
    ap.add_argument("--delta", type=float, default=1e-5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples", type=int, default=2000, help="synthetic images for the classifier")
    ap.add_argument("--classifier-epochs", type=int, default=30)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a dp-gan config option (repeatable)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (results are reproducible per seed and thread count)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    splits = load_dataset("digits")
    config = DPGAN.validate_config(_parse_sets(args.set))
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    real = train_classifier(splits.private, epochs=args.classifier_epochs, seed=args.seed)
    real_acc = accuracy(real, splits.test)
    print(f"reference: classifier on the {len(splits.private)} real private images → "
          f"test accuracy {real_acc:.4f}", flush=True)
    for eps_text in args.epsilons:
        budget = PrivacyBudget(epsilon=eps_text, delta=args.delta)
        model = DPGAN(config)
        start = time.perf_counter()
        ledger = model.fit(splits.private, budget, FitContext(seed=args.seed))
        seconds = time.perf_counter() - start
        synthetic = model.sample(args.samples, seed=args.seed + 1)
        clf = train_classifier(synthetic, epochs=args.classifier_epochs, seed=args.seed)
        acc = accuracy(clf, splits.test)
        tag = f"eps-{budget.epsilon:g}"
        model.save(args.out / tag)
        row = {
            "epsilon": budget.epsilon if math.isfinite(budget.epsilon) else "inf",
            "epsilon_spent": ledger.epsilon_spent if math.isfinite(ledger.epsilon_spent) else "inf",
            "delta": budget.delta,
            "test_accuracy": round(acc, 4),
            "train_seconds": round(seconds, 1),
            "train_cpu_seconds": model.train_info.get("cpu_seconds"),
            **{k: v for k, v in model.train_info.items() if k not in ("seconds", "cpu_seconds")},
            "model_dir": str(args.out / tag),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {
        "dataset": "digits",
        "config": config.model_dump(mode="json"),
        "real_data_test_accuracy": round(real_acc, 4),
        "runs": rows,
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
