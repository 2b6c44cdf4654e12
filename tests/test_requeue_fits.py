"""Requeue-safe fits (issue 17): killed fits resume from their checkpoint with the same ledger.

Each generator's tiny fit runs in a child process that writes checkpoints into
``FitContext.checkpoint_dir`` and then stalls; the test kills it with SIGKILL
once a checkpoint is on disk, fits again with the same plan in-process, and
compares with an uninterrupted fit: the same ledger (spends, steps, σ, q, ε)
and, with ``reproducible_noise``, bit-identical weights. One-shot releases
(DP-MERF's embedding, PrivImage's semantic query) must be reused, never redrawn.
Also: a checkpoint of another plan is not resumed, an unsafe checkpoint file is
refused in one line, SIGTERM/SIGUSR1 write a checkpoint and stop, and
``ppds fit --out`` checkpoints to ``DIR/checkpoint`` and removes it when done.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ppds_core import FitContext, ImageSet, PrivacyBudget
from ppds_core.errors import UnsafeFileError
from ppds_core.privacy.checkpoint import FitInterrupted

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")

HERE = Path(__file__).resolve().parent
BUDGET = PrivacyBudget(epsilon=5.0, delta=1e-4)
EVERY = 3

#: (generator, tiny config, checkpoint file the child waits for)
CASES = {
    "dp-gan": ({"epochs": 3, "batch_size": 30, "d_updates": 2, "g_width": 8, "d_width": 8,
                "latent_dim": 8, "accountant": "rdp"}, "dp_sgd.ckpt"),
    "dp-diffusion": ({"block_out_channels": [8, 8], "norm_num_groups": 4, "sample_steps": 3,
                      "steps": 8, "batch_size": 24, "noise_multiplicity": 2}, "dp_sgd.ckpt"),
    "privimage": ({"block_out_channels": [8, 8], "norm_num_groups": 4, "sample_steps": 3, "steps": 8,
                   "batch_size": 30, "noise_multiplicity": 2, "query_epochs": 1, "pretrain_epochs": 1,
                   "query_sigma": 5.0, "classes_per_private_class": 2}, "dp_sgd.ckpt"),
    "dp-merf": ({"features": 200, "steps": 20, "batch_size": 50, "hidden": 16, "g_width": 8,
                 "accountant": "rdp"}, "dp_merf_generator.pt"),
}


def _data() -> tuple[ImageSet, ImageSet]:
    from ppds_plugins.datasets._glyphs import CHARACTERS, render_glyphs
    from sklearn.datasets import load_digits

    d = load_digits()
    private = ImageSet(torch.tensor(d.images[:120] / 16.0, dtype=torch.float32).unsqueeze(1),
                       torch.tensor(d.target[:120]), [str(i) for i in range(10)], "digits-tiny")
    images, labels = render_glyphs(per_class=8, image_size=8, seed=0)
    return private, ImageSet(images, labels, list(CHARACTERS), "glyphs-tiny")


def _ctx(public: ImageSet | None, ckdir: Path | None, seed: int = 0, **kw) -> FitContext:
    return FitContext(seed=seed, public=public, accountant="rdp", reproducible_noise=True,
                      checkpoint_dir=ckdir, checkpoint_every=EVERY, **kw)


def _fit(name: str, ckdir: Path | None, *, seed: int = 0, budget: PrivacyBudget = BUDGET,
         progress=None):
    from ppds_core import get_plugin

    config, _ = CASES[name]
    private, public = _data()
    gen = get_plugin(name, "generator")(config)
    ledger = gen.fit(private, budget, _ctx(public if gen.uses_public_data else None, ckdir, seed,
                                           progress=progress))
    return gen, ledger


def _weights(gen) -> dict[str, torch.Tensor]:
    net = getattr(gen, "net", None) or gen.unet
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _child_main(name: str, ckdir: str) -> None:  # pragma: no cover - runs in the child
    """Fit with checkpoints; once the awaited checkpoint exists, stall until killed."""
    target = Path(ckdir) / CASES[name][1]

    def stall(step, total, info):
        if target.exists():
            print(f"stalling at step {step}", flush=True)
            time.sleep(600)

    _fit(name, Path(ckdir), progress=stall)
    print("finished without stalling", flush=True)


def _kill_after_checkpoint(name: str, ckdir: Path) -> None:
    code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import test_requeue_fits as t; " \
           f"t._child_main({name!r}, {str(ckdir)!r})"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=env, text=True)
    target = ckdir / CASES[name][1]
    deadline = time.monotonic() + 120
    try:
        while not target.exists():
            assert proc.poll() is None, f"the child ended before its checkpoint: {proc.stdout.read()}"
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.05)
        time.sleep(0.3)  # let it run on a little past the checkpoint: those steps are lost
    finally:
        proc.kill()  # SIGKILL: no handler, no last words
        out, _ = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, out
    assert "finished without stalling" not in out


@pytest.mark.parametrize("name", list(CASES))
def test_a_killed_fit_resumes_from_its_checkpoint_with_the_same_ledger(name, tmp_path, monkeypatch):
    ckdir = tmp_path / "checkpoint"
    _kill_after_checkpoint(name, ckdir)
    saved = sorted(p.name for p in ckdir.iterdir())
    assert not [p for p in saved if p.endswith(".partial")], saved  # only whole files
    # what a kill in the middle of a write leaves: removed, never read
    (ckdir / f".{CASES[name][1]}.x1y2.partial").write_bytes(b"half a checkpoint")

    # the one-shot releases must be read back, never drawn again
    draws = []
    if name == "dp-merf":
        from ppds_core.privacy.release import GaussianRelease

        real = GaussianRelease.privatize
        monkeypatch.setattr(GaussianRelease, "privatize", lambda self, v: draws.append(1) or real(self, v))
        released = torch.load(ckdir / "dp_merf_release.pt", weights_only=True)["embedding"]
    if name == "privimage":
        import ppds_plugins.generators.privimage._plugin as plugin

        real_hist = plugin.noisy_histogram
        monkeypatch.setattr(plugin, "noisy_histogram", lambda *a: draws.append(1) or real_hist(*a))
        released = torch.load(ckdir / "privimage_query.pt", weights_only=True)["noisy"]
    resumed, ledger = _fit(name, ckdir)
    monkeypatch.undo()
    assert not list(ckdir.glob(".*.partial"))
    start = resumed.train_info.get("resumed_from_step")
    assert start is not None and 0 < start and start % EVERY == 0, resumed.train_info
    assert draws == []

    whole, full = _fit(name, None)
    assert ledger == full  # spends (σ, q, steps, C), ε, notes: the uninterrupted fit's
    assert ledger.epsilon_spent == full.epsilon_spent <= BUDGET.epsilon
    if name in ("dp-merf", "privimage"):
        assert [s.mechanism for s in ledger.spends].count("gaussian") == 1
    if name == "dp-merf":  # the same released embedding the killed fit drew
        assert whole.train_info["embedding_norm"] == pytest.approx(float(released.norm()), rel=1e-6)
    if name == "privimage":
        assert resumed.train_info["query_reused"] is True
        assert resumed.train_info["selection"] == whole.train_info["selection"]
    # reproducible noise: the resumed fit is the uninterrupted one, bit for bit
    a, b = _weights(resumed), _weights(whole)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _stop_after_checkpoint(ckdir: Path, file: str):
    class Stop(Exception):
        pass

    def progress(step, total, info):
        if (ckdir / file).exists():
            raise Stop

    return Stop, progress


def test_a_checkpoint_of_another_plan_is_not_resumed(tmp_path, caplog):
    ckdir = tmp_path / "checkpoint"
    stop, progress = _stop_after_checkpoint(ckdir, "dp_sgd.ckpt")
    with pytest.raises(stop):
        _fit("dp-gan", ckdir, progress=progress)
    assert (ckdir / "dp_sgd.ckpt").exists()
    with caplog.at_level(logging.WARNING, logger="ppds.privacy"):
        other_seed, ledger = _fit("dp-gan", ckdir, seed=1)
    assert "resumed_from_step" not in other_seed.train_info
    assert "different plan" in caplog.text
    assert other_seed.train_info["discriminator_steps"] == ledger.dp_sgd().steps == 12
    # the fresh fit replaced it; a later fit of the first plan does not take it either
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ppds.privacy"):
        other_eps, _ = _fit("dp-gan", ckdir, budget=PrivacyBudget(epsilon=3.0, delta=1e-4))
    assert "resumed_from_step" not in other_eps.train_info and "different plan" in caplog.text


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


@pytest.mark.parametrize("file", ["dp_sgd.ckpt", "dp_merf_release.pt"])
def test_an_unsafe_checkpoint_is_refused_in_one_line_never_run(file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckdir = tmp_path / "checkpoint"
    ckdir.mkdir()
    path = ckdir / file
    with open(path, "wb") as fh:
        pickle.dump({"callbacks": {"ppds_dp_sgd": _Evil()}, "plan_key": _Evil()}, fh)
    name = "dp-gan" if file.endswith(".ckpt") else "dp-merf"
    with pytest.raises(UnsafeFileError) as err:
        _fit(name, ckdir)
    message = str(err.value)
    assert "\n" not in message and "refusing" in message and str(path) in message
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(("name", "sig"), [("dp-gan", signal.SIGTERM), ("dp-merf", signal.SIGUSR1)])
def test_a_preemption_signal_writes_a_checkpoint_and_stops_then_the_fit_resumes(name, sig, tmp_path):
    ckdir = tmp_path / "checkpoint"
    before = signal.getsignal(sig)
    sent = []

    def progress(step, total, info):
        if not sent and step >= 1:
            sent.append(step)
            os.kill(os.getpid(), sig)  # what the scheduler does

    with pytest.raises(FitInterrupted, match=f"{sig.name}.*run it again") as err:
        _fit(name, ckdir, progress=progress)
    assert signal.getsignal(sig) == before  # the fit's handler is gone again
    stopped = err.value.steps_done
    assert stopped >= 1 and err.value.exit_code == 128 + sig  # `ppds fit`: one line, exit 143 / 138
    assert f"checkpoint written to {ckdir}" in str(err.value)  # not Lightning's own SIGTERM stop
    resumed, ledger = _fit(name, ckdir)
    assert resumed.train_info["resumed_from_step"] == stopped
    _, full = _fit(name, None)
    assert ledger == full


def test_ppds_fit_checkpoints_into_out_and_removes_the_folder_when_done(tmp_path):
    from ppds_core.matrix.fit import FIT_MARKER, fit_generator

    out = tmp_path / "fit"

    class Stop(Exception):
        pass

    def progress(step, total, info):
        raise Stop

    kw = dict(smoke=True, samples=10, accountant="rdp", reproducible_noise=True)
    with pytest.raises(Stop):
        fit_generator("dp-merf", "digits", 5.0, out, progress=progress, **kw)
    assert (out / "checkpoint" / "dp_merf_release.pt").exists()  # the release, saved once drawn
    done = fit_generator("dp-merf", "digits", 5.0, out, **kw)
    assert done is not None and done.generator.train_info["release_reused"] is True
    assert (out / FIT_MARKER).exists() and not (out / "checkpoint").exists()


class _Noisy:
    """A private classifier whose loss draws from the global RNG (like GAN latents)."""

    @staticmethod
    def build():
        from torch import nn

        from ppds_core.privacy.engine import DPSGDModule

        class Module(DPSGDModule):
            def __init__(self):
                super().__init__()
                torch.manual_seed(0)
                self.net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))

            def private_module(self):
                return self.net

            def configure_private_optimizer(self):
                return torch.optim.Adam(self.net.parameters(), lr=0.05)

            def training_step(self, batch, batch_idx):
                x, y = batch
                x = x + 0.1 * torch.randn_like(x)  # global RNG: saved and restored
                self.private_step(torch.nn.functional.cross_entropy(self.net(x), y, reduction="none"))

        return Module()


@pytest.mark.parametrize("every", [4, 3], ids=["at-an-epoch-end", "mid-epoch"])
def test_the_engine_resumes_bit_for_bit_at_and_between_epoch_ends(every, tmp_path):
    from torch.utils.data import TensorDataset

    from ppds_core.privacy.engine import DPSGDPlan, fit_private

    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(48, 1, 4, 4, generator=g), torch.randint(0, 3, (48,), generator=g))
    plan = DPSGDPlan(budget=PrivacyBudget(epsilon=3.0), batch_size=12, steps=11, accountant="rdp")  # 4/epoch
    ctx = dict(seed=1, reproducible_noise=True, checkpoint_every=every)
    whole = _Noisy.build()
    full = fit_private(whole, data, plan, FitContext(**ctx))
    ckdir = tmp_path / "checkpoint"
    stop, progress = _stop_after_checkpoint(ckdir, "dp_sgd.ckpt")
    with pytest.raises(stop):
        fit_private(_Noisy.build(), data, plan, FitContext(**ctx, checkpoint_dir=ckdir, progress=progress))
    resumed = _Noisy.build()
    assert fit_private(resumed, data, plan, FitContext(**ctx, checkpoint_dir=ckdir)) == full
    assert resumed.dp.resumed_from == every
    for a, b in zip(resumed.parameters(), whole.parameters(), strict=True):
        assert torch.equal(a, b)


def test_without_reproducible_noise_no_mechanism_state_is_saved_and_the_ledger_still_matches(tmp_path):
    """OS-entropy noise and sampling: their generator states never reach the file (a reader
    could predict the rest of the noise); the resumed fit draws fresh ones, same ledger."""
    from ppds_plugins.generators.dp_gan import DPGAN

    private, _ = _data()
    ckdir = tmp_path / "checkpoint"
    stop, progress = _stop_after_checkpoint(ckdir, "dp_sgd.ckpt")

    def ctx(**kw):
        return FitContext(seed=0, accountant="rdp", checkpoint_dir=ckdir, checkpoint_every=EVERY, **kw)

    with pytest.raises(stop):
        DPGAN(CASES["dp-gan"][0]).fit(private, BUDGET, ctx(progress=progress))
    state = torch.load(ckdir / "dp_sgd.ckpt", weights_only=True)["callbacks"]["ppds_dp_sgd"]
    assert state["steps_done"] == EVERY and "torch_rng" in state
    assert "sampler_rng" not in state and "noise_rng" not in state
    resumed = DPGAN(CASES["dp-gan"][0])
    ledger = resumed.fit(private, BUDGET, ctx())
    assert resumed.train_info["resumed_from_step"] == EVERY
    full = DPGAN(CASES["dp-gan"][0]).fit(private, BUDGET, FitContext(seed=0, accountant="rdp"))
    assert ledger == full and not ledger.reproducible_noise


DDP_SCRIPT = '''
import json, os, sys
import torch
from torch import nn
from ppds_core.budget import PrivacyBudget
from ppds_core.interfaces import FitContext
from ppds_core.privacy.engine import DPSGDModule, DPSGDPlan, fit_private

class Model(DPSGDModule):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Linear(16, 3)
    def private_module(self):
        return self.net
    def configure_private_optimizer(self):
        return torch.optim.Adam(self.net.parameters(), lr=0.05)
    def training_step(self, batch, batch_idx):
        x, y = batch
        self.private_step(nn.functional.cross_entropy(self.net(x.flatten(1)), y, reduction="none"))

def run(out, ckdir, tag):
    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.rand(96, 1, 4, 4, generator=g),
                                          torch.randint(0, 3, (96,), generator=g))
    model = Model()
    plan = DPSGDPlan(budget=PrivacyBudget(epsilon=4.0), batch_size=24, steps=5, accountant="rdp")
    ctx = FitContext(seed=0, trainer={"accelerator": "cpu", "devices": 2, "strategy": "ddp"},
                     reproducible_noise=True, checkpoint_dir=ckdir, checkpoint_every=2)
    ledger = fit_private(model, data, plan, ctx)
    torch.save({"end": model.state_dict(), "ledger": ledger.to_json(), "steps": model.dp.steps_done,
                "resumed_from": model.dp.resumed_from},
               os.path.join(out, f"{tag}rank{model.dp.rank}.pt"))

if __name__ == "__main__":
    run(sys.argv[1], sys.argv[2], "first-")   # checkpoints at steps 2 and 4 (none at T = 5)
    run(sys.argv[1], sys.argv[2], "second-")  # finds step 4's: one step left
'''


def test_under_ddp_rank_zero_checkpoints_and_both_ranks_resume(tmp_path):
    from ppds_core.privacy.ledger import Ledger

    script = tmp_path / "ddp_resume.py"
    script.write_text(DDP_SCRIPT)
    ckdir = tmp_path / "checkpoint"
    proc = subprocess.run([sys.executable, str(script), str(tmp_path), str(ckdir)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = [torch.load(tmp_path / f"first-rank{r}.pt", weights_only=True) for r in (0, 1)]
    second = [torch.load(tmp_path / f"second-rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["resumed_from"] for r in first] == [None, None]
    assert [r["resumed_from"] for r in second] == [4, 4] and [r["steps"] for r in second] == [5, 5]
    assert Ledger.from_json(second[0]["ledger"]) == Ledger.from_json(first[0]["ledger"])
    for name in second[0]["end"]:  # the replicas stay in step after the resume
        assert torch.equal(second[0]["end"][name], second[1]["end"][name])
    assert sorted(p.name for p in ckdir.iterdir()) == ["dp_sgd.ckpt"]


def test_dp_merf_does_not_reuse_a_release_of_another_plan(tmp_path, caplog):
    ckdir = tmp_path / "checkpoint"

    def progress(step, total, info):
        os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(FitInterrupted):
        _fit("dp-merf", ckdir, progress=progress)
    assert {p.name for p in ckdir.iterdir()} == {"dp_merf_release.pt", "dp_merf_generator.pt"}
    with caplog.at_level(logging.WARNING, logger="ppds.privacy"):
        other, ledger = _fit("dp-merf", ckdir, budget=PrivacyBudget(epsilon=2.0, delta=1e-4))
    assert other.train_info["release_reused"] is False and "resumed_from_step" not in other.train_info
    assert "different plan" in caplog.text
    _, fresh = _fit("dp-merf", None, budget=PrivacyBudget(epsilon=2.0, delta=1e-4))
    assert ledger == fresh


def test_dp_merf_never_continues_a_loop_fitted_to_a_release_it_no_longer_has(tmp_path):
    """Release file lost, loop file kept: μ̃ must be drawn again, and a generator partly fitted
    to the lost draw would then depend on two releases (two spends): the loop starts over."""
    ckdir = tmp_path / "checkpoint"

    def progress(step, total, info):
        os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(FitInterrupted):
        _fit("dp-merf", ckdir, progress=progress)
    (ckdir / "dp_merf_release.pt").unlink()
    again, ledger = _fit("dp-merf", ckdir)
    assert again.train_info["release_reused"] is False and "resumed_from_step" not in again.train_info
    assert [s.mechanism for s in ledger.spends] == ["gaussian"]
