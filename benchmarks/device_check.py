"""One device check: what the paper configurations cost on this machine's GPU.

``python benchmarks/device_check.py --out runs/device-check`` (``make device-check``)
writes ``device-check.json`` and ``device-check.md`` into ``--out``, section by
section (each write is atomic: a killed run leaves what it measured). Sections:

- ``env``: GPU name and memory, torch / CUDA / cuDNN / opacus / lightning /
  diffusers versions, the ppds git revision;
- ``step/<generator>`` for DP-GAN and DPDM (dp-diffusion) on MNIST 28×28 and
  PrivImage on CIFAR-10 32×32 at their paper configurations
  (``examples/paper/*.yaml``; DP-GAN has none, so DPImageBench's DP-GAN MNIST
  config is derived below, ``DPGAN_PAPER``): the module and plan come from the
  plugin's own ``dp_sgd_recipe``, random tensors of the right shape stand in for
  the data, and the DP step (per grad-sample mode, ``auto`` included; a mode
  that fails is listed with its reason) and the non-private step run at the
  paper's logical batch in slices of its ``max_physical_batch_size``, timed in
  interleaved rounds (``benchmarks/_interleave.py``'s method); peak memory
  (``torch.cuda.max_memory_allocated``), steps per second and the estimated wall
  time of the paper's schedule (T × time per step of ``auto``);
- ``maxbatch/<generator>``: the largest physical batch (one slice) that fits,
  doubling until out of memory, then bisecting (CUDA only);
- ``fit/<generator>``: a short real fit (``--fit-steps`` DP-SGD steps) through
  ``ppds run`` on a temporary matrix whose dataset is an image folder of
  synthetic stand-in images (``imagenet-folder``, which reads any class-folder
  tree), with sampling and the ``fd-domain`` / ``downstream-accuracy`` metrics,
  and the ledger's σ and ε checked against a plan computed here on the CPU;
- ``ddp``: DP-GAN's recipe under ``strategy: ddp`` on every visible GPU (nccl;
  ``--tiny``: 2 CPU processes, gloo): replicas identical after the steps, ε
  equal to the CPU plan's;
- ``attack/reconstruction`` and ``attack/dpsgd-audit`` at paper size with a few
  targets / audited steps, extrapolated to the plugins' defaults.

A failing section is recorded (its error's first line) and the next one starts;
``--budget-s`` (default 480) stops starting sections once exceeded, and the
report says which were not started. ``--tiny`` is the same script on the CPU with
tiny models, batches and steps (seconds; run by tests/test_device_check.py).
``--write-configs`` (CUDA only) sets each ``examples/paper/*.yaml``'s
``max_physical_batch_size`` to the measured largest fitting batch, with a comment
naming the GPU and the date.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAPER = REPO / "examples" / "paper"
REPORT = "device-check"

#: DPImageBench's DP-GAN on MNIST 28×28 (configs/DPGAN/mnist_28_eps10.0.yaml: batch 4096 ×
#: 150 epochs, 5 discriminator updates per generator update, d_lr 5e-4, g_lr 2e-4, Adam
#: β1 = 0, C = 1, EMA 0.999, z_dim 60, d_conv_dim 80, g_conv_dim 96), mapped onto ppds' dp-gan
#: options; its networks are ppds' own, not DPImageBench's BigGAN-style ones. No paper yaml of
#: ppds holds it, so this is a derivation, and the report says so.
DPGAN_PAPER = {"epochs": 150, "batch_size": 4096, "lr": 5e-4, "g_lr": 2e-4, "betas": [0.0, 0.999],
               "max_grad_norm": 1.0, "d_updates": 5, "latent_dim": 60, "d_width": 80,
               "g_width": 96, "ema": 0.999, "grad_sample_mode": "auto"}

#: (generator, paper yaml or None, dataset stood in for, image shape, classes, training-set size)
GENERATORS = (
    ("dp-gan", None, "mnist", (1, 28, 28), 10, 60000),
    ("dp-diffusion", "mnist-dpdm.yaml", "mnist", (1, 28, 28), 10, 60000),
    ("privimage", "cifar10-privimage.yaml", "cifar10", (3, 32, 32), 10, 50000),
)

#: --tiny: what replaces the paper's sizes (same code path, CPU-sized)
TINY = {
    "dp-gan": {"batch_size": 16, "d_width": 8, "g_width": 8, "latent_dim": 8, "epochs": 2},
    "dp-diffusion": {"batch_size": 8, "noise_multiplicity": 2, "max_physical_batch_size": 4,
                     "block_out_channels": [8, 16], "layers_per_block": 1, "norm_num_groups": 4,
                     "attention": False, "epochs": 2, "sample_steps": 2},
    "privimage": {"batch_size": 8, "noise_multiplicity": 2, "max_physical_batch_size": 4,
                  "block_out_channels": [8, 16], "layers_per_block": 1, "norm_num_groups": 4,
                  "attention": False, "epochs": 2, "sample_steps": 2, "query_epochs": 1,
                  "pretrain_epochs": 1, "pretrain_batch_size": 16, "selection_ratio": 0.5},
}
TINY_SHAPE, TINY_N = 8, 64


# ---------------------------------------------------------------------------- the report

class Report:
    """The JSON document and its Markdown rendering, rewritten atomically after each section."""

    def __init__(self, out: Path, args: argparse.Namespace) -> None:
        self.out, self.start = out, time.monotonic()
        self.data = {"started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "tiny": args.tiny,
                     "budget_s": args.budget_s, "argv": sys.argv[1:], "sections": {}}
        out.mkdir(parents=True, exist_ok=True)

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def put(self, name: str, entry: dict) -> None:
        self.data["sections"][name] = entry
        self.data["elapsed_s"] = round(self.elapsed(), 2)
        _atomic_write(self.out / f"{REPORT}.json", json.dumps(self.data, indent=2, default=str))
        _atomic_write(self.out / f"{REPORT}.md", render_markdown(self.data))


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200] if text else ''}".rstrip(": ")


def run_section(report: Report, name: str, fn, *a) -> None:
    """Run one section: ok (its numbers), skipped (a reason) or failed (the error's first line)."""
    if report.elapsed() > report.data["budget_s"]:
        report.put(name, {"status": "skipped", "reason": f"not started: --budget-s "
                          f"{report.data['budget_s']:g} s exceeded ({report.elapsed():.0f} s)"})
        return
    t0 = time.monotonic()
    try:
        entry = {"status": "ok", **(fn(*a) or {})}
    except Skip as why:
        entry = {"status": "skipped", "reason": str(why)}
    except Exception as err:  # noqa: BLE001 - a failing section is a result; the next one runs
        entry = {"status": "failed", "error": first_line(err),
                 "traceback_tail": traceback.format_exc().strip().splitlines()[-6:]}
    _free_cuda()
    entry["seconds"] = round(time.monotonic() - t0, 2)
    report.put(name, entry)
    print(f"[device-check] {name}: {entry['status']} ({entry['seconds']} s)"
          + (f" — {entry.get('reason') or entry.get('error')}" if entry["status"] != "ok" else ""),
          flush=True)


class Skip(Exception):
    """A section that does not apply here (documented in the report, not a failure)."""


def _free_cuda() -> None:
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------- configs

def paper_config(gen: str, yaml_name: str | None, tiny: bool) -> tuple[dict, dict]:
    """(generator config, matrix top level) of the paper setting; --tiny shrinks it."""
    import yaml

    if yaml_name is None:
        cfg, top = dict(DPGAN_PAPER), {"delta": 1e-5, "accountant": "prv"}
    else:
        doc = yaml.safe_load((PAPER / yaml_name).read_text())
        cfg = dict(doc["generators"][0].get("config") or {})
        top = {k: doc[k] for k in ("delta", "accountant") if k in doc}
    if tiny:
        cfg.update(TINY[gen])
        top["accountant"] = "rdp"  # seconds, not the PRV calibration's ~5 s per plan
    return cfg, top


def shape_of(shape: tuple[int, int, int], n: int, tiny: bool) -> tuple[tuple[int, int, int], int]:
    return ((shape[0], TINY_SHAPE, TINY_SHAPE), TINY_N) if tiny else (shape, n)


def stand_in(shape, classes: int, n: int = 0):
    """A small random ImageSet: dp_sgd_recipe reads only its shape and classes."""
    import torch

    from ppds_core import ImageSet

    n = n or 2 * classes
    g = torch.Generator().manual_seed(0)
    return ImageSet(torch.rand(n, *shape, generator=g), torch.arange(n) % classes,
                    [str(c) for c in range(classes)], name="stand-in")


def recipe(gen: str, cfg: dict, shape, classes: int):
    """(generator plugin, DPSGDModule, DPSGDPlan) from the plugin's own dp_sgd_recipe."""
    from ppds_core import FitContext, PrivacyBudget
    from ppds_core.registry import get_registry

    plugin = get_registry().get(gen, "generator")(cfg)
    module, plan = plugin.dp_sgd_recipe(stand_in(shape, classes), PrivacyBudget(epsilon=10.0),
                                        FitContext(seed=0))
    return plugin, module, plan


def schedule(plan, n: int):
    """The plan's schedule without calibrating σ (only T and q are needed for timing)."""
    from ppds_core.budget import PrivacyBudget
    from ppds_core.privacy.plan import plan_dp_sgd

    return plan_dp_sgd(dataclasses.replace(plan, budget=PrivacyBudget(epsilon=math.inf)), n)


# ---------------------------------------------------------------------------- timed steps

class StepVariant:
    """One way of taking the generator's step: non-private or DP-SGD in one grad-sample mode,
    over the logical batch in slices of ``physical`` examples (one clip-sum-noise step)."""

    def __init__(self, name, gen, cfg, shape, classes, batch, physical, device):
        import torch

        from ppds_core.privacy._grad_modes import PerSampleGradients, make_dp_optimizer

        torch.manual_seed(0)
        self.name, self.device, self.gen = name, device, gen
        _, self.module, plan = recipe(gen, cfg, shape, classes)
        self.module.to(device)
        private = self.module.private_module()
        self.k = getattr(self.module, "rows_per_example", 1)
        self.batch, self.physical = batch, physical
        if name == "ghost" and self.physical < batch:
            raise ValueError("ghost cannot carry clipped sums across physical slices (the plan refuses it)")
        opt = self.module.configure_private_optimizer()
        if name == "non-private":
            self.grads, self.opt, self.mode = None, opt, "-"
        else:
            self.grads = PerSampleGradients(private, name, max_grad_norm=plan.max_grad_norm)
            self.mode = self.grads.mode
            self.opt = make_dp_optimizer(opt, mode=self.grads.mode, noise_multiplier=1.0,
                                         max_grad_norm=plan.max_grad_norm,
                                         expected_batch_size=float(batch), distributed=False,
                                         generator=None, secure_mode=False)
        g = torch.Generator().manual_seed(1)
        side = self._side(shape)
        self.x = (torch.rand(batch, shape[0], side, side, generator=g) * 2 - 1).to(device)
        self.y = torch.randint(0, classes, (batch,), generator=g).to(device)

    def _side(self, shape) -> int:
        if self.gen == "dp-gan":
            return shape[1]
        from ppds_plugins.common.diffusion.unet import model_side

        return model_side(shape[1], len(self.module.cfg.block_out_channels))

    def losses(self, x, y):
        if self.gen == "dp-gan":  # fakes per slice = the slice's reals: the same rows in total
            self.module.fake_batch_size = x.shape[0]
            return self.module.discriminator_losses(x, y)
        return self.module.objective(x, y)

    def step(self) -> None:
        starts = list(range(0, self.batch, self.physical))
        self.opt.zero_grad(set_to_none=True)
        for i, s in enumerate(starts):
            losses = self.losses(self.x[s:s + self.physical], self.y[s:s + self.physical])
            if self.grads is None:
                losses.sum().backward()
                continue
            self.grads.backward(losses, self.opt, rows_per_example=self.k)
            if i < len(starts) - 1:  # the engine's private_step_in_chunks: sum, no noise yet
                self.opt.signal_skip_step(do_skip=True)
                self.opt.step()
                self.opt.zero_grad(set_to_none=True)
        if self.grads is None:
            for group in self.opt.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.grad /= self.batch
        self.opt.step()

    def timed(self, steps: int) -> tuple[float, float]:
        from bench_dpsgd import timed_steps

        return timed_steps(self.step, steps, self.device)


def interleaved_until(make, names, rounds, steps, warmup, deadline, device) -> dict[str, dict]:
    """_interleave.interleaved with peak memory per variant (its warm-up) and a deadline:
    rounds stop once it is passed (at least one round is always timed)."""
    import torch

    cuda = device.startswith("cuda")
    variants, results = [], {}
    for name in names:
        try:
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
            v = make(name)
            v.timed(warmup)
            results[name] = {"mode": v.mode}
            if cuda:
                results[name]["peak_bytes"] = torch.cuda.max_memory_allocated() - base
            variants.append(v)
        except Exception as err:  # noqa: BLE001 - a mode that cannot run this model is a result
            results[name] = {"error": first_line(err)}
            _free_cuda()
    times: dict[str, list[tuple[float, float]]] = {v.name: [] for v in variants}
    done = 0
    for r in range(rounds):
        if r and time.monotonic() > deadline:
            break
        order = variants[r % len(variants):] + variants[: r % len(variants)] if variants else []
        for v in order:
            times[v.name].append(v.timed(steps))
        done += 1
    for name, ts in times.items():
        results[name].update(wall=statistics.median(t[0] for t in ts),
                             cpu=statistics.median(t[1] for t in ts))
    return {"rounds_timed": done, "variants": results}


def section_step(gen, yaml_name, dataset, shape, classes, n, args, device, deadline) -> dict:
    from ppds_core.privacy._grad_modes import GRAD_SAMPLE_MODES

    cfg, _ = paper_config(gen, yaml_name, args.tiny)
    shape, n = shape_of(shape, n, args.tiny)
    _, module, plan = recipe(gen, cfg, shape, classes)
    sch = schedule(plan, n)
    batch = plan.batch_size
    physical = min(batch, plan.max_physical_batch_size or batch)
    names = ["non-private", *(args.modes or GRAD_SAMPLE_MODES)]
    del module
    res = interleaved_until(
        lambda name: StepVariant(name, gen, cfg, shape, classes, batch, physical, device),
        names, args.rounds, args.steps, args.warmup, deadline, device)
    base = res["variants"].get("non-private", {}).get("wall")
    for r in res["variants"].values():
        if "wall" in r:
            r["steps_per_s"] = 1.0 / r["wall"]
            r["ratio_to_non_private"] = r["wall"] / base if base else None
            r["paper_schedule_hours"] = sch.total_steps * r["wall"] / 3600
    auto = res["variants"].get("auto", {})
    return {"config_source": f"examples/paper/{yaml_name}" if yaml_name else
            "derived from DPImageBench configs/DPGAN/mnist_28_eps10.0.yaml (no ppds paper yaml)",
            "dataset": f"{dataset} stand-in: random tensors {list(shape)}", "num_examples": n,
            "logical_batch": batch, "physical_batch": physical,
            "slices_per_step": -(-batch // physical), "rows_per_example": cfg.get("noise_multiplicity", 1),
            "paper_total_steps": sch.total_steps, "device": device,
            "estimated_paper_hours_auto": auto.get("paper_schedule_hours"),
            "note": ("dp-gan's fit takes each Poisson batch in one slice (no max_physical_batch_size "
                     "option); here real and fake rows are sliced alike") if gen == "dp-gan" else "",
            **res}


# ---------------------------------------------------------------------------- largest batch

def section_maxbatch(gen, yaml_name, shape, classes, args, device, measured: dict) -> dict:
    import torch

    if not device.startswith("cuda"):
        raise Skip("no CUDA: the largest-fitting-batch search needs a GPU")
    cfg, _ = paper_config(gen, yaml_name, args.tiny)
    mode = cfg.get("grad_sample_mode", "auto")
    logical = int(cfg["batch_size"])

    def fits(p: int) -> tuple[bool, int]:
        v = None
        try:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            v = StepVariant(mode, gen, cfg, shape, classes, p, p, device)
            v.timed(1)
            return True, torch.cuda.max_memory_allocated()
        except torch.cuda.OutOfMemoryError:
            return False, 0
        finally:
            del v
            _free_cuda()

    tried, good, bad, p = {}, 0, None, max(1, int(cfg.get("max_physical_batch_size") or 1))
    while p <= logical:  # double until out of memory (or the whole logical batch fits)
        ok, peak = fits(p)
        tried[p] = peak if ok else "oom"
        if not ok:
            bad = p
            break
        good, p = p, 2 * p
    if good == 0:
        raise RuntimeError(f"even {p} example(s) per slice run out of memory in mode {mode}")
    while bad is not None and bad - good > max(1, good // 16):  # bisect to within 1/16
        mid = (good + bad) // 2
        ok, peak = fits(mid)
        tried[mid] = peak if ok else "oom"
        good, bad = (mid, bad) if ok else (good, mid)
    measured[gen] = good
    return {"grad_sample_mode": mode, "rows_per_example": cfg.get("noise_multiplicity", 1),
            "largest_fitting_physical_batch": good, "whole_logical_batch_fits": bad is None,
            "first_oom": bad, "tried": {str(k): v for k, v in sorted(tried.items())},
            "gpu_total_bytes": torch.cuda.get_device_properties(device).total_memory}


# ---------------------------------------------------------------------------- real fits

def write_image_folder(root: Path, shape, classes: int, per_class: int, seed: int) -> None:
    """``root/<class>/<i>.png`` of random pixels: the layout imagenet-folder reads."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    c, h, w = shape
    for k in range(classes):
        d = root / f"class{k:02d}"
        d.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (per_class, h, w, c), dtype=np.uint8)
        for i in range(per_class):
            img = pixels[i, :, :, 0] if c == 1 else pixels[i]
            Image.fromarray(img, "L" if c == 1 else "RGB").save(d / f"{i:05d}.png")


def fit_matrix(gen, cfg, top, shape, classes, private_n, tmp: Path, args) -> dict:
    """The temporary matrix of one fit: the paper config for ``--fit-steps`` steps."""
    cfg = dict(cfg)
    batch = int(cfg["batch_size"])
    if gen == "dp-gan":  # no `steps` option: epochs · ⌈N/B⌉ ≈ fit steps
        cfg["epochs"] = max(1, -(-args.fit_steps // -(-private_n // batch)))
    else:
        cfg["steps"] = args.fit_steps
    if gen == "privimage" and not args.tiny:  # the stand-in public set is small: shorten the
        cfg.update(query_epochs=1, pretrain_epochs=1)  # non-private parts, not the DP-SGD
    side = shape[1]
    extra = 200 if not args.tiny else 24  # fd-domain's classifier needs ≥ 20 holdout images
    dataset = {"name": "imagenet-folder",
               "config": {"root": str(tmp / "private"), "image_size": side, "channels": shape[0],
                          "private": private_n, "holdout": extra, "test": extra}}
    if gen == "privimage":
        dataset["public"] = {"name": "imagenet-folder",
                             "config": {"root": str(tmp / "public"), "image_size": side, "channels": 3}}
    accelerator = "cpu" if args.device == "cpu" else "gpu"
    return {"name": f"device-check-{gen}", "seeds": [0], "delta": top.get("delta", 1e-5),
            "accountant": top.get("accountant", "prv"), "samples": 64 if args.tiny else 2000,
            "real_data": False, "threads": 1 if args.tiny else None,
            "trainer": {"accelerator": accelerator, "devices": 1, "strategy": "auto"},
            "datasets": [dataset], "generators": [{"name": gen, "epsilons": [10], "config": cfg}],
            "metrics": [{"name": "fd-domain"}, {"name": "downstream-accuracy"}]}


def section_fit(gen, yaml_name, shape, classes, args, report: Report) -> dict:
    import yaml

    from ppds_core.privacy.ledger import Ledger

    cfg, top = paper_config(gen, yaml_name, args.tiny)
    shape = shape_of(shape, 0, args.tiny)[0]
    batch = int(cfg["batch_size"])
    private_n = 2 * batch if not args.tiny else 48
    extra = 200 if not args.tiny else 24
    tmp = Path(tempfile.mkdtemp(prefix=f"device-check-{gen}-", dir=args.out))
    t0 = time.monotonic()
    per_class = -(-(private_n + 2 * extra) // classes) + 1
    write_image_folder(tmp / "private", shape, classes, per_class, seed=1)
    if gen == "privimage":
        # ≥ 10 public classes: the selection takes distinct ones for the 10 private classes
        write_image_folder(tmp / "public", (3, *shape[1:]), 10 if args.tiny else 20,
                           4 if args.tiny else 50, seed=2)
    written = time.monotonic() - t0
    matrix = fit_matrix(gen, cfg, top, shape, classes, private_n, tmp, args)
    matrix = {k: v for k, v in matrix.items() if v is not None}
    (tmp / "matrix.yaml").write_text(yaml.safe_dump(matrix, sort_keys=False))
    left = max(30.0, report.data["budget_s"] - report.elapsed())
    env = {**os.environ, "PPDS_DATA": str(tmp / "ppds-data")}
    cmd = [sys.executable, "-m", "ppds_core.cli", "run", str(tmp / "matrix.yaml"),
           "--out", str(tmp / "run"), "--quiet"]
    t1 = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=left, env=env, cwd=REPO)
    except subprocess.TimeoutExpired as err:
        raise RuntimeError(f"ppds run stopped after {left:.0f} s (the rest of --budget-s)") from err
    run_s = time.monotonic() - t1
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-3:]
        raise RuntimeError(f"ppds run exited {proc.returncode}: {' | '.join(tail)[:300]}")
    ledgers = list((tmp / "run" / "cells").glob("*/ledger.json"))
    if len(ledgers) != 1:
        raise RuntimeError(f"expected one cell ledger, found {len(ledgers)}")
    ledger = Ledger.read(ledgers[0])
    rows = [json.loads(line) for line in (tmp / "run" / "results.jsonl").read_text().splitlines() if line]
    fit = json.loads((ledgers[0].parent / "fit.json").read_text())
    check = cpu_plan_check(ledger, batch, private_n)
    metrics = {r["name"]: {"status": r.get("status"), "value": r.get("value"), "error": r.get("error")}
               for r in rows}
    if not check["sigma_equal"] or not check["epsilon_equal"]:
        raise RuntimeError(f"ledger σ/ε differ from the CPU plan's: {check}")
    bad = [k for k, v in metrics.items() if v["status"] != "ok"]
    if bad or set(metrics) != {"fd-domain", "downstream-accuracy"}:
        raise RuntimeError("metrics not ok: " + "; ".join(
            f"{k}: {metrics[k]['status']} ({metrics[k]['error']})" for k in bad)[:300]
            if bad else f"expected fd-domain and downstream-accuracy rows, got {sorted(metrics)}")
    return {"matrix": str(tmp / "matrix.yaml"), "private_images": private_n, "fit_steps": ledger.dp_sgd().steps,
            "images_written_s": round(written, 2), "ppds_run_s": round(run_s, 2),
            "fit_s": fit.get("seconds"), "train_info": fit.get("train_info"), "metrics": metrics,
            "metrics_not_ok": bad, "privacy_check": check,
            "note": "one ε (10) of the paper's [1, 10]; stand-in images are random pixels, so the "
                    "metric values mean nothing, only that they ran"}


def cpu_plan_check(ledger, batch: int, n: int) -> dict:
    """The ledger's (σ, ε) against plan_dp_sgd of the same plan, computed here (CPU, no torch)."""
    from ppds_core.budget import PrivacyBudget
    from ppds_core.privacy.plan import DPSGDPlan, plan_dp_sgd

    spend = ledger.dp_sgd()
    other = tuple(s for s in ledger.spends if s is not spend and getattr(s, "mechanism", "") != "dp-sgd")
    plan = DPSGDPlan(budget=PrivacyBudget(epsilon=ledger.target_epsilon, delta=ledger.delta),
                     batch_size=batch, steps=spend.steps, max_grad_norm=spend.max_grad_norm,
                     accountant=ledger.accountant, other_spends=other)
    sch = plan_dp_sgd(plan, n)
    return {"ledger_epsilon": ledger.epsilon_spent, "plan_epsilon": sch.planned_epsilon,
            "ledger_sigma": spend.noise_multiplier, "plan_sigma": sch.noise_multiplier,
            "sample_rate": spend.sample_rate, "other_spends": len(other),
            "sigma_equal": spend.noise_multiplier == sch.noise_multiplier,
            "epsilon_equal": ledger.epsilon_spent == sch.planned_epsilon}


# ---------------------------------------------------------------------------- DDP

def ddp_worker(out: str, spec_json: str) -> int:
    """One rank of the DDP section (Lightning's launcher re-executes this command per rank)."""
    import torch

    from ppds_core import FitContext, PrivacyBudget
    from ppds_core.privacy.engine import fit_private

    spec = json.loads(spec_json)
    shape, classes = tuple(spec["shape"]), 10
    plugin, module, plan = recipe("dp-gan", spec["config"], shape, classes)
    plan = dataclasses.replace(plan, epochs=None, steps=spec["steps"],
                               budget=PrivacyBudget(epsilon=10.0, delta=spec["delta"]))
    data = stand_in(shape, classes, spec["n"])
    ledger = fit_private(module, data, plan, FitContext(seed=0, trainer=spec["trainer"],
                                                        accountant=spec["accountant"]))
    state = {k: v.detach().cpu() for k, v in module.private_module().state_dict().items()}
    torch.save({"state": state, "ledger": ledger.to_json(), "world": module.dp.world_size,
                "steps": module.dp.steps_done}, os.path.join(out, f"rank{module.dp.rank}.pt"))
    return 0


def section_ddp(args, report: Report) -> dict:
    import torch

    from ppds_core.budget import PrivacyBudget
    from ppds_core.privacy.ledger import Ledger
    from ppds_core.privacy.plan import plan_dp_sgd

    cuda = args.device.startswith("cuda")
    gpus = torch.cuda.device_count() if cuda else 0
    devices = gpus if cuda else 2
    cfg, top = paper_config("dp-gan", None, args.tiny)
    shape = shape_of((1, 28, 28), 0, args.tiny)[0]
    n = TINY_N if args.tiny else 60000
    trainer = {"accelerator": "gpu" if cuda else "cpu", "devices": devices, "strategy": "ddp"}
    spec = {"config": cfg, "shape": list(shape), "n": n, "steps": args.ddp_steps, "trainer": trainer,
            "delta": top.get("delta", 1e-5), "accountant": top.get("accountant", "prv")}
    tmp = Path(tempfile.mkdtemp(prefix="device-check-ddp-", dir=args.out))
    left = max(30.0, report.data["budget_s"] - report.elapsed())
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "RANK", "WORLD_SIZE")}
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--ddp-worker", str(tmp),
                           json.dumps(spec)], capture_output=True, text=True, timeout=left, cwd=tmp, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"DDP workers exited {proc.returncode}: "
                           + " | ".join(proc.stderr.strip().splitlines()[-3:])[:300])
    ranks = [torch.load(tmp / f"rank{r}.pt") for r in range(devices)]
    identical = all(torch.equal(ranks[0]["state"][k], r["state"][k]) for r in ranks[1:] for k in ranks[0]["state"])
    ledgers = [Ledger.from_json(r["ledger"]) for r in ranks]
    _, _, plan = recipe("dp-gan", cfg, shape, 10)
    plan = dataclasses.replace(plan, epochs=None, steps=args.ddp_steps, accountant=spec["accountant"],
                               budget=PrivacyBudget(epsilon=10.0, delta=spec["delta"]))
    sch = plan_dp_sgd(plan, n)
    same_eps = all(lg.epsilon_spent == sch.planned_epsilon for lg in ledgers)
    if not identical or not same_eps:
        raise RuntimeError(f"DDP check failed: replicas identical {identical}, ε equal to the "
                           f"CPU plan's {same_eps} ({[lg.epsilon_spent for lg in ledgers]} vs "
                           f"{sch.planned_epsilon})")
    return {"backend": "nccl" if cuda else "gloo", "processes": devices, "steps": args.ddp_steps,
            "world_size": ranks[0]["world"], "steps_done": [r["steps"] for r in ranks],
            "replicas_identical": identical, "epsilon": ledgers[0].epsilon_spent,
            "plan_epsilon": sch.planned_epsilon, "generator": "dp-gan (its dp_sgd_recipe)"}


