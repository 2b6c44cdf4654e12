"""The runner's plumbing: one device per run handed to every context, one path from a dataset
name to splits, one table of measurement needs, run.log collecting the plugins' own loggers."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
from matrix_fakes import MATRIX, MODULE, install

import ppds_core.interfaces
from ppds_core import EvalContext, FitContext, load_dataset
from ppds_core.device import resolve_device
from ppds_core.matrix import load_matrix, run_matrix
from ppds_core.matrix._console import log_names
from ppds_core.matrix._data import dataset_splits, load_splits
from ppds_core.matrix._needs import KNOWN_NEEDS, unmet_need


@pytest.fixture
def fakes(monkeypatch, tmp_path):
    return install(monkeypatch, tmp_path)


def test_a_trainer_that_names_no_accelerator_computes_on_the_cpu_without_asking_torch(monkeypatch):
    import torch

    def no_probe() -> bool:
        raise AssertionError("torch.cuda.is_available() was called for a CPU trainer")

    monkeypatch.setattr(torch.cuda, "is_available", no_probe)
    assert resolve_device(None) == resolve_device({}) == "cpu"
    assert resolve_device({"accelerator": "cpu", "devices": 2}) == "cpu"


@pytest.mark.parametrize("accelerator", ["gpu", "cuda", "auto", "GPU"])
def test_a_trainer_that_asks_for_a_gpu_gets_one_only_when_torch_sees_it(monkeypatch, accelerator):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device({"accelerator": accelerator}) == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device({"accelerator": accelerator}) == "cpu"


def test_contexts_built_by_hand_resolve_their_device_from_their_own_trainer(tmp_path):
    assert FitContext().device == "cpu"
    assert FitContext(trainer={"accelerator": "cpu"}, device="cuda").device == "cuda"
    ev = EvalContext(splits=None, synthetic=None, generator=None, budget=None, ledger=None,  # type: ignore[arg-type]
                     seed=0, cache_dir=tmp_path, workdir=tmp_path)
    assert ev.device == "cpu" and ev.shadow_samples == 64


def test_the_runner_resolves_the_device_once_and_hands_it_to_every_context(fakes, tmp_path, monkeypatch):
    import ppds_core.matrix.runner as runner

    calls = []
    monkeypatch.setattr(runner, "resolve_device", lambda trainer: calls.append(trainer) or "cpu")

    def resolved_by_itself(trainer):  # inherited by the forked units: a context left to resolve fails
        raise AssertionError("a context resolved its own device")

    monkeypatch.setattr(ppds_core.interfaces, "resolve_device", resolved_by_itself)
    summary = run_matrix(copy.deepcopy(MATRIX), tmp_path / "out")
    assert summary.failed == [] and summary.fits == 3 and summary.shadow_fits == 3
    assert len(calls) == 1


def test_a_dataset_name_gives_the_same_splits_by_every_path(fakes):
    matrix = load_matrix(copy.deepcopy(MATRIX))
    by_matrix = load_splits(matrix.datasets[0])
    by_api = load_dataset("tiny-set", public="tiny-public")
    by_fit = dataset_splits("tiny-set", None, {"name": "tiny-public"}, check=True)
    assert by_matrix.public is not None
    assert by_matrix.fingerprint() == by_api.fingerprint() == by_fit.fingerprint()


def _cell(generator_cls=None, epsilon=1.0):
    generator = SimpleNamespace(cls=generator_cls) if generator_cls else None
    return SimpleNamespace(generator=generator, budget=SimpleNamespace(is_private=math.isfinite(epsilon)))


def test_each_unmet_need_is_skipped_with_the_reason_of_its_first_failing_check():
    gan = type("Gan", (), {"name": "gan", "trains_with_dp_sgd": True})
    kde = type("Kde", (), {"name": "kde", "trains_with_dp_sgd": False, "class_conditional": False})
    no_public = SimpleNamespace(public=None)
    one_class = SimpleNamespace(ledger=SimpleNamespace(dp_sgd=lambda: None), samples=SimpleNamespace(num_classes=1))
    cases = [
        ({"dp-sgd"}, _cell(), None, "the real-data reference has no generator"),
        ({"dp-sgd"}, _cell(kde), None, "'kde' does not train with the DP-SGD engine"),
        ({"dp-sgd"}, _cell(gan, math.inf), None, "the non-private (ε=∞) reference"),
        ({"dp-sgd"}, _cell(gan), one_class, "the generator's ledger lists no DP-SGD spend"),
        ({"labels"}, _cell(kde), None, "'kde' is unconditional"),
        ({"labels"}, _cell(gan), one_class, "the samples carry a single class"),
        ({"public"}, _cell(gan), None, "needs public data"),
        ({"labels", "teleport"}, _cell(gan), None, "needs 'teleport'"),
        ({"teleport"}, _cell(gan), None, f"cannot provide (known: {sorted(KNOWN_NEEDS)})"),
    ]
    for needs, cell, outcome, reason in cases:
        found = unmet_need(needs, cell, outcome, no_public)  # type: ignore[arg-type]
        assert found is not None and reason in found, (needs, found)
    assert unmet_need({"shadow-models", "labels"}, _cell(), None, no_public) is None  # type: ignore[arg-type]


def test_run_log_collects_the_core_and_each_plugin_package_named_in_the_matrix(fakes):
    matrix = load_matrix(copy.deepcopy(MATRIX))
    assert log_names(matrix.plugin_classes()) == ("ppds", "ppds_core", MODULE)
