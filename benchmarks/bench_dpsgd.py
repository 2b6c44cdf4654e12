"""DP-SGD step time / non-private step time, per grad-sample mode, side by side.

The model is what DP-GAN trains privately: a small class-conditional
(projection) CNN discriminator with GroupNorm, hinge loss on real images,
batch 256, at 28×28 and 8×8. Each "step" is what the engine does per batch:
forward, per-sample backward of the mode, clip + noise (σ = 1) and an Adam
step — the engine's own ``PerSampleGradients`` and Opacus optimizer, without
Lightning (whose per-step overhead is the same with or without DP).

Timing: every variant is warmed up, then the variants are interleaved in
each round (order rotated round by round) so that a slow spell of a shared
machine hits all of them alike; the table reports the median over rounds of
the per-step time and its ratio to the non-private step measured in the
same rounds.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
import warnings

import torch
from _interleave import interleaved
from torch import nn

from ppds_core.privacy._grad_modes import GRAD_SAMPLE_MODES, PerSampleGradients, make_dp_optimizer

VARIANTS = ("non-private", *GRAD_SAMPLE_MODES)


class ConditionalDiscriminator(nn.Module):
    """Projection discriminator: D(x, y) = w·h(x) + ⟨embed(y), h(x)⟩."""

    def __init__(self, size: int, classes: int = 10, ch: int = 32) -> None:
        super().__init__()
        stride1 = 2 if size >= 16 else 1
        self.conv1 = nn.Conv2d(1, ch, 3, stride=stride1, padding=1)
        self.conv2 = nn.Conv2d(ch, 2 * ch, 3, stride=2, padding=1)
        self.norm = nn.GroupNorm(8, 2 * ch)
        side = math.ceil(math.ceil(size / stride1) / 2)  # after the two (padded) convs
        features = 2 * ch * side * side
        self.fc = nn.Linear(features, 1)
        self.embed = nn.Embedding(classes, features)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = nn.functional.leaky_relu(self.conv1(x), 0.2)
        h = nn.functional.leaky_relu(self.norm(self.conv2(h)), 0.2).flatten(1)
        # labels as (B, 1): ExpandedWeights ('ew') refuses a 1-D index tensor as "no batch"
        return self.fc(h).squeeze(1) + (self.embed(y[:, None]).squeeze(1) * h).sum(1)


class Variant:
    """One way of taking a step: plain, or DP-SGD with a grad-sample mode."""

    def __init__(self, name: str, size: int, batch: int) -> None:
        torch.manual_seed(0)
        self.name = name
        self.model = ConditionalDiscriminator(size)
        opt = torch.optim.Adam(self.model.parameters(), lr=2e-4)
        if name == "non-private":
            self.grads, self.opt = None, opt
        else:
            self.grads = PerSampleGradients(self.model, name, max_grad_norm=1.0)
            self.opt = make_dp_optimizer(opt, mode=name, noise_multiplier=1.0, max_grad_norm=1.0,
                                         expected_batch_size=float(batch), distributed=False,
                                         generator=None, secure_mode=False)
        g = torch.Generator().manual_seed(1)
        self.x = torch.rand(batch, 1, size, size, generator=g) * 2 - 1
        self.y = torch.randint(0, 10, (batch,), generator=g)

    def step(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        losses = torch.relu(1 - self.model(self.x, self.y))
        if self.grads is None:
            losses.mean().backward()
        else:
            self.grads.backward(losses, self.opt)
        self.opt.step()

    def timed(self, steps: int) -> tuple[float, float]:
        """(wall seconds, process CPU seconds) per step."""
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            self.step()
        return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps


def measure(size: int, batch: int, rounds: int, steps: int, warmup: int) -> dict[str, dict]:
    return interleaved(lambda name: Variant(name, size, batch), VARIANTS, rounds, steps, warmup, error_width=80)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--sizes", type=int, nargs="+", default=[28, 8])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=3, help="steps timed per variant per round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: stable on a shared machine; try 2 on an idle one)")
    args, _ = parser.parse_known_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    warnings.filterwarnings("ignore", message="In CPU autocast")

    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs "
          f"({args.threads} torch threads), load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    import opacus

    print(f"python {platform.python_version()}, torch {torch.__version__}, "
          f"opacus {opacus.__version__}, date {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print(f"batch {args.batch}, {args.rounds} interleaved rounds × {args.steps} steps, "
          f"{args.warmup} warm-up steps. Cell: median DP step / median non-private step, "
          "by wall-clock time, then by process CPU time (robust on a shared machine), "
          "then the median wall ms per step\n")
    print("| input | " + " | ".join(VARIANTS) + " |")
    print("|" + " --- |" * (len(VARIANTS) + 1))
    for size in args.sizes:
        res = measure(size, args.batch, args.rounds, args.steps, args.warmup)
        base = res["non-private"]
        cells = []
        for name in VARIANTS:
            r = res[name]
            if "error" in r:
                cells.append(f"fails ({r['error']})")
            else:
                cells.append(f"{r['wall'] / base['wall']:.2f} / {r['cpu'] / base['cpu']:.2f} "
                             f"({1000 * r['wall']:.0f} ms)")
        print(f"| {size}×{size} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