# ---------------------------------------------------------------------------- attacks

def section_reconstruction(args) -> dict:
    """Time per target and per prior step, from two small runs; extrapolated to the defaults."""
    import torch
    from ppds_plugins.attacks.reconstruction import (
        ReconstructionConfig,
        _prior_config,
        run_reconstruction,
    )
    from ppds_plugins.attacks.reconstruction._prior import fit_or_load_prior

    paper = ReconstructionConfig()
    side = TINY_SHAPE if args.tiny else 28
    small = {"prior_steps": 2 if args.tiny else 20, "kappa_samples": 10 if args.tiny else 50,
             "ddim_steps": 3 if args.tiny else paper.ddim_steps, "repeats": 2, "mus": [],
             "kappa_population": 16 if args.tiny else 200}
    if args.tiny:
        small["prior_channels"] = [8, 16]
    g = torch.Generator().manual_seed(0)
    pool = torch.rand(256 if not args.tiny else 32, 1, side, side, generator=g)
    t0 = time.monotonic()
    fit_or_load_prior(pool, _prior_config(ReconstructionConfig(**small)), small["prior_steps"],
                      paper.prior_batch_size, 0, None)
    per_prior_step = (time.monotonic() - t0) / small["prior_steps"]
    counts = (2, 4) if args.tiny else (2, 6)
    times = []
    for k in counts:
        cfg = ReconstructionConfig(**{**small, "targets": k})
        t0 = time.monotonic()
        run_reconstruction(cfg, pool[:k], pool[k:], [1.0], 1.0, 0, None)
        times.append(time.monotonic() - t0)
    per_target = max(0.0, (times[1] - times[0]) / (counts[1] - counts[0]))
    fixed = max(0.0, times[0] - counts[0] * per_target - small["prior_steps"] * per_prior_step)
    estimate = fixed + paper.prior_steps * per_prior_step + paper.targets * per_target
    return {"device": "cpu (the reconstruction plugin has no device option: it runs on the CPU "
                      "even where a GPU is visible)", "image": [1, side, side],
            "runs": {str(k): round(t, 2) for k, t in zip(counts, times, strict=True)},
            "seconds_per_target": per_target, "seconds_per_prior_step": per_prior_step,
            "estimated_default_seconds": estimate,
            "defaults": {"targets": paper.targets, "prior_steps": paper.prior_steps,
                         "kappa_samples": paper.kappa_samples, "ddim_steps": paper.ddim_steps},
            "note": "estimate = fixed part + prior steps × s/step + targets × s/target; the "
                    "κ sampling scales with kappa_samples, measured here at "
                    f"{small['kappa_samples']} (default {paper.kappa_samples})"}


