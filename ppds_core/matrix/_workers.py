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

The work files sit in a run folder that others may write to (sharded runs on a
shared file system), so nothing in them can run code: the tensors travel as
safetensors (no pickle; class names and set name in its string metadata), and
every path ``fit-spec.json`` names is resolved and refused unless it stays in
the folder the runner put it in (data files in the spec's own folder, the
output folder under the spec folder's parent).
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_bytes, atomic_write_text, open_no_follow
from ..budget import PrivacyBudget, encode_float, format_epsilon
from ..errors import PpdsError, UnsafeFileError
from ..imageset import ImageSet
from ..interfaces import FitContext, Generator
from ..safe_load import inside
from .fit import FitOutcome, fit_and_save, load_fitted

__all__ = ["needs_worker_processes", "fit_in_workers"]

SPEC = "fit-spec.json"
LOG = "fit-workers.log"
#: how main() starts the one line it prints when it refuses the spec or a data file
_REFUSED = "ppds refused: "


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
    """Exact float tensors (not 8-bit PNG/npz: the workers train on the very pixels the runner
    holds) as safetensors, which is read without unpickling anything."""
    from safetensors.torch import save

    meta = {"class_names": json.dumps(images.class_names), "name": images.name,
            "meta": json.dumps(dict(images.meta), default=str)}
    atomic_write_bytes(path, save({"images": images.images.contiguous(),
                                   "labels": images.labels.contiguous()}, metadata=meta))
    return str(path)


def _load_set(path: Path) -> ImageSet:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            images, labels = f.get_tensor("images"), f.get_tensor("labels")
        class_names = json.loads(meta["class_names"])
        extra = json.loads(meta.get("meta", "{}"))
        return ImageSet(images, labels, class_names, str(meta.get("name", "")), extra)
    except (SafetensorError, OSError, KeyError, TypeError, ValueError) as err:
        why = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UnsafeFileError(
            f"{path}: not a worker data file written by this ppds ({why}); it is never unpickled: "
            "delete the cell's work/ folder and run again"
        ) from None


def _read_spec(spec_path: Path) -> dict[str, Any]:
    """``fit-spec.json`` with every path it names checked (see the module doc)."""
    try:
        spec = json.loads(spec_path.read_text())
    except (OSError, ValueError) as err:
        raise UnsafeFileError(f"{spec_path}: cannot read the worker spec ({err})") from None
    if not isinstance(spec, dict):
        raise UnsafeFileError(f"{spec_path}: the worker spec is not a JSON object")
    work = spec_path.parent
    where = f"{spec_path}:"
    try:
        if inside(spec["workdir"], work, f"{where} workdir") != work:
            raise UnsafeFileError(f"{where} workdir must be the spec's own folder {work}")
        spec["workdir"] = work
        spec["out_dir"] = inside(spec["out_dir"], work.parent, f"{where} out_dir")
        for key in ("private", "public"):
            if spec[key] is not None:
                spec[key] = inside(spec[key], work, f"{where} {key}")
    except KeyError as err:
        raise UnsafeFileError(f"{where} the worker spec lacks {err}") from None
    return spec


def fit_in_workers(gen_cls: type[Generator], gen_config: Any, private: ImageSet, budget: PrivacyBudget,
                   ctx: FitContext, out_dir: Path, n_samples: int, sample_seed: int,
                   timeout_min: float | None = None) -> FitOutcome:
    """Run :func:`fit_and_save` in a fresh process group; return the saved outcome.

    ``timeout_min`` (the generator's, as for a single-process fit) bounds the launch:
    past it the whole group (every rank Lightning started) is killed and the fit fails
    with "timed out after N min".
    """
    out_dir = Path(out_dir)
    work = ctx.workdir or out_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    inside(work.absolute(), work.parent, "a worker fit's work folder")  # a planted link must not move it
    inside(out_dir.absolute(), work.parent, "a worker fit's output folder")  # what main() will accept
    config = gen_config.model_dump(mode="json") if hasattr(gen_config, "model_dump") else (gen_config or {})
    spec = {
        "generator": gen_cls.name, "config": config,
        "epsilon": encode_float(budget.epsilon), "delta": budget.delta,
        "seed": ctx.seed, "trainer": ctx.trainer, "accountant": ctx.accountant,
        "reproducible_noise": bool(ctx.reproducible_noise),
        "out_dir": str(out_dir), "workdir": str(work), "samples": n_samples, "sample_seed": sample_seed,
        "checkpoint_every": ctx.checkpoint_every,
        "checkpoint": ctx.checkpoint_dir is not None,  # always <out_dir>/checkpoint (not a path to trust)
        "private": _save_set(private, work / "private.safetensors"),
        "public": _save_set(ctx.public, work / "public.safetensors") if ctx.public is not None else None,
    }
    spec_path = work / SPEC
    atomic_write_text(spec_path, json.dumps(spec, indent=2))
    log_path = work / LOG
    log_fd = open_no_follow(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    with os.fdopen(log_fd, "w") as log:
        done = _launch([sys.executable, "-m", __name__, str(spec_path)], log, timeout_min)
    if done is None:
        raise RuntimeError(f"timed out after {timeout_min:g} min (timeout_min); the {gen_cls.name} fit's "
                           f"worker processes were killed (log: {log_path})")
    if done.returncode != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-15:]
        if done.returncode == 2 and tail and tail[-1].startswith(_REFUSED):  # main()'s one line
            raise UnsafeFileError(tail[-1].removeprefix(_REFUSED) + f" (log: {log_path})")
        raise RuntimeError(f"the {gen_cls.name} fit's worker processes exited with {done.returncode} "
                           f"(log: {log_path}):\n" + "\n".join(tail))
    outcome = load_fitted(gen_cls, out_dir)
    if outcome is None:
        raise RuntimeError(f"the {gen_cls.name} fit's workers exited cleanly but left no finished fit "
                           f"in {out_dir} (log: {log_path})")
    return outcome


def _launch(command: list[str], log: Any, timeout_min: float | None) -> subprocess.Popen | None:
    """Run ``command`` and wait; None when it outlived ``timeout_min``.

    With a limit the command leads a new session, so its ranks share a process group that
    can be killed whole, and is: on the timeout, and on the runner's own Ctrl-C / SIGTERM
    while waiting (in their own session the terminal's Ctrl-C no longer reaches them).
    Without one it stays in the caller's group, as a shadow fit inside an attack's unit
    must: that unit's timeout kills its group, these ranks included.
    """
    limit = timeout_min * 60 if timeout_min is not None and math.isfinite(timeout_min) else None
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=limit is not None)
    try:
        proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        return None
    except BaseException:
        _kill_group(proc)
        raise
    return proc


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()


