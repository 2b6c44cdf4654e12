"""Multi-process (DDP) fits in their own processes, so ``ppds run`` stays one process.

Why: Lightning's ``ddp`` launcher re-executes *the calling command* once per
extra rank and leaves ``LOCAL_RANK``/``WORLD_SIZE`` in the caller's
environment. Run inside the matrix runner, every rank would re-run the whole
matrix and write its results, and the next DDP cell would find ``LOCAL_RANK``
set, spawn no ranks and wait for ever. So a fit whose trainer needs several
processes runs as ``python -m ppds_core.matrix._workers SPEC``: a fresh
process that loads the exact private (and public) tensors the runner wrote,
calls :func:`~ppds_core.matrix.fit.fit_and_save` (the one fit path, which
only global rank 0 lets write), and exits. Lightning re-executes *that*
command for the other ranks. The runner then loads the saved cell like any
finished fit and evaluates it in its own, single process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from ..budget import PrivacyBudget
from ..imageset import ImageSet
from ..interfaces import FitContext, Generator
from .fit import FitOutcome, fit_and_save, load_fitted

__all__ = ["needs_worker_processes", "fit_in_workers"]

SPEC = "fit-spec.json"
LOG = "fit-workers.log"


def needs_worker_processes(trainer: dict[str, Any]) -> bool:
    """Whether Lightning would start more than one process for this trainer config."""
    from ..privacy._opacus_lightning import DPDDPStrategy, _resolve_strategy, _world_size

    cfg = {"accelerator": "cpu", "devices": 1, **trainer}
    strategy = _resolve_strategy(dict(cfg))
    if not isinstance(strategy, DPDDPStrategy):
        return False
    world = _world_size(cfg)
    return world is None or world > 1


def _save_set(images: ImageSet, path: Path) -> str:
    # exact tensors, not 8-bit PNG/npz: the workers must train on the very pixels the runner holds
    torch.save({"images": images.images, "labels": images.labels, "class_names": images.class_names,
                "name": images.name, "meta": dict(images.meta)}, path)
    return str(path)


def _load_set(path: str) -> ImageSet:
    d = torch.load(path, weights_only=False)
    return ImageSet(d["images"], d["labels"], d["class_names"], d["name"], d["meta"])


def fit_in_workers(gen_cls: type[Generator], gen_config: Any, private: ImageSet, budget: PrivacyBudget,
                   ctx: FitContext, out_dir: Path, n_samples: int, sample_seed: int) -> FitOutcome:
    """Run :func:`fit_and_save` in a fresh process group; return the saved outcome."""
    out_dir = Path(out_dir)
    work = ctx.workdir or out_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    config = gen_config.model_dump(mode="json") if hasattr(gen_config, "model_dump") else (gen_config or {})
    spec = {
        "generator": gen_cls.name, "config": config,
        "epsilon": "inf" if not budget.is_private else budget.epsilon, "delta": budget.delta,
        "seed": ctx.seed, "trainer": ctx.trainer, "accountant": ctx.accountant,
        "reproducible_noise": bool(ctx.reproducible_noise),
        "out_dir": str(out_dir), "workdir": str(work), "samples": n_samples, "sample_seed": sample_seed,
        "private": _save_set(private, work / "private.pt"),
        "public": _save_set(ctx.public, work / "public.pt") if ctx.public is not None else None,
    }
    spec_path = work / SPEC
    spec_path.write_text(json.dumps(spec, indent=2))
    log_path = work / LOG
    with log_path.open("w") as log:
        done = subprocess.run([sys.executable, "-m", __name__, str(spec_path)], stdout=log,
                              stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-15:]
        raise RuntimeError(f"the {gen_cls.name} fit's worker processes exited with {done.returncode} "
                           f"(log: {log_path}):\n" + "\n".join(tail))
    outcome = load_fitted(gen_cls, out_dir)
    if outcome is None:
        raise RuntimeError(f"the {gen_cls.name} fit's workers exited cleanly but left no finished fit "
                           f"in {out_dir} (log: {log_path})")
    return outcome


def main(argv: list[str]) -> int:
    """One rank of a worker fit: ``python -m ppds_core.matrix._workers SPEC``."""
    from ..registry import get_registry

    spec = json.loads(Path(argv[0]).read_text())
    gen_cls = get_registry().get(spec["generator"], "generator")
    config = gen_cls.validate_config(spec["config"], where=f"{spec['generator']}.config")
    ctx = FitContext(seed=spec["seed"], public=_load_set(spec["public"]) if spec["public"] else None,
                     trainer=spec["trainer"], workdir=Path(spec["workdir"]), accountant=spec["accountant"],
                     reproducible_noise=bool(spec.get("reproducible_noise", False)))
    outcome = fit_and_save(gen_cls, config, _load_set(spec["private"]),
                           PrivacyBudget(epsilon=spec["epsilon"], delta=spec["delta"]), ctx,
                           Path(spec["out_dir"]), spec["samples"], spec["sample_seed"])
    import torch.distributed as dist

    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    print(f"{spec['generator']} fit: rank {rank} of {world} done"
          + (f", ε spent {outcome.ledger.epsilon_spent:.4g}, saved to {spec['out_dir']}" if outcome else ""),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