def section_audit(args, device: str) -> dict:
    """dpsgd-audit of DPDM's recipe at paper size for a few steps; s per audited step."""
    from ppds_plugins.attacks.audit import AuditConfig, DPSGDAudit

    from ppds_core import FitContext, PrivacyBudget
    from ppds_core.privacy.ledger import DPSGDSpend

    gen, yaml_name, _, shape, classes, n = GENERATORS[1]
    cfg, top = paper_config(gen, yaml_name, args.tiny)
    shape, n = shape_of(shape, n, args.tiny)
    plugin, _, plan = recipe(gen, cfg, shape, classes)
    sch = schedule(plan, n)
    steps = 2 if args.tiny else 5
    runs = 20 if args.tiny else 200
    spend = DPSGDSpend(noise_multiplier=1.0, sample_rate=sch.sample_rate, steps=sch.total_steps,
                       max_grad_norm=plan.max_grad_norm)
    budget = PrivacyBudget(epsilon=10.0, delta=top.get("delta", 1e-5))
    trainer = {"accelerator": "gpu", "devices": 1} if device.startswith("cuda") else {"accelerator": "cpu"}
    audit = DPSGDAudit({"runs": runs, "max_steps": steps})
    private = stand_in(shape, classes)
    t0 = time.monotonic()
    rows = audit.audit(spend, budget, num_examples=n, accountant="rdp", seed=0,
                       make_recipe=lambda: plugin.dp_sgd_recipe(private, budget, FitContext(seed=0)),
                       trainer=trainer)
    took = time.monotonic() - t0
    default = AuditConfig()
    fits = -(-default.runs // n)
    return {"generator": gen, "device": device, "runs": runs, "steps_audited": steps,
            "seconds": round(took, 2), "seconds_per_step": took / steps,
            "estimated_default_seconds": took / steps * min(default.max_steps, sch.total_steps) * fits,
            "defaults": {"runs": default.runs, "max_steps": default.max_steps, "fits": fits},
            "rows": len(rows), "note": "σ fixed at 1 (the audit's cost does not depend on it); "
                                       "includes one-off start-up, so the estimate is an upper bound"}


# ---------------------------------------------------------------------------- environment

def section_env(device: str) -> dict:
    import torch

    def version(mod):
        try:
            return __import__(mod).__version__
        except Exception as err:  # noqa: BLE001
            return f"unavailable ({first_line(err)})"

    rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, cwd=REPO)
    env = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda,
           "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
           "opacus": version("opacus"), "pytorch_lightning": version("pytorch_lightning"),
           "diffusers": version("diffusers"), "device": device, "cpus": os.cpu_count(),
           "ppds_revision": rev.stdout.strip() or None,
           "ppds_tree_modified": bool(dirty.stdout.strip()) if dirty.returncode == 0 else None}
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, gpu_memory_bytes=props.total_memory,
                   gpu_count=torch.cuda.device_count(), capability=f"{props.major}.{props.minor}")
    else:
        env["gpu"] = None
    return env


