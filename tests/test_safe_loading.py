"""No code runs from data; no write follows a planted link out of the run folder.

Every weights, checkpoint and work-file loader gets a malicious pickle whose
``__reduce__`` would create a marker file: ppds must refuse it with one line
naming the file, and the marker must not exist afterwards. Every writer gets
symlinks planted at its target and temp names, pointing at files outside the
run folder: those files must be unchanged.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ppds_core import EvalContext, ImageSet, PrivacyBudget
from ppds_core.errors import PpdsError, UnsafeFileError
from ppds_core.matrix import _workers, append_rows, read_results
from ppds_core.privacy.ledger import Ledger


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: the marker file is the proof code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def evil(tmp_path):
    """``make(path)`` plants a malicious ``.pth`` at ``path``; ``marker`` must stay absent."""
    marker = tmp_path / "PAYLOAD-RAN"

    def make(path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"weight": torch.zeros(2), "x": _Payload(marker)}, path)
        return path

    make.marker = marker  # type: ignore[attr-defined]
    return make


def _refused(err: pytest.ExceptionInfo, path: Path) -> str:
    msg = str(err.value)
    assert isinstance(err.value, PpdsError)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_the_planted_file_really_runs_code_when_unpickled(evil, tmp_path):
    # the fixture is honest: an unrestricted load executes the payload
    path = evil(tmp_path / "w.pth")
    torch.load(path, weights_only=False)
    assert evil.marker.exists()


# --------------------------------------------------------------------------- FID Inception


@pytest.fixture
def ctx(digits_splits, tmp_path):
    return EvalContext(splits=digits_splits, synthetic=digits_splits.test,
                       generator=object(),  # type: ignore[arg-type]
                       budget=PrivacyBudget(epsilon=1.0), ledger=None, seed=0,
                       cache_dir=tmp_path / "cache", workdir=tmp_path / "work")


def test_fid_refuses_a_malicious_weights_option_without_running_it(evil, tmp_path, ctx):
    from ppds_plugins.metrics.fid import Fid

    path = evil(tmp_path / "downloads" / "weights-inception-2015-12-05-6726825d.pth")
    with pytest.raises(UnsafeFileError) as err:
        Fid(weights=str(path)).evaluate(ctx)
    assert "a reference to io.open" in _refused(err, path)  # what the pickle asked for
    assert not evil.marker.exists()


def test_fid_refuses_malicious_weights_named_by_the_environment(evil, tmp_path, ctx, monkeypatch):
    from ppds_plugins.metrics.fid import Fid

    path = evil(tmp_path / "shared" / "inception.pth")
    monkeypatch.setenv("PPDS_FID_WEIGHTS", str(path))
    with pytest.raises(UnsafeFileError) as err:
        Fid().evaluate(ctx)
    _refused(err, path)
    assert not evil.marker.exists()


def test_fid_refuses_malicious_weights_in_the_torch_hub_cache(evil, tmp_path, ctx, monkeypatch):
    from ppds_plugins.common.hub import hub_checkpoint_dir
    from ppds_plugins.metrics.fid import Fid

    monkeypatch.delenv("PPDS_FID_WEIGHTS", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # in case anything called set_dir
    assert hub_checkpoint_dir() == tmp_path / "torch-home" / "hub" / "checkpoints"
    path = evil(hub_checkpoint_dir() / "weights-inception-2015-12-05-6726825d.pth")
    with pytest.raises(UnsafeFileError) as err:
        Fid().evaluate(ctx)
    _refused(err, path)
    assert not evil.marker.exists()


def test_fid_builds_torch_fidelity_inception_from_a_plain_state_dict(tmp_path, monkeypatch):
    """The safe path still loads real weights: the network holds exactly the file's tensors."""
    import torch_fidelity.feature_extractor_inceptionv3 as tf_inception
    from ppds_plugins.metrics import _inception

    # a random-initialised Inception with torch-fidelity's exact keys and shapes
    monkeypatch.setattr(tf_inception, "load_state_dict_from_url", lambda *a, **k: {})
    monkeypatch.setattr(tf_inception.FeatureExtractorInceptionV3, "load_state_dict",
                        lambda self, state, *a, **k: None)
    state = tf_inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).state_dict()
    monkeypatch.undo()
    path = tmp_path / "inception.pth"
    torch.save(state, path)
    net = _inception.inception_extractor(path)
    try:
        got = net.state_dict()
        assert set(got) == set(state)
        for name in ("Conv2d_1a_3x3.conv.weight", "fc.bias"):
            torch.testing.assert_close(got[name], state[name])
    finally:
        _inception._EXTRACTORS.clear()


