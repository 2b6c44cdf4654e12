"""Shared fixtures. Tests run on 2 CPUs without a GPU or network."""

from __future__ import annotations

import os

import pytest
import torch

# Tests use tiny tensors, where a second intra-op thread costs more than it
# saves, and subprocess tests (DDP, CLI) run beside the main process: one
# thread each keeps a 2-core CI machine from oversubscribing.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _fresh_registry(monkeypatch, tmp_path_factory):
    """Each test sees the registry of the real environment, unless it builds its own; the
    `plugins list` cache of the session lives in its temporary folder, not in ~/.cache."""
    from ppds_core import reset_registry

    monkeypatch.delenv("PPDS_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("PPDS_ENABLE_PLUGINS", raising=False)
    monkeypatch.setenv("PPDS_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "ppds-cache"))
    reset_registry()
    yield
    reset_registry()


@pytest.fixture(scope="session")
def digits_splits():
    """sklearn's 8×8 digits in canonical form, split 0.5/0.25/0.25 with seed 0."""
    from sklearn.datasets import load_digits

    from ppds_core import ImageSet, SplitSizes, make_splits

    d = load_digits()
    pool = ImageSet(torch.tensor(d.images / 16, dtype=torch.float32), d.target,
                    [str(i) for i in range(10)], "digits")
    return make_splits(pool, None, SplitSizes(), seed=0)
