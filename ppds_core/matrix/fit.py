"""Fit one generator and leave its artifacts on disk: the one code path for a cell.

``ppds fit``, :func:`fit_generator` and every cell of ``ppds run`` go through
:func:`fit_and_save`, so a model fitted by hand and one fitted by the matrix
are the same artifact: ``model/``, ``ledger.json``, ``samples.npz``,
``samples.png`` and ``fit.json``. ``fit.json`` is written last and marks the
fit complete; a folder without it (a crash mid-fit) is refitted, resuming from
``checkpoint/`` when the context names it (``ctx.checkpoint_dir``: the runner's
``<cell>/checkpoint``, ``ppds fit``'s ``--out DIR/checkpoint``) and the generator
left a checkpoint of the same plan there. Once ``fit.json`` is written the
checkpoint folder is deleted: the saved model is the fit's one copy.

Under DDP every rank runs the fit (Lightning re-executes the command once per
extra rank) but only global rank 0 writes; the others return None.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .._version import __version__
from ..atomic import atomic_write_text
from ..budget import PrivacyBudget, encode_float
from ..errors import ConfigError
from ..imageset import ImageSet
from ..interfaces import FitContext, Generator, PluginConfig
from ..privacy.accounting import check_ledger_accountant
from ..privacy.checkpoint import remove_checkpoints
from ..privacy.ledger import Ledger
from ..privacy.verify import verify_ledger
from ._data import dataset_splits
from .config import MAX_SEED

__all__ = ["FitOutcome", "fit_and_save", "load_fitted", "fit_generator", "FIT_MARKER", "is_rank_zero",
           "real_data_grid"]

log = logging.getLogger("ppds.matrix")

FIT_MARKER = "fit.json"


@dataclass
class FitOutcome:
    """A fitted generator with its ledger and the samples drawn from it."""

    generator: Generator
    ledger: Ledger
    samples: ImageSet
    seconds: float
    directory: Path
    loaded: bool = False


def is_rank_zero() -> bool:
    """Whether this process is global rank 0 (or not distributed at all).

    The process group when one is up, else the launcher's variables
    (torchrun's RANK; Lightning's LOCAL_RANK / NODE_RANK for re-executed ranks).
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return all(int(os.environ.get(var, "0") or 0) == 0 for var in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def fit_and_save(
    gen_cls: type[Generator],
    gen_config: PluginConfig | dict[str, Any] | None,
    private: ImageSet,
    budget: PrivacyBudget,
    ctx: FitContext,
    out_dir: Path,
    n_samples: int,
    sample_seed: int,
) -> FitOutcome | None:
    """Train from scratch, save model + ledger, draw and save samples, mark done.

    Returns None on a distributed rank other than 0, which trains but writes nothing.
    """
    out_dir = Path(out_dir)
    writer = is_rank_zero()
    if writer:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / FIT_MARKER).unlink(missing_ok=True)
    if ctx.workdir is None:
        ctx.workdir = out_dir / "work"
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    generator = gen_cls(gen_config)
    torch.manual_seed(ctx.seed)  # generators seed themselves; this covers any that forget
    t0 = time.perf_counter()
    ledger = generator.fit(private, budget, ctx)
    if not writer:
        return None
    if ledger is None:
        ledger = generator.ledger
    generator.ledger = ledger
    model_dir = out_dir / "model"
    if model_dir.exists():
        shutil.rmtree(model_dir)
    model_dir.mkdir()
    generator.save(model_dir)
    if isinstance(ledger, Ledger):
        ledger.write(out_dir / "ledger.json")  # written before the check: an overspend stays visible
    # the core owns ε: recomputed from the spends, a claim below it fails the fit
    ledger = verify_ledger(ledger, budget, gen_cls.name)
    generator.ledger = ledger
    ledger.write(out_dir / "ledger.json")
    fit_seconds = time.perf_counter() - t0
    samples = generator.sample(n_samples, seed=sample_seed)
    samples.save_npz(out_dir / "samples.npz")
    # measure what was released: the saved 8-bit images, so a re-run that loads
    # them sees exactly the pixels the first run measured
    samples = ImageSet.load_npz(out_dir / "samples.npz", name=f"{gen_cls.name}/samples")
    try:
        from ..report.plots import sample_grid

        sample_grid(samples, out_dir / "samples.png", title=f"{gen_cls.name} {budget.label()}")
    except Exception:  # a picture must never cost a trained model
        log.exception("could not draw the sample grid of %s", out_dir)
    seconds = time.perf_counter() - t0
    marker = {
        "generator": gen_cls.name,
        "epsilon": encode_float(budget.epsilon),
        "epsilon_spent": encode_float(ledger.epsilon_spent),  # verified: finite or ∞
        "delta": budget.delta,
        "seed": ctx.seed,
        "samples": n_samples,
        "fit_seconds": fit_seconds,
        "seconds": seconds,
        "ppds_version": __version__,
        "train_info": _json_safe(getattr(generator, "train_info", None) or {}),
    }
    atomic_write_text(out_dir / FIT_MARKER, json.dumps(marker, indent=2, allow_nan=False))  # never a link
    remove_checkpoints(ctx.checkpoint_dir)  # finished: no second copy of the model in the cell
    return FitOutcome(generator, ledger, samples, seconds, out_dir)


