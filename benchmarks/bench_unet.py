"""DP step time / non-private step time of the diffusion UNet, per grad-sample mode and K.

The model is what dp-diffusion and privimage train privately: diffusers'
class-conditional ``UNet2DModel`` (GroupNorm, no attention) under the DDPM
ε-prediction loss with noise multiplicity K, i.e. B examples → B·K rows. A
"step" is what the engine does per batch: forward, the mode's per-sample
backward, the fold of each example's K rows into one per-example gradient
(the engine's rows-per-example fold), clip + noise (σ = 1) and an Adam step — the
engine's own ``PerSampleGradients`` and Opacus optimizer, without Lightning.
The non-private step at the same K is the baseline of each row, so the ratio
isolates what DP costs.

Timing and peak memory (``--memory``) as in ``bench_dpsgd.py``: warm-up, then
variants interleaved in each round (order rotated) and the median per-step time
reported; ``--batches`` sweeps the batch, ``--device cuda`` runs on the GPU.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings

import torch
from _interleave import auto_cell, interleaved
from bench_dpsgd import memory_cell, peak_in_child, report_peak, timed_steps
from ppds_plugins.common.diffusion.config import DiffusionConfig
from ppds_plugins.common.diffusion.objective import (
    NoiseMultiplicityDDPMLoss,
    make_train_scheduler,
)
from ppds_plugins.common.diffusion.unet import build_unet, model_side

from ppds_core.privacy._grad_modes import GRAD_SAMPLE_MODES, PerSampleGradients, make_dp_optimizer

VARIANTS = ("non-private", *GRAD_SAMPLE_MODES)


class Variant:
    def __init__(self, name: str, size: int, batch: int, k: int, channels: list[int],
                 device: str = "cpu") -> None:
        torch.manual_seed(0)
        self.name, self.device = name, device
        cfg = DiffusionConfig(block_out_channels=channels, noise_multiplicity=k)
        side = model_side(size, len(channels))
        unet = build_unet(cfg, 1, side, 10)
        obj = NoiseMultiplicityDDPMLoss(unet, make_train_scheduler(1000, cfg.beta_schedule), k, 10)
        self.model = obj.to(device)
        self.k = k
        opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        if name == "non-private":
            self.grads, self.opt = None, opt
        else:
            if name == "ghost" and k > 1:
                raise ValueError("ghost clipping cannot average K>1 rows per example before clipping")
            self.grads = PerSampleGradients(self.model, name, max_grad_norm=1.0)
            self.opt = make_dp_optimizer(opt, mode=self.grads.mode, noise_multiplier=1.0, max_grad_norm=1.0,
                                         expected_batch_size=float(batch), distributed=False,
                                         generator=None, secure_mode=False)
        g = torch.Generator().manual_seed(1)
        self.x = (torch.rand(batch, 1, side, side, generator=g) * 2 - 1).to(device)
        self.y = torch.randint(0, 10, (batch,), generator=g).to(device)

    def step(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        losses = self.model(self.x, self.y)
        if self.grads is None:
            losses.mean().backward()
        else:
            self.grads.backward(losses, self.opt, rows_per_example=self.k)
        self.opt.step()

    def timed(self, steps: int) -> tuple[float, float]:
        return timed_steps(self.step, steps, self.device)


def measure(size: int, batch: int, k: int, channels: list[int], rounds: int, steps: int,
            warmup: int, device: str = "cpu") -> dict[str, dict]:
    return interleaved(lambda name: Variant(name, size, batch, k, channels, device), VARIANTS,
                       rounds, steps, warmup, error_width=70)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", "--batch", type=int, nargs="+", default=[32],
                        help="examples per batch (rows = batch·K); several → a sweep")
    parser.add_argument("--size", type=int, default=8, help="image side (padded for the UNet)")
    parser.add_argument("--channels", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2, help="steps timed per variant per round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--memory", action="store_true", help="also the peak memory per mode")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--peak-of", default=None, help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args(argv)
    torch.set_num_threads(args.threads)
    for msg in ("Full backward hook is firing", "In CPU autocast", "Using a non-full backward hook"):
        warnings.filterwarnings("ignore", message=msg)
    if args.peak_of is not None:  # the child of --memory: one variant, one K, one batch
        return report_peak(lambda: Variant(args.peak_of, args.size, args.batches[0], args.ks[0],
                                           args.channels, args.device))

    import diffusers
    import opacus

    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} CPUs "
          f"({args.threads} torch threads), load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"python {platform.python_version()}, torch {torch.__version__}, opacus "
          f"{opacus.__version__}, diffusers {diffusers.__version__}, "
          f"date {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print(f"UNet2DModel block_out_channels={args.channels}, {args.size}×{args.size} grey, "
          f"batches {args.batches} examples, {args.rounds} interleaved rounds × {args.steps} steps, "
          f"{args.warmup} warm-up. Cell: median DP step / median non-private step at the same K, "
          "by wall-clock time, then by process CPU time, then the median wall ms per step\n")
    if args.device.startswith("cuda"):
        print(f"device {torch.cuda.get_device_name(args.device)}")
    print("| K (rows) | " + " | ".join(VARIANTS) + " | auto picks |")
    print("|" + " --- |" * (len(VARIANTS) + 2))
    for k in args.ks:
        for batch in args.batches:
            res = measure(args.size, batch, k, args.channels, args.rounds, args.steps,
                          args.warmup, args.device)
            base = res["non-private"]
            cells = []
            for name in VARIANTS:
                r = res[name]
                if "error" in r:
                    cells.append(f"fails ({r['error']})")
                else:
                    cells.append(f"{r['wall'] / base['wall']:.2f} / {r['cpu'] / base['cpu']:.2f} "
                                 f"({1000 * r['wall']:.0f} ms)")
            picked = Variant("auto", args.size, 1, k, args.channels).grads.mode
            print(f"| {k} ({batch} × {k}) | " + " | ".join(cells) + f" | {auto_cell(res, picked)} |",
                  flush=True)
    if args.memory:
        print("\nPeak memory of two steps (× the non-private step's)\n")
        print("| K (rows) | " + " | ".join(VARIANTS) + " |")
        print("|" + " --- |" * (len(VARIANTS) + 1))
        for k in args.ks:
            for batch in args.batches:
                child = ["--size", str(args.size), "--batches", str(batch), "--ks", str(k),
                         "--channels", *map(str, args.channels), "--device", args.device,
                         "--threads", str(args.threads)]
                mem = {name: peak_in_child(__file__, name, child) for name in VARIANTS}
                print(f"| {k} ({batch} × {k}) | "
                      + " | ".join(memory_cell(mem[n], mem["non-private"]) for n in VARIANTS)
                      + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
