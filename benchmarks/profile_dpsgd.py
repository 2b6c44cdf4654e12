"""Where a book-keeping (``bk``) DP-SGD step spends the time a non-private step does not.

Issue 14 asks, wherever DP ÷ non-private stays above 1.3×, for a profile of the
remaining time. This script takes the models of ``bench_dpsgd`` (the DP-GAN
discriminator, 28×28 and 8×8, batch 256) and ``bench_unet`` (dp-diffusion's UNet,
batch 32, K = 1 and 4) and times one step in phases, for the non-private step
and for ``bk``, interleaved round by round (median over rounds):

- ``forward``: the model call and the loss (bk also records each layer's input
  and taps its output);
- ``backward``: non-private — ``loss.mean().backward()``; bk — the one
  backward to the layer outputs (``torch.autograd.grad``), then
  ``norms`` (the per-layer rules: ghost norms, or instantiated per-example
  gradients and their norms), ``clipped sums`` (Σᵢ cᵢ·gᵢᵀaᵢ per parameter)
  and ``bk other`` (the rest of BookKeeping.backward: checks, clip factors,
  writing ``p.grad``);
- ``optimizer``: non-private — Adam; bk — Opacus' DPOptimizer (the noise, the
  scaling by the expected batch) and Adam.

Then a ``torch.profiler`` pass over a few bk steps lists the aten operators with
the most self time beside the non-private step's, and the time spent outside
any operator (Python, hooks, the autograd engine's bookkeeping).

Run: ``cd benchmarks && ../.venv/bin/python profile_dpsgd.py`` (≈ 1 min on 2 CPUs).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
import warnings
from collections import defaultdict

import torch
from bench_dpsgd import Variant as GanVariant
from bench_unet import Variant as UnetVariant

import ppds_core.privacy._bookkeeping as bookkeeping


class PhaseClock:
    """Accumulates seconds per phase name."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def timed(self, name: str, fn, *args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        self.seconds[name] += time.perf_counter() - start
        return out


def timed_step(variant, clock: PhaseClock, k: int, loss_of) -> None:
    variant.opt.zero_grad(set_to_none=True)
    losses = clock.timed("forward", loss_of, variant)
    if variant.name == "non-private":
        clock.timed("backward", losses.mean().backward)
    else:
        real_grad = torch.autograd.grad

        def timed_grad(*a, **kw):
            return clock.timed("one backward", real_grad, *a, **kw)
        bookkeeping.torch.autograd.grad = timed_grad
        try:
            clock.timed("bk backward", variant.grads.backward, losses, variant.opt,
                        rows_per_example=k)
        finally:
            bookkeeping.torch.autograd.grad = real_grad
    clock.timed("optimizer", variant.opt.step)


def phases(make, k: int, loss_of, rounds: int, steps: int) -> dict[str, dict[str, float]]:
    """Median ms per step of each phase, non-private and bk, interleaved by round."""
    variants = {name: make(name) for name in ("non-private", "bk")}
    for v in variants.values():
        for _ in range(2):
            timed_step(v, PhaseClock(), k, loss_of)
    per_round: dict[str, list[dict[str, float]]] = {n: [] for n in variants}
    for r in range(rounds):
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        for name in order:
            v, clock = variants[name], PhaseClock()
            if name == "bk":
                instrument(v, clock)
            start = time.perf_counter()
            for _ in range(steps):
                timed_step(v, clock, k, loss_of)
            clock.seconds["step"] = time.perf_counter() - start
            per_round[name].append({p: s / steps * 1e3 for p, s in clock.seconds.items()})
    out = {}
    for name, rows in per_round.items():
        keys = rows[0].keys()
        out[name] = {p: statistics.median(r[p] for r in rows) for p in keys}
    bk = out["bk"]
    bk["bk other"] = bk["bk backward"] - bk["one backward"] - bk.get("norms", 0.0) \
        - bk.get("clipped sums", 0.0)
    return out