# --------------------------------------------------------------------------- LPIPS backbone


def test_lpips_refuses_a_malicious_backbone_checkpoint(evil, tmp_path, ctx):
    from ppds_plugins.metrics.pairwise import Lpips

    path = evil(tmp_path / "alexnet-owt-7be5be79.pth")
    with pytest.raises(UnsafeFileError) as err:
        Lpips(backbone_weights=str(path)).evaluate(ctx)
    _refused(err, path)
    assert not evil.marker.exists()


# --------------------------------------------------------------------------- Lightning checkpoint


def test_resuming_from_a_malicious_lightning_checkpoint_is_refused(evil, tmp_path):
    from ppds_core.interfaces import FitContext
    from ppds_core.privacy.engine import DPSGDModule, DPSGDPlan, fit_private

    class Tiny(DPSGDModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(4, 2)

        def private_module(self):
            return self.net

        def configure_private_optimizer(self):
            return torch.optim.SGD(self.net.parameters(), lr=0.1)

        def training_step(self, batch, batch_idx):
            x, y = batch
            self.private_step(torch.nn.functional.cross_entropy(self.net(x), y, reduction="none"))

    data = torch.utils.data.TensorDataset(torch.rand(24, 4), torch.randint(0, 2, (24,)))
    plan = DPSGDPlan(budget=PrivacyBudget(epsilon=3.0), batch_size=8, steps=2, accountant="rdp")
    path = evil(tmp_path / "last.ckpt")
    with pytest.raises(UnsafeFileError) as err:
        fit_private(Tiny(), data, plan, FitContext(seed=0), ckpt_path=path)
    assert "Lightning checkpoint" in _refused(err, path)
    assert not evil.marker.exists()


# --------------------------------------------------------------------------- reconstruction prior


def test_a_malicious_reconstruction_prior_cache_is_refused(evil, tmp_path):
    from ppds_plugins.attacks.reconstruction import ReconstructionConfig, _prior_config
    from ppds_plugins.attacks.reconstruction._prior import _key, fit_or_load_prior

    data = torch.rand(8, 1, 8, 8)
    cfg = _prior_config(ReconstructionConfig(prior_channels=[8, 16]))
    cache = tmp_path / "cache"
    path = evil(cache / "reconstruction-prior" / f"{_key(data, cfg, 1, 8, 0)}.pt")
    with pytest.raises(UnsafeFileError) as err:
        fit_or_load_prior(data, cfg, 1, 8, 0, cache)
    _refused(err, path)
    assert not evil.marker.exists()


def test_a_malicious_metric_cache_entry_is_recomputed_not_run(evil, tmp_path):
    from ppds_plugins.metrics import _reference_cache

    _reference_cache.clear_memo()
    path = evil(tmp_path / "metrics" / "fid-real" / "k1.pt")
    value = _reference_cache.cached_reference(tmp_path, "fid-real", "k1", lambda: {"n": torch.ones(2)})
    assert torch.equal(value["n"], torch.ones(2)) and not evil.marker.exists()
    assert torch.equal(torch.load(path, weights_only=True)["n"], torch.ones(2))  # overwritten
    _reference_cache.clear_memo()


# --------------------------------------------------------------------------- DDP worker files


def _images(n: int = 6) -> ImageSet:
    g = torch.Generator().manual_seed(0)
    return ImageSet(torch.rand(n, 1, 4, 4, generator=g), torch.arange(n) % 3, ["a", "b", "c"], "toy")


def _spec(work: Path, **paths) -> Path:
    spec = {"generator": "no-such-generator", "config": {}, "epsilon": 1.0, "delta": 1e-5, "seed": 0,
            "trainer": {}, "accountant": "rdp", "samples": 4, "sample_seed": 0,
            "out_dir": str(work.parent), "workdir": str(work), "public": None,
            "private": str(work / "private.safetensors"), **paths}
    work.mkdir(parents=True, exist_ok=True)
    (work / _workers.SPEC).write_text(json.dumps(spec))
    return work / _workers.SPEC


def test_worker_data_files_round_trip_exact_tensors_without_pickle(tmp_path):
    images = _images()
    path = Path(_workers._save_set(images, tmp_path / "private.safetensors"))
    assert b"\x80" not in path.read_bytes()[:2]  # no pickle header: safetensors' JSON length
    back = _workers._load_set(path)
    assert torch.equal(back.images, images.images) and torch.equal(back.labels, images.labels)
    assert back.class_names == images.class_names and back.name == "toy"


@pytest.mark.parametrize("name", ["private.safetensors", "private.pt"])
def test_a_malicious_worker_file_is_refused_in_one_line(evil, tmp_path, capsys, name):
    work = tmp_path / "cells" / "c1" / "work"
    path = evil(work / name)
    spec = _spec(work, private=str(path))
    assert _workers.main([str(spec)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and "never unpickled" in err
    assert not evil.marker.exists()


def test_the_runner_sees_a_refused_worker_file_as_one_line(evil, tmp_path, monkeypatch):
    from ppds_core.interfaces import FitContext

    planted: list[Path] = []

    def plant(images, path):  # what someone with write access to the run folder leaves there
        planted.append(evil(path))
        return str(path)

    monkeypatch.setattr(_workers, "_save_set", plant)
    gen = type("Gen", (), {"name": "dp-gan"})
    cell = tmp_path / "cells" / "c1"
    with pytest.raises(UnsafeFileError) as err:  # the real worker process, started as the runner does
        _workers.fit_in_workers(gen, None, _images(), PrivacyBudget(epsilon=1.0),
                                FitContext(seed=0, workdir=cell / "work"), cell, 4, 0)
    assert "never unpickled" in _refused(err, planted[0])
    assert not evil.marker.exists()


@pytest.mark.parametrize("field, value", [
    ("private", "../../../elsewhere/private.safetensors"),
    ("public", "/tmp/elsewhere/public.safetensors"),
    ("out_dir", "../../.."),
    ("workdir", ".."),
])
def test_fit_spec_paths_outside_the_cell_are_refused(tmp_path, capsys, field, value):
    work = tmp_path / "cells" / "c1" / "work"
    work.mkdir(parents=True)
    _workers._save_set(_images(), work / "private.safetensors")
    spec = _spec(work, **{field: value})
    assert _workers.main([str(spec)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and field in err and "fit-spec.json" in err


# --------------------------------------------------------------------------- planted symlinks


def _outside(tmp_path: Path, name: str) -> Path:
    victim = tmp_path / "outside" / name
    victim.parent.mkdir(parents=True, exist_ok=True)
    victim.write_text("precious\n")
    return victim


def _plant(run: Path, target: str, tmp_path: Path) -> list[Path]:
    """Links at the target and every temp name the old code would have used, each to its own victim."""
    victims = []
    for n, name in enumerate([target, f"{target}.tmp", f"{target}.tmp.npz", f"{target}.{os.getpid()}.tmp"]):
        victim = _outside(tmp_path, f"victim{n}")
        (run / name).symlink_to(victim)
        victims.append(victim)
    return victims


_WRITERS = {
    "ledger.json": lambda p: Ledger(target_epsilon=1.0, delta=1e-5).write(p),
    "samples.npz": lambda p: _images().save_npz(p),
    "scores.npz": lambda p: __import__("ppds_core.evaluation.membership", fromlist=["x"]).write_scores(
        p, np.zeros(4), np.array([1, 0, 1, 0], bool)),
    "fit.json": lambda p: __import__("ppds_core.atomic", fromlist=["x"]).atomic_write_text(p, "{}"),
}


@pytest.mark.parametrize("name", sorted(_WRITERS))
def test_a_link_planted_at_a_written_name_leaves_the_outside_file_unchanged(tmp_path, name):
    run = tmp_path / "run"
    run.mkdir()
    victims = _plant(run, name, tmp_path)
    _WRITERS[name](run / name)
    assert all(v.read_text() == "precious\n" for v in victims)
    assert not (run / name).is_symlink() and (run / name).stat().st_size > 0
    assert not [p for p in run.iterdir() if p.name.endswith(".partial")]  # no temp file left


def _smoke_row() -> dict:
    return {"cell": "g-1-0", "dataset": "d", "generator": "g", "epsilon": 1.0, "epsilon_spent": 0.9,
            "delta": 1e-5, "seed": 0, "kind": "metric", "name": "acc", "value": 0.5,
            "higher_is_better": True, "status": "ok", "error": None, "ppds_version": "0.1.0",
            "smoke": True, "matrix": "t", "measurement": "m1", "batch": "b"}


def test_planted_leaderboard_links_cannot_redirect_the_smoke_board(tmp_path):
    from ppds_core.report.leaderboard import write_leaderboards

    run = tmp_path / "run"
    run.mkdir()
    append_rows(run / "results.jsonl", [_smoke_row()])
    victims = _plant(run, "leaderboard-smoke.md", tmp_path) + _plant(run, "leaderboard-smoke.json", tmp_path)
    written = write_leaderboards(run)
    assert run / "leaderboard-smoke.md" in written
    assert all(v.read_text() == "precious\n" for v in victims)
    assert "acc" in (run / "leaderboard-smoke.md").read_text()


def test_a_results_file_linked_outside_is_refused_not_appended_to_or_read(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    victim = _outside(tmp_path, "results.jsonl")
    (run / "results.jsonl").symlink_to(victim)
    with pytest.raises(UnsafeFileError) as err:
        append_rows(run / "results.jsonl", [_smoke_row()])
    _refused(err, run / "results.jsonl")
    assert victim.read_text() == "precious\n"
    with pytest.raises(UnsafeFileError):  # nor are rows read from wherever it points
        read_results(run)


def test_a_run_log_linked_outside_is_refused(tmp_path):
    from ppds_core.atomic import NoFollowFileHandler

    victim = _outside(tmp_path, "run.log")
    (tmp_path / "run.log").symlink_to(victim)
    with pytest.raises(UnsafeFileError):
        NoFollowFileHandler(tmp_path / "run.log", encoding="utf-8")
    assert victim.read_text() == "precious\n"


def test_a_results_row_cannot_point_the_roc_plot_at_a_file_outside_the_run(tmp_path, caplog):
    from ppds_core.evaluation.membership import write_scores
    from ppds_core.report.plots import roc_plots

    run = tmp_path / "run"
    run.mkdir()
    outside = write_scores(tmp_path / "outside.npz", np.arange(8.0), np.arange(8) % 2 == 0)
    row = {**_smoke_row(), "kind": "attack", "scores": "../outside.npz", "_run_dir": str(run),
           "epsilon": math.inf}
    assert roc_plots([row], tmp_path / "plots") == []
    assert "outside" in caplog.text and str(outside.resolve()) in caplog.text


# --------------------------------------------------------------------------- a whole run


@pytest.fixture
def fakes(monkeypatch, tmp_path):
    from matrix_fakes import install

    return install(monkeypatch, tmp_path)


@pytest.mark.parametrize("relative", [False, True], ids=["absolute-out", "relative-out"])
@pytest.mark.parametrize("link", ["cache", "run.log"])
def test_a_run_folder_with_a_planted_link_is_refused_before_anything_is_written(fakes, tmp_path, link,
                                                                                relative, monkeypatch):
    import copy

    from matrix_fakes import MATRIX

    from ppds_core.matrix import run_matrix

    monkeypatch.chdir(tmp_path)  # `--out out`, as typed, must be checked as well as an absolute path
    out = Path("out") if relative else tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "outside"
    victim.mkdir()
    (out / link).symlink_to(victim if link == "cache" else victim / "run.log")
    with pytest.raises(UnsafeFileError) as err:
        run_matrix(copy.deepcopy(MATRIX), out)
    assert "\n" not in str(err.value) and link in str(err.value)
    assert list(victim.iterdir()) == []


def test_a_plots_folder_linked_outside_is_refused(tmp_path):
    from ppds_core.report.leaderboard import write_leaderboards

    run = tmp_path / "run"
    run.mkdir()
    append_rows(run / "results.jsonl", [_smoke_row()])
    victim = tmp_path / "outside"
    victim.mkdir()
    (run / "plots-smoke").symlink_to(victim)
    with pytest.raises(UnsafeFileError) as err:
        write_leaderboards(run)
    assert "plots folder" in _refused(err, run / "plots-smoke")
    assert list(victim.iterdir()) == []


def test_a_run_folder_named_relative_to_the_working_directory_gets_its_plots_inside_it(tmp_path,
                                                                                     monkeypatch):
    from ppds_core.report.leaderboard import write_leaderboards

    monkeypatch.chdir(tmp_path)
    run = Path("runs") / "qs"  # as `ppds quickstart --out runs/qs` passes it
    (run / "cells" / "real-0").mkdir(parents=True)
    (run / "cells" / "real-0" / "samples.png").write_bytes(b"a grid")
    real = {**_smoke_row(), "cell": "real-0", "generator": "real-data", "reference_data": True,
            "measurement": "m2"}
    append_rows(run / "results.jsonl", [_smoke_row(), real])
    write_leaderboards(run)
    plots = tmp_path / "runs" / "qs" / "plots-smoke"
    assert (plots / "samples_d_real-data_seed0.png").read_bytes() == b"a grid"
    assert not (tmp_path / "runs" / "qs" / "runs").exists()
