"""Shared fixtures. Tests run on 2 CPUs without a GPU or network."""

from __future__ import annotations

import os

import pytest
import torch

# Keep each test process from oversubscribing a small CI machine.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _fresh_registry(monkeypatch):
    """Each test sees the registry of the real environment, unless it builds its own."""
    from ppds_core import reset_registry

    monkeypatch.delenv("PPDS_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("PPDS_ENABLE_PLUGINS", raising=False)
    reset_registry()
    yield
    reset_registry()