# ---------------------------------------------------------------------------- --write-configs

_PHYSICAL = re.compile(r"^(?P<lead>\s*max_physical_batch_size:\s*)(?P<value>[^#\n]*?)(?P<rest>\s*#.*)?$",
                       re.MULTILINE)


def set_physical_batch(text: str, value: int, note: str) -> str:
    """``text`` (a paper yaml) with its ``max_physical_batch_size`` set to ``value`` and its
    comment replaced by ``note``; every other byte unchanged. Refuses a file without exactly
    one such line (it would not know which generator the value is for)."""
    found = _PHYSICAL.findall(text)
    if len(found) != 1:
        raise ValueError(f"expected one max_physical_batch_size line, found {len(found)}")
    return _PHYSICAL.sub(lambda m: f"{m['lead']}{int(value)}  # {note}", text, count=1)


def write_configs(measured: dict[str, int], gpu: str) -> list[str]:
    """Apply the measured largest batches to examples/paper/*.yaml; the files changed."""
    changed = []
    note = f"largest fitting batch measured on {gpu}, {time.strftime('%Y-%m-%d')} (benchmarks/device_check.py)"
    for gen, yaml_name, *_ in GENERATORS:
        if yaml_name is None or gen not in measured:
            continue
        path = PAPER / yaml_name
        path.write_text(set_physical_batch(path.read_text(), measured[gen], note))
        changed.append(str(path.relative_to(REPO)))
    return changed


