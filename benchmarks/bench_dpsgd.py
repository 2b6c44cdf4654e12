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
same rounds. ``--batches 32 64 … 1024`` sweeps the batch size (one row per
input and batch).

Peak memory (``--memory``): on CPU each variant runs two steps in a fresh
interpreter, and the peak is the resident set size's high-water mark during
those steps above the RSS before them (sampled every 0.5 ms and checked
against ``ru_maxrss``), so one variant's freed-but-cached memory cannot hide
the next one's; on CUDA, ``torch.cuda.max_memory_allocated`` above the memory
held before the steps. ``--device cuda`` times on the GPU (synchronised).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import threading
import time
import warnings

import torch
from _interleave import auto_cell, interleaved
from torch import nn

from ppds_core.privacy._grad_modes import (
    GRAD_SAMPLE_MODES,
    PerSampleGradients,
    make_dp_optimizer,
    resolve_grad_sample_mode,
)

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

    def __init__(self, name: str, size: int, batch: int, device: str = "cpu") -> None:
        torch.manual_seed(0)
        self.name, self.device = name, device
        self.model = ConditionalDiscriminator(size).to(device)
        opt = torch.optim.Adam(self.model.parameters(), lr=2e-4)
        if name == "non-private":
            self.grads, self.opt = None, opt
        else:
            self.grads = PerSampleGradients(self.model, name, max_grad_norm=1.0)
            self.opt = make_dp_optimizer(opt, mode=self.grads.mode, noise_multiplier=1.0, max_grad_norm=1.0,
                                         expected_batch_size=float(batch), distributed=False,
                                         generator=None, secure_mode=False)
        g = torch.Generator().manual_seed(1)
        self.x = (torch.rand(batch, 1, size, size, generator=g) * 2 - 1).to(device)
        self.y = torch.randint(0, 10, (batch,), generator=g).to(device)

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
        return timed_steps(self.step, steps, self.device)


def timed_steps(step, steps: int, device: str) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) per step; GPU work is waited for."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    sync()
    return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_bytes(variant, steps: int = 2) -> int:
    """Peak memory of ``steps`` steps above what was held before them (see the module doc)."""
    if variant.device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        variant.timed(steps)
        return torch.cuda.max_memory_allocated() - base
    base, high_before = _rss(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    peak, done = [base], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    variant.timed(steps)
    done.set()
    sampler.join()
    high_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return max(peak[0], high_after if high_after > high_before else 0) - base


def peak_in_child(script: str, name: str, argv: list[str]) -> dict:
    """{"bytes"} or {"error"}: ``script --peak-of name *argv`` in a fresh interpreter."""
    proc = subprocess.run([sys.executable, script, "--peak-of", name, *argv],
                          capture_output=True, text=True, timeout=1800)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:60]}
    return json.loads(lines[-1])


def report_peak(make) -> int:
    """The child side of :func:`peak_in_child`: build, measure, print one JSON line."""
    try:
        print(json.dumps({"bytes": peak_bytes(make())}))
    except Exception as err:  # a mode that cannot run this model
        print(json.dumps({"error": type(err).__name__}))
    return 0


def memory_cell(r: dict, ref: dict) -> str:
    if "error" in r:
        return f"fails ({r['error']})"
    mb = r["bytes"] / 2**20
    return f"{mb:.0f} MB" + (f" ({r['bytes'] / ref['bytes']:.2f}×)" if "bytes" in ref else "")


def measure(size: int, batch: int, rounds: int, steps: int, warmup: int,
            device: str = "cpu") -> dict[str, dict]:
    return interleaved(lambda name: Variant(name, size, batch, device), VARIANTS, rounds, steps,
                       warmup, error_width=80)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", "--batch", type=int, nargs="+", default=[256],
                        help="batch sizes to sweep, e.g. 32 64 128 256 512 1024")
    parser.add_argument("--sizes", type=int, nargs="+", default=[28, 8])
    parser.add_argument("--memory", action="store_true", help="also the peak memory per mode")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--peak-of", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=3, help="steps timed per variant per round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: stable on a shared machine; try 2 on an idle one)")
    args, _ = parser.parse_known_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    warnings.filterwarnings("ignore", message="In CPU autocast")
    if args.peak_of is not None:  # the child of --memory: one variant, one size, one batch
        return report_peak(lambda: Variant(args.peak_of, args.sizes[0], args.batches[0],
                                           args.device))

    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs "
          f"({args.threads} torch threads), load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    import opacus

    print(f"python {platform.python_version()}, torch {torch.__version__}, "
          f"opacus {opacus.__version__}, date {time.strftime('%Y-%m-%d %H:%M %Z')}")
    if args.device.startswith("cuda"):
        print(f"device {torch.cuda.get_device_name(args.device)}")
    print(f"batches {args.batches}, {args.rounds} interleaved rounds × {args.steps} steps, "
          f"{args.warmup} warm-up steps. Cell: median DP step / median non-private step, "
          "by wall-clock time, then by process CPU time (robust on a shared machine), "
          "then the median wall ms per step\n")
    print("| input | batch | " + " | ".join(VARIANTS) + " | auto picks |")
    print("|" + " --- |" * (len(VARIANTS) + 3))
    for size in args.sizes:
        for batch in args.batches:
            res = measure(size, batch, args.rounds, args.steps, args.warmup, args.device)
            picked = resolve_grad_sample_mode(ConditionalDiscriminator(size), "auto")[0]
            print(f"| {size}×{size} | {batch} | " + " | ".join(ratio_cells(res))
                  + f" | {auto_cell(res, picked)} |", flush=True)
    if args.memory:
        print("\nPeak memory of two steps (× the non-private step's)\n")
        print("| input | batch | " + " | ".join(VARIANTS) + " |")
        print("|" + " --- |" * (len(VARIANTS) + 2))
        for size in args.sizes:
            for batch in args.batches:
                child = ["--sizes", str(size), "--batches", str(batch), "--device", args.device,
                         "--threads", str(args.threads)]
                mem = {name: peak_in_child(__file__, name, child) for name in VARIANTS}
                print(f"| {size}×{size} | {batch} | "
                      + " | ".join(memory_cell(mem[n], mem["non-private"]) for n in VARIANTS)
                      + " |", flush=True)
    return 0


def ratio_cells(res: dict[str, dict]) -> list[str]:
    base = res["non-private"]
    cells = []
    for name in VARIANTS:
        r = res[name]
        if "error" in r:
            cells.append(f"fails ({r['error']})")
        else:
            cells.append(f"{r['wall'] / base['wall']:.2f} / {r['cpu'] / base['cpu']:.2f} "
                         f"({1000 * r['wall']:.0f} ms)")
    return cells


if __name__ == "__main__":
    sys.exit(main())
