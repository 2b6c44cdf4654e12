"""How often PrivImage's semantic query finds each digit's own glyph, over seeds and noise draws.

The selection is random twice over: the query classifier depends on its seed,
and the released histogram on the noise draw. One fit shows one outcome; this
script shows the distribution. For each classifier seed it trains the query
function exactly as ``privimage`` does (same code, same options), builds the
noise-free histogram once, and then, for each ε, draws the query noise
``--draws`` times (the first draw is the one ``privimage.fit`` uses for that
seed) and runs the selection in both orders (``class``, DPImageBench's, and
``round-robin``). It prints, per order, ε and σ_q, how many of the ten digits
selected their own glyph class, and writes everything to ``OUT``.

    .venv/bin/python examples/scripts/privimage_selection.py --out /tmp/selection.json
    .venv/bin/python examples/scripts/privimage_selection.py --set query_augment=false --epsilons 10
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
import yaml
from ppds_plugins.common.classifiers import predict_logits
from ppds_plugins.generators.privimage import PrivImage
from ppds_plugins.generators.privimage._selection import classes_per_private, select_public_classes
from ppds_plugins.generators.privimage._semantic_query import (
    auto_query_sigma,
    match_public_to_private,
    noisy_histogram,
    topk_histogram,
    train_query_classifier,
)

from ppds_core import PrivacyBudget, load_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("privimage-selection.json"))
    ap.add_argument("--private", default="digits", help="digits or mnist5k")
    ap.add_argument("--glyphs", default="{}", help="glyphs config as YAML, e.g. '{image_size: 28}'")
    ap.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 4.0, 10.0])
    ap.add_argument("--delta", type=float, default=1e-5)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--draws", type=int, default=20, help="noise draws per seed and ε")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a privimage option (repeatable)")
    args = ap.parse_args()
    torch.set_num_threads(1)

    cfg = PrivImage.validate_config({k: yaml.safe_load(v) for k, _, v in (s.partition("=") for s in args.set)})
    splits = load_dataset(args.private, public={"name": "glyphs", "config": yaml.safe_load(args.glyphs)})
    private = splits.private
    public = match_public_to_private(splits.public, private.shape)
    per_class = classes_per_private(cfg.selection_ratio, public.num_classes, private.num_classes,
                                    cfg.classes_per_private_class)
    results: dict = {"private": args.private, "images": len(private), "classes_per_private_class": per_class,
                     "config": cfg.model_dump(), "seeds": {}, "summary": {}}
    orders = ("class", "round-robin")
    hits: dict[tuple[str, float], list[int]] = {(o, eps): [] for o in orders for eps in args.epsilons}
    for seed in args.seeds:
        classifier = train_query_classifier(public, cfg.query_epochs, seed, torch.device("cpu"), cfg.query_augment)
        hist = topk_histogram(predict_logits(classifier, private.images), private.labels,
                              private.num_classes, cfg.query_topk)
        own = {private.class_names[d]: int(hist[d, public.class_names.index(private.class_names[d])])
               for d in range(private.num_classes)}
        seed_row: dict = {"own_glyph_votes": own, "epsilons": {}}
        for eps in args.epsilons:
            budget = PrivacyBudget(epsilon=eps, delta=args.delta)
            sigma = auto_query_sigma(budget, cfg.query_budget_share) if cfg.query_sigma == "auto" else cfg.query_sigma
            seed_row["epsilons"][eps] = {"sigma": sigma}
            for order in orders:
                draws = []
                for draw in range(args.draws):
                    noise = torch.Generator().manual_seed(seed * 7919 + 17 + draw)  # draw 0 = privimage.fit's
                    noisy = noisy_histogram(hist, sigma, cfg.query_topk, noise)
                    selected = select_public_classes(noisy, per_class, order)
                    table = {private.class_names[i]: [public.class_names[j] for j in js]
                             for i, js in enumerate(selected)}
                    draws.append(sum(name in chosen for name, chosen in table.items()))
                    if draw == 0:
                        seed_row["epsilons"][eps][f"fit_selection_{order}"] = table
                seed_row["epsilons"][eps][f"hits_{order}"] = draws
                hits[(order, eps)].extend(draws)
        results["seeds"][seed] = seed_row
        print(f"seed {seed}: own-glyph votes {own}", flush=True)
    print(f"\n{'order':>12} {'ε':>6} {'σ_q':>7} {'mean hits':>10} {'min':>4} {'P(≥ 8)':>7}")
    for (order, eps), hs in hits.items():
        sigma = next(iter(results["seeds"].values()))["epsilons"][eps]["sigma"]
        at_least_8 = sum(h >= 8 for h in hs) / len(hs)
        results["summary"][f"{order} {eps:g}"] = {
            "order": order, "epsilon": eps, "sigma": sigma, "mean_hits": statistics.mean(hs),
            "min_hits": min(hs), "p_at_least_8": at_least_8, "n": len(hs)}
        print(f"{order:>12} {eps:>6g} {sigma:>7.2f} {statistics.mean(hs):>10.2f} {min(hs):>4} {at_least_8:>7.2f}")
    args.out.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