def instrument(variant, clock: PhaseClock) -> None:
    """Time bk's per-layer rules ("norms") and their clipped-sum closures with ``clock``."""
    bk = variant.grads._bk
    layers = []
    for m, rule, calls in bk._layers:
        base = getattr(rule, "__wrapped_rule__", rule)
        if base is None:
            layers.append((m, None, calls))
            continue

        def timed_rule(mod, done, b, base=base):
            parts = clock.timed("norms", base, mod, done, b)
            return [(p, n, (lambda c, f=f: clock.timed("clipped sums", f, c)), how)
                    for p, n, f, how in parts]
        timed_rule.__wrapped_rule__ = base
        layers.append((m, timed_rule, calls))
    bk._layers = layers


def top_ops(make, steps: int, top: int) -> tuple[list[tuple[str, float, float]], dict]:
    """(op, non-private ms/step, bk ms/step) for the ops with most bk self time; totals."""
    table, totals = {}, {}
    for name in ("non-private", "bk"):
        v = make(name)
        for _ in range(2):
            v.step()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            start = time.perf_counter()
            for _ in range(steps):
                v.step()
            wall = (time.perf_counter() - start) / steps * 1e3
        ops = {e.key: e.self_cpu_time_total / 1e3 / steps for e in prof.key_averages()}
        table[name] = ops
        totals[name] = {"wall (profiled)": wall, "inside operators": sum(ops.values())}
    names = sorted(table["bk"], key=lambda o: -table["bk"][o])[:top]
    rows = [(o, table["non-private"].get(o, 0.0), table["bk"][o]) for o in names]
    return rows, totals


PHASES = ("forward", "backward", "one backward", "norms", "clipped sums", "bk other", "optimizer",
          "step")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--profile-steps", type=int, default=5)
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    print(f"machine: {platform.machine()}, torch {torch.__version__}, {args.threads} torch thread(s), "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {args.rounds} rounds × "
          f"{args.steps} steps, median ms per step\n")
    def gan_loss(v):  # what bench_dpsgd's step computes
        return torch.relu(1 - v.model(v.x, v.y))

    def unet_loss(v):  # bench_unet's: the K-mean DDPM loss per example
        return v.model(v.x, v.y)

    cases = [
        ("DP-GAN D 28×28, batch 256", lambda n: GanVariant(n, 28, 256), 1, gan_loss),
        ("DP-GAN D 8×8, batch 256", lambda n: GanVariant(n, 8, 256), 1, gan_loss),
        ("UNet K=1, batch 32", lambda n: UnetVariant(n, 8, 32, 1, [16, 32]), 1, unet_loss),
        ("UNet K=4, batch 32", lambda n: UnetVariant(n, 8, 32, 4, [16, 32]), 4, unet_loss),
    ]
    for title, make, k, loss_of in cases:
        res = phases(make, k, loss_of, args.rounds, args.steps)
        npv, bk = res["non-private"], res["bk"]
        print(f"### {title}: bk {bk['step']:.1f} ms = {bk['step'] / npv['step']:.2f}× "
              f"non-private {npv['step']:.1f} ms\n")
        print("| phase | non-private ms | bk ms | bk − non-private |")
        print("| --- | --- | --- | --- |")
        for p in PHASES:
            a, b = npv.get(p), bk.get(p)
            if a is None and b is None:
                continue
            fa = "" if a is None else f"{a:.1f}"
            fb = "" if b is None else f"{b:.1f}"
            diff = "" if a is None or b is None else f"{b - a:+.1f}"
            print(f"| {p} | {fa} | {fb} | {diff} |")
        rows, totals = top_ops(make, args.profile_steps, args.top)
        print(f"\ntorch.profiler, {args.profile_steps} steps: the {args.top} aten operators with the "
              "most bk self time (ms per step)\n")
        print("| operator | non-private | bk |")
        print("| --- | --- | --- |")
        for op, a, b in rows:
            print(f"| {op} | {a:.1f} | {b:.1f} |")
        for name in ("non-private", "bk"):
            t = totals[name]
            print(f"| *{name}: outside any operator* | | {t['wall (profiled)'] - t['inside operators']:.1f} "
                  f"of {t['wall (profiled)']:.1f} profiled |" if name == "bk" else
                  f"| *{name}: outside any operator* | {t['wall (profiled)'] - t['inside operators']:.1f} "
                  f"of {t['wall (profiled)']:.1f} profiled | |")
        print()
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