# ---------------------------------------------------------------------------- markdown

def _fmt(x, digits=3) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def render_markdown(data: dict) -> str:
    lines = [f"# Device check ({'--tiny, CPU' if data['tiny'] else 'paper scale'})", "",
             f"Started {data['started']}, {data.get('elapsed_s', 0):.0f} s so far, "
             f"budget {data['budget_s']:g} s. Generated by benchmarks/device_check.py; "
             "the JSON beside this file holds every number.", ""]
    lines += ["| section | status | seconds | note |", "| --- | --- | --- | --- |"]
    for name, s in data["sections"].items():
        note = s.get("reason") or s.get("error") or ""
        lines.append(f"| {name} | {s['status']} | {_fmt(s.get('seconds'))} | {note[:160]} |")
    for name, s in data["sections"].items():
        if s["status"] != "ok":
            continue
        lines += ["", f"## {name}", ""]
        if name.startswith("step/"):
            lines += [f"{s['config_source']}; {s['dataset']}; logical batch {s['logical_batch']} in "
                      f"{s['slices_per_step']} slice(s) of {s['physical_batch']}, K = "
                      f"{s['rows_per_example']}; paper schedule T = {s['paper_total_steps']} steps; "
                      f"{s['rounds_timed']} interleaved round(s). {s.get('note', '')}", "",
                      "| variant | mode | ms/step | × non-private | steps/s | peak MiB | paper hours |",
                      "| --- | --- | --- | --- | --- | --- | --- |"]
            for v, r in s["variants"].items():
                if "error" in r:
                    lines.append(f"| {v} | fails: {r['error'][:100]} | | | | | |")
                    continue
                peak = r.get("peak_bytes")
                lines.append(f"| {v} | {r.get('mode')} | {1000 * r['wall']:.1f} | "
                             f"{_fmt(r.get('ratio_to_non_private'))} | {r['steps_per_s']:.3g} | "
                             f"{_fmt(peak / 2**20 if peak is not None else None)} | "
                             f"{r['paper_schedule_hours']:.3g} |")
        else:
            body = {k: v for k, v in s.items() if k not in ("status", "seconds")}
            lines += ["```json", json.dumps(body, indent=1, default=str)[:4000], "```"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/device-check", help="folder of the JSON + Markdown report")
    p.add_argument("--tiny", action="store_true", help="CPU, tiny models and batches: seconds (CI)")
    p.add_argument("--budget-s", type=float, default=480.0, help="start no section after this many seconds")
    p.add_argument("--device", default=None, help="cuda (default when visible) or cpu")
    p.add_argument("--modes", nargs="+", default=None, help="grad-sample modes to time (default: all)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds")
    p.add_argument("--steps", type=int, default=1, help="steps timed per variant per round")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--fit-steps", type=int, default=None, help="DP-SGD steps of each real fit (default 200)")
    p.add_argument("--ddp-steps", type=int, default=None, help="DP-SGD steps of the DDP check")
    p.add_argument("--sections", nargs="+", default=None,
                   help="only sections whose name starts with one of these (e.g. step fit ddp)")
    p.add_argument("--no-ddp", action="store_true", help="skip the DDP section")
    p.add_argument("--ddp", action="store_true", help="--tiny: run the DDP section too (2 CPU processes)")
    p.add_argument("--write-configs", action="store_true",
                   help="CUDA: set examples/paper/*.yaml's max_physical_batch_size to the measured batch")
    p.add_argument("--ddp-worker", nargs=2, metavar=("OUT", "SPEC"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.ddp_worker:
        return ddp_worker(*args.ddp_worker)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    for msg in ("Full backward hook is firing", "In CPU autocast", "Using a non-full backward hook"):
        warnings.filterwarnings("ignore", message=msg)
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    if args.tiny:
        torch.set_num_threads(1)
    args.rounds = args.rounds or (2 if args.tiny else 3)
    args.fit_steps = args.fit_steps or (3 if args.tiny else 200)
    args.ddp_steps = args.ddp_steps or (2 if args.tiny else 5)
    args.out = Path(args.out).resolve()
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_dpsgd, _interleave
    report = Report(args.out, args)
    device = args.device
    wanted = (lambda name: any(name.startswith(s) for s in args.sections)) if args.sections else (lambda n: True)
    measured: dict[str, int] = {}
    if wanted("env"):
        run_section(report, "env", section_env, device)
    for gen, yaml_name, dataset, shape, classes, n in GENERATORS:
        if wanted(f"step/{gen}"):
            share = time.monotonic() + max(10.0, (args.budget_s - report.elapsed()) / 6)
            run_section(report, f"step/{gen}", section_step, gen, yaml_name, dataset, shape, classes,
                        n, args, device, share)
        if wanted(f"maxbatch/{gen}"):
            run_section(report, f"maxbatch/{gen}", section_maxbatch, gen, yaml_name, shape, classes,
                        args, device, measured)
    for gen, yaml_name, _, shape, classes, _ in GENERATORS:
        if wanted(f"fit/{gen}"):
            run_section(report, f"fit/{gen}", section_fit, gen, yaml_name, shape, classes, args, report)
    if wanted("ddp"):
        if args.no_ddp or (args.tiny and not args.ddp):
            report.put("ddp", {"status": "skipped", "reason": "--no-ddp" if args.no_ddp else (
                "--tiny: DDP on 2 CPU processes (gloo) takes ~60 s on 2 CPUs, past the tiny run's "
                "budget; tests/test_engine_ddp.py covers it on CPU, --tiny --ddp runs it here")})
        else:
            run_section(report, "ddp", section_ddp, args, report)
    if wanted("attack/reconstruction"):
        run_section(report, "attack/reconstruction", section_reconstruction, args)
    if wanted("attack/dpsgd-audit"):
        run_section(report, "attack/dpsgd-audit", section_audit, args, device)
    if args.write_configs:
        if not device.startswith("cuda"):
            report.put("write-configs", {"status": "skipped", "reason": "no CUDA: nothing measured"})
        else:
            gpu = torch.cuda.get_device_name(device)
            report.put("write-configs", {"status": "ok", "changed": write_configs(measured, gpu)})
    failed = [k for k, s in report.data["sections"].items() if s["status"] == "failed"]
    print(f"[device-check] report: {args.out / (REPORT + '.md')} ({report.elapsed():.0f} s; "
          f"{len(failed)} failed section(s))")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