def main(argv: list[str]) -> int:
    """One rank of a worker fit: ``python -m ppds_core.matrix._workers SPEC``."""
    from ..registry import get_registry

    try:
        spec = _read_spec(Path(argv[0]).resolve())
        public = _load_set(spec["public"]) if spec["public"] else None
        private = _load_set(spec["private"])
    except PpdsError as err:  # one line in fit-workers.log, which the runner's error quotes
        print(f"{_REFUSED}{err}", file=sys.stderr, flush=True)
        return 2
    gen_cls = get_registry().get(spec["generator"], "generator")
    config = gen_cls.validate_config(spec["config"], where=f"{spec['generator']}.config")
    ctx = FitContext(seed=spec["seed"], public=public,
                     trainer=spec["trainer"], workdir=spec["workdir"], accountant=spec["accountant"],
                     reproducible_noise=bool(spec.get("reproducible_noise", False)),
                     checkpoint_dir=Path(spec["out_dir"]) / "checkpoint" if spec.get("checkpoint") else None,
                     checkpoint_every=int(spec.get("checkpoint_every", 200)))
    outcome = fit_and_save(gen_cls, config, private,
                           PrivacyBudget(epsilon=spec["epsilon"], delta=spec["delta"]), ctx,
                           spec["out_dir"], spec["samples"], spec["sample_seed"])
    import torch.distributed as dist

    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    print(f"{spec['generator']} fit: rank {rank} of {world} done"
          + (f", ε spent {format_epsilon(outcome.ledger.epsilon_spent, 'spent')}, saved to {spec['out_dir']}" if outcome else ""),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
