"""Real-data references computed once per (data fingerprint, extractor config).

Every cell of a matrix compares its samples with the *same* real data in the
*same* feature space, so the real side (a trained feature classifier, real
features, their mean and covariance) is computed once, kept in memory for
the process and on disk under the run's ``cache_dir`` for the next process
(a resumed run, another shard on the same file system).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ppds_core.atomic import atomic_open

__all__ = ["reference_key", "cached_reference", "clear_memo"]

_MEMO: dict[str, dict[str, Any]] = {}


def reference_key(**parts: Any) -> str:
    """A short stable hash of the JSON of ``parts`` (fingerprints and options)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def clear_memo() -> None:
    """Forget the in-process references (the disk cache stays)."""
    _MEMO.clear()


def cached_reference(
    cache_dir: Path | None, kind: str, key: str, compute: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """``compute()``'s dict (tensors, numbers, strings, state dicts), once per ``kind/key``.

    Looked up in memory, then at ``cache_dir/metrics/<kind>/<key>.pt``; computed
    and written (atomically) only when neither has it. A corrupt file is
    recomputed and overwritten rather than trusted.
    """
    memo_key = f"{kind}/{key}"
    if memo_key in _MEMO:
        return _MEMO[memo_key]
    path = Path(cache_dir) / "metrics" / kind / f"{key}.pt" if cache_dir is not None else None
    value: dict[str, Any] | None = None
    if path is not None and path.is_file():
        try:
            value = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - a broken cache entry is recomputed
            value = None
    if value is None:
        value = compute()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_open(path) as fh:  # no predictable temp name a link could be planted at
                torch.save(value, fh)
    _MEMO[memo_key] = value
    return value
