"""dp-diffusion and privimage on the embedded ``digits`` set (public data: ``glyphs``).

For each run (default: dp-diffusion at ε = 10, privimage at ε = 10, and the
non-private dp-diffusion reference at ε = ∞) the script trains on the private
split of ``digits``, samples 2,000 class-balanced images, trains ppds' shared
small classifier on them and reports its accuracy on the real *test* split
(which nothing else touches). For privimage it also prints the semantic
query's selection table: which glyph classes each digit class selected, and
how many digits got their own glyph. Models are saved under
``OUT/<generator>-eps-<ε>/`` (UNet, ledger, ``samples.png``); the numbers go to
``OUT/summary.json``.

    .venv/bin/python examples/scripts/diffusion_digits.py --out /tmp/diffusion-digits
    .venv/bin/python examples/scripts/diffusion_digits.py --runs privimage:10 --set epochs=40
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
from ppds_plugins.generators.dp_diffusion import DiffusionGenerator
from ppds_plugins.generators.privimage import PrivImage

from ppds_core import FitContext, PrivacyBudget, load_dataset

GENERATORS = {"dp-diffusion": DiffusionGenerator, "privimage": PrivImage}


def _parse_sets(items: list[str]) -> dict:
    return {k: yaml.safe_load(v) for k, _, v in (item.partition("=") for item in items)}


def _finite(x: float):
    return x if math.isfinite(x) else "inf"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("diffusion-digits"))
    ap.add_argument("--runs", nargs="+", default=["dp-diffusion:10", "privimage:10", "dp-diffusion:inf"],
                    help="GENERATOR:EPSILON pairs")
    ap.add_argument("--delta", type=float, default=1e-5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples", type=int, default=2000, help="synthetic images for the classifier")
    ap.add_argument("--classifier-epochs", type=int, default=30)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config option of every run (repeatable)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    splits = load_dataset("digits", public="glyphs")
    overrides = _parse_sets(args.set)
    args.out.mkdir(parents=True, exist_ok=True)
    real = train_classifier(splits.private, epochs=args.classifier_epochs, seed=args.seed)
    real_acc = accuracy(real, splits.test)
    print(f"reference: classifier on the {len(splits.private)} real private images → "
          f"test accuracy {real_acc:.4f}", flush=True)
    rows = []
    for run in args.runs:
        gen_name, _, eps_text = run.partition(":")
        cls = GENERATORS[gen_name]
        budget = PrivacyBudget(epsilon=eps_text, delta=args.delta)
        model = cls(cls.validate_config(overrides))
        start = time.perf_counter()
        ledger = model.fit(splits.private, budget, FitContext(seed=args.seed, public=splits.public))
        seconds = time.perf_counter() - start
        synthetic = model.sample(args.samples, seed=args.seed + 1)
        clf = train_classifier(synthetic, epochs=args.classifier_epochs, seed=args.seed)
        acc = accuracy(clf, splits.test)
        tag = f"{gen_name}-eps-{budget.epsilon:g}"
        model.save(args.out / tag)
        row = {"generator": gen_name, "epsilon": _finite(budget.epsilon),
               "epsilon_spent": _finite(ledger.epsilon_spent), "delta": budget.delta,
               "spends": [s.model_dump() for s in ledger.spends],
               "test_accuracy": round(acc, 4), "train_seconds": round(seconds, 1),
               **model.train_info, "model_dir": str(args.out / tag)}
        if "selection" in model.train_info:
            sel = model.train_info["selection"]
            hits = sum(digit in chosen for digit, chosen in sel.items())
            first = sum(chosen[:1] == [digit] for digit, chosen in sel.items())
            row["selection_hits"] = hits
            print("semantic query selection (digit → glyph classes): "
                  + ", ".join(f"{d}→{'/'.join(c)}" for d, c in sel.items())
                  + f"  [{hits}/10 include their own glyph, {first}/10 as the top pick]", flush=True)
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k not in ("pretrain_loss", "selection")}),
              flush=True)
    summary = {"dataset": "digits", "public": "glyphs", "overrides": overrides,
               "real_data_test_accuracy": round(real_acc, 4), "runs": rows}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
