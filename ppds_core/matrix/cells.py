"""Cells of a matrix and the content hashes that make re-runs free.

A cell is (dataset, generator, ε, seed). Two hashes matter:

- ``Cell.key`` — from the *config alone* (no data loaded). It decides the
  shard a cell belongs to, so ``--shard i/n`` is a pure function of the file
  and every machine agrees on it without reading any data.
- ``cell_id(data_fingerprint)`` — ``key`` plus the fingerprint of the splits
  actually loaded. It names ``DIR/cells/<cell>/`` and the ``cell`` column of
  results, so a changed dataset (or a changed plugin version) never reuses a
  stale model.

Each measurement is keyed by ``measurement_id``: the cell id plus the
evaluator's name, kind, version and config. Changing one metric's options
therefore recomputes exactly that metric.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from ..budget import PrivacyBudget, encode_float, format_epsilon
from .config import REAL_DATA, ResolvedDataset, ResolvedMatrix, ResolvedPlugin

__all__ = ["Cell", "expand_cells", "content_hash", "measurement_id", "parse_shard", "in_shard",
           "REAL_DATA", "CACHE_SCHEMA"]

#: bump when the meaning of cached artifacts changes, to invalidate every cache
CACHE_SCHEMA = 2  # 2: DP noise from OS entropy by default (reproducible_noise in the key)


def _canon(obj: Any) -> Any:
    """JSON-safe form for hashing: ±∞ as ``"inf"`` / ``"-inf"`` (:func:`ppds_core.budget.encode_float`).

    A NaN never reaches a hash (plugin configs and ε refuse non-finite numbers).
    """
    if isinstance(obj, float):
        return encode_float(obj)
    if isinstance(obj, dict):
        return {str(k): _canon(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_canon(v) for v in obj]
    return obj


def content_hash(obj: Any) -> str:
    """16 hex digits of SHA-256 over canonical JSON (sorted keys, inf as 'inf')."""
    text = json.dumps(_canon(obj), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _plugin_spec(p: ResolvedPlugin | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {"name": p.name, "kind": p.kind, "version": p.version, "config": p.config_dict()}


@dataclass
class Cell:
    """One (dataset, generator, ε, seed) — or, with ``generator is None``, the
    real-data reference of a (dataset, seed)."""

    dataset_index: int
    dataset: ResolvedDataset
    generator: ResolvedPlugin | None
    epsilon: float
    delta: float
    seed: int
    samples: int
    smoke: bool
    accountant: str
    #: the mechanisms' randomness derived from the seed (matrix ``reproducible_noise``)
    reproducible_noise: bool = False

    @property
    def budget(self) -> PrivacyBudget:
        return PrivacyBudget(epsilon=self.epsilon, delta=self.delta)

    @property
    def is_reference_data(self) -> bool:
        return self.generator is None

    @property
    def generator_name(self) -> str:
        return self.generator.name if self.generator is not None else REAL_DATA

    @property
    def dataset_name(self) -> str:
        return self.dataset.plugin.name

    def spec(self) -> dict[str, Any]:
        """Everything in the config that determines this cell's artifacts."""
        return {
            "schema": CACHE_SCHEMA,
            "dataset": _plugin_spec(self.dataset.plugin),
            "public": _plugin_spec(self.dataset.public),
            "generator": _plugin_spec(self.generator) if self.generator else REAL_DATA,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "seed": self.seed,
            "samples": self.samples if self.generator else None,
            "accountant": self.accountant if self.generator else None,
            "smoke": self.smoke,
            "reproducible_noise": self.reproducible_noise if self.generator else None,
        }

    @property
    def variant(self) -> str:
        """Hash of the recipe without ε and seed: rows of one variant form one leaderboard row
        per ε, and two configs of the same generator never get averaged together."""
        spec = {k: v for k, v in self.spec().items() if k not in ("epsilon", "seed")}
        return content_hash(spec)[:8]

    @property
    def key(self) -> str:
        return content_hash(self.spec())

    def cell_id(self, data_fingerprint: str) -> str:
        return content_hash({"cell": self.spec(), "data": data_fingerprint})

    def label(self) -> str:
        if self.generator is None:
            return f"{self.dataset_name} / {REAL_DATA} / seed {self.seed}"
        return f"{self.dataset_name} / {self.generator_name} / ε={format_epsilon(self.epsilon, 'ascii')} / seed {self.seed}"


def measurement_id(cell_id: str, evaluator: ResolvedPlugin, smoke: bool) -> str:
    return content_hash({"cell": cell_id, "evaluator": _plugin_spec(evaluator), "smoke": smoke})


def expand_cells(matrix: ResolvedMatrix) -> list[Cell]:
    """dataset × generator × ε × seed, in file order; then one real-data reference
    per (dataset, seed) when the matrix asks for it and some evaluator runs there
    (metrics on the private split, membership attacks on it as the release)."""
    cfg = matrix.config
    cells: list[Cell] = []
    for di, d in enumerate(matrix.datasets):
        for g in matrix.generators:
            for eps in g.epsilons:
                for seed in cfg.seeds:
                    cells.append(Cell(di, d, g.plugin, eps, cfg.delta, seed, matrix.samples,
                                      matrix.smoke, cfg.accountant, cfg.reproducible_noise))
        if cfg.real_data and any(e.selects(REAL_DATA, math.inf) for e in matrix.evaluators):
            for seed in cfg.seeds:
                cells.append(Cell(di, d, None, math.inf, cfg.delta, seed, 0, matrix.smoke,
                                  cfg.accountant))
    return cells


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'I/N' (1-based) → (I, N); ConfigError for anything else."""
    from ..errors import ConfigError

    if text is None:
        return None
    match = re.fullmatch(r"([0-9]{1,6})/([0-9]{1,6})", str(text))
    if match is None:
        raise ConfigError(f"--shard {text!r}: expected I/N with 1 ≤ I ≤ N, e.g. --shard 2/8")
    i, n = int(match.group(1)), int(match.group(2))
    if n < 1 or not 1 <= i <= n:
        raise ConfigError(f"--shard {text!r}: expected I/N with 1 ≤ I ≤ N, e.g. --shard 2/8")
    return i, n


def in_shard(cell: Cell, shard: tuple[int, int] | None) -> bool:
    """Stable assignment: the cell's config hash modulo N (same on every machine)."""
    if shard is None:
        return True
    i, n = shard
    return int(cell.key, 16) % n == i - 1