def load_fitted(gen_cls: type[Generator], out_dir: Path) -> FitOutcome | None:
    """What :func:`fit_and_save` left in ``out_dir``, or None if it never finished."""
    out_dir = Path(out_dir)
    marker = out_dir / FIT_MARKER
    if not marker.exists():
        return None
    info = json.loads(marker.read_text())
    generator = gen_cls.load(out_dir / "model")
    ledger = Ledger.read(out_dir / "ledger.json")
    # a ledger on disk is re-verified too: a run folder may come from elsewhere
    budget = PrivacyBudget(epsilon=ledger.target_epsilon, delta=ledger.delta)
    ledger = verify_ledger(ledger, budget, gen_cls.name)
    generator.ledger = ledger
    samples = ImageSet.load_npz(out_dir / "samples.npz", name=f"{gen_cls.name}/samples")
    return FitOutcome(generator, ledger, samples, float(info.get("seconds", 0.0)), out_dir, loaded=True)


def fit_generator(
    generator: str,
    dataset: str,
    epsilon: float | str,
    out: str | Path,
    *,
    delta: float = 1e-5,
    seed: int = 0,
    config: dict[str, Any] | None = None,
    public: str | None = None,
    dataset_config: dict[str, Any] | None = None,
    trainer: dict[str, Any] | None = None,
    samples: int = 2000,
    accountant: str = "prv",
    smoke: bool = False,
    progress: Callable[[int, int, dict[str, Any]], None] | None = None,
    reproducible_noise: bool = False,
) -> FitOutcome | None:
    """Fit ``generator`` on ``dataset``'s private split at (ε, δ) and save it under ``out``.

    The Python face of ``ppds fit``; the matrix runner calls :func:`fit_and_save`
    with the same arguments for each cell. None on a DDP rank other than 0.
    """
    from pydantic import ValidationError

    from ..registry import get_registry

    try:
        budget = PrivacyBudget(epsilon=epsilon, delta=delta)
    except ValidationError as err:
        raise ConfigError(err.errors()[0]["msg"].removeprefix("Value error, ")) from None
    check_ledger_accountant(accountant, where="accountant")
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file; pass a folder for model/, ledger.json and samples")
    from ..privacy._opacus_lightning import check_trainer_options

    check_trainer_options(dict(trainer or {}))
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ConfigError(f"samples: draw at least 1 synthetic image, got {samples!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"seed: use a whole number from 0 to {MAX_SEED}, got {seed!r}")
    gen_cls = get_registry().get(generator, "generator")
    gen_config = gen_cls.validate_config(config, where=f"{generator}.config")
    if smoke:
        gen_config = gen_cls.smoke_config(gen_config)
    if public is None and gen_cls.uses_public_data:
        log.warning("%s uses public data but no public dataset was named (--public)", generator)
    splits = dataset_splits(dataset, dataset_config, public, smoke=smoke, check=True)
    ctx = FitContext(seed=seed, public=splits.public, trainer=dict(trainer or {}), accountant=accountant,
                     progress=progress, reproducible_noise=reproducible_noise,
                     # a killed `ppds fit` resumes from here when run again with the same plan
                     checkpoint_dir=out / "checkpoint")
    return fit_and_save(gen_cls, gen_config, splits.private, budget, ctx, out, samples, seed)


def _json_safe(value: Any) -> Any:
    """``value`` with ±∞/NaN encoded (:func:`encode_float`) and anything else JSON cannot hold as text."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return encode_float(value)
    return str(value)


def real_data_grid(dataset: str, label: str, cell_dir: Path, private: ImageSet) -> None:
    """``samples.png`` of the real-data row: 8 images per class of the private split, the
    grid the generators' grids are compared with (plots/samples_<dataset>_real-data_*.png).
    A picture, never the data: the split itself stays in memory. Best effort: a failure
    to draw costs the picture, not the cell (a full disk still stops the run)."""
    path = cell_dir / "samples.png"
    if path.exists():
        return
    try:
        from ..report.plots import sample_grid

        sample_grid(private, path, title=f"{dataset} · real data (private split)")
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise  # the run's storage is full or read-only: the runner stops in one line
        log.warning("no real-data grid for %s: %s", label, err)
    except Exception as err:  # a picture must not fail the reference row
        log.warning("no real-data grid for %s: %s", label, err)
