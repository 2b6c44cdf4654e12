"""The on-disk layout of a fitted generator, written and read one way for every generator.

A saved generator is a directory: its weights (each generator's own file or
folder), ``model.json`` (plugin name, config, class names, image shape and
whatever the generator adds), ``ledger.json`` when it was fitted under a
budget, and a ``samples.png`` grid. :func:`write_artifacts` writes the shared
part; :func:`open_artifacts` checks the files, refuses another plugin's
directory in one line, and rebuilds the model's common state, so the
generator only loads its weights — through :func:`load_state`, i.e.
``ppds_core.safe_load`` (``weights_only``: a planted pickle is refused unrun).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import torch

from ppds_core import ConfigError, Generator, Ledger
from ppds_core.errors import DataNotFoundError
from ppds_core.safe_load import load_tensors

__all__ = ["META_FILE", "LEDGER_FILE", "GRID_FILE", "write_artifacts", "open_artifacts", "load_state"]

META_FILE = "model.json"
LEDGER_FILE = "ledger.json"
GRID_FILE = "samples.png"

G = TypeVar("G", bound=Generator)


def write_artifacts(directory: Path, model: Generator, meta: dict[str, Any],
                    write_weights: Callable[[Path], None]) -> Path:
    """Create ``directory``, let ``write_weights`` fill it, then write ``model.json`` and the ledger.

    ``meta`` follows ``plugin`` and ``config`` in ``model.json``, in its own order
    (class_names, image_shape, … train_info). Returns the directory as a Path.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_weights(directory)
    full = {"plugin": model.name, "config": model.config.model_dump(mode="json"), **meta}
    (directory / META_FILE).write_text(json.dumps(full, indent=2, default=_json_default))
    if model.ledger is not None:
        model.ledger.write(directory / LEDGER_FILE)
    return directory


def open_artifacts(cls: type[G], directory: Path, weights: Iterable[str]) -> tuple[G, dict[str, Any]]:
    """A ``cls`` rebuilt from ``directory``'s ``model.json`` and ledger, without its weights.

    Sets ``class_names``, ``image_shape``, ``train_info`` and ``ledger``; returns
    the model and the whole ``model.json`` for the generator's own fields.
    ``weights``: the files (relative paths) that must exist besides ``model.json``.
    """
    directory = Path(directory)
    for rel in (META_FILE, *weights):
        if not (directory / rel).is_file():
            raise DataNotFoundError(
                f"{cls.name}: {directory / rel} not found; load() needs a directory written by save()")
    meta = json.loads((directory / META_FILE).read_text())
    if meta.get("plugin") != cls.name:
        raise ConfigError(f"{cls.name}: {directory} holds a {meta.get('plugin')!r} model, not {cls.name!r}")
    model = cls(meta["config"])
    model.class_names = list(meta["class_names"])
    model.image_shape = tuple(meta["image_shape"])
    model.train_info = dict(meta.get("train_info", {}))
    if (directory / LEDGER_FILE).is_file():
        model.ledger = Ledger.read(directory / LEDGER_FILE)
    return model, meta


def load_state(path: Path, what: str) -> dict[str, torch.Tensor]:
    """A ``state_dict`` saved with ``torch.save``, read without unpickling code."""
    return load_tensors(path, what)


def _json_default(value: Any) -> Any:
    # json writes float ±inf/nan itself (as Infinity/NaN); only tensors need help
    if isinstance(value, torch.Tensor):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
