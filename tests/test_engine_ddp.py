"""DP-SGD under DDP: 2 CPU processes (gloo) launched the way a user's run is.

Lightning's ``ddp`` launcher re-executes the calling script once per extra
rank, so the training runs in a small script in a subprocess (re-running
pytest per rank would not work). Checked: identical replicas after
training, the same ledger as a single-process run of the same config, and
noise of std σ·C per *global* batch (noise added once, not once per rank).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap

import pytest
import torch

from ppds_core.privacy.ledger import Ledger

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import pytorch_lightning as pl
    import torch
    from torch import nn
    from ppds_core.budget import PrivacyBudget
    from ppds_core.interfaces import FitContext
    from ppds_core.privacy.engine import DPSGDModule, DPSGDPlan, fit_private

    class Model(DPSGDModule):
        def __init__(self):
            super().__init__()
            self.net = nn.ModuleDict({"clf": nn.Linear(16, 3), "null": nn.Linear(64, 64)})

        def private_module(self):
            return self.net

        def configure_private_optimizer(self):
            return torch.optim.SGD(self.net.parameters(), lr=1.0)

        def losses(self, x, y):
            losses = nn.functional.cross_entropy(self.net["clf"](x.flatten(1)), y, reduction="none")
            zero = self.net["null"](torch.zeros(x.shape[0], 64)).sum(1)  # gradient 0: noise only
            return losses + 0.0 * zero

        def training_step(self, batch, batch_idx):
            self.private_step_in_chunks(batch, self.losses)  # one slice unless the plan sets a size

    def run(out, trainer, eps=4.0, tag="", physical=None, mode="hooks"):
        g = torch.Generator().manual_seed(0)
        data = torch.utils.data.TensorDataset(torch.rand(96, 1, 4, 4, generator=g),
                                              torch.randint(0, 3, (96,), generator=g))
        pl.seed_everything(0, verbose=False)
        model = Model()
        start = {k: v.clone() for k, v in model.state_dict().items()}
        plan = DPSGDPlan(budget=PrivacyBudget(epsilon=eps), batch_size=24, steps=4,
                         accountant="rdp", max_physical_batch_size=physical, grad_sample_mode=mode)
        ledger = fit_private(model, data, plan, FitContext(seed=0, trainer=trainer, reproducible_noise=True))
        torch.save({"start": start, "end": model.state_dict(), "ledger": ledger.to_json(),
                    "world": model.dp.world_size, "steps": model.dp.steps_done},
                   os.path.join(out, f"{tag}rank{model.dp.rank}.pt"))

    if __name__ == "__main__":
        run(sys.argv[1], json.loads(sys.argv[2]))
        # a second fit in the same processes: the non-private reference run
        run(sys.argv[1], json.loads(sys.argv[2]), float("inf"), "inf-")
        # and the private run again with each rank's ~12 examples in slices of at most 5
        run(sys.argv[1], json.loads(sys.argv[2]), tag="sliced-", physical=5)
        # and with the engine's one-backward book-keeping mode, sliced the same way
        run(sys.argv[1], json.loads(sys.argv[2]), tag="bk-sliced-", physical=5, mode="bk")
    """
)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """One 2-process training; returns what each rank saved."""
    out = tmp_path_factory.mktemp("ddp")
    script = out / "train_ddp.py"
    script.write_text(SCRIPT)
    trainer = {"accelerator": "cpu", "devices": 2, "strategy": "ddp"}
    proc = subprocess.run([sys.executable, str(script), str(out), json.dumps(trainer)],
                          cwd=out, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [torch.load(out / f"rank{r}.pt") for r in (0, 1)]
    ranks_inf = [torch.load(out / f"inf-rank{r}.pt") for r in (0, 1)]
    sliced = [torch.load(out / f"sliced-rank{r}.pt") for r in (0, 1)]
    return ranks, script, ranks_inf, sliced


def test_replicas_are_identical_and_trained(ddp_run):
    (r0, r1), _, _, _ = ddp_run
    assert r0["world"] == r1["world"] == 2
    assert r0["steps"] == r1["steps"] == 4
    for name in r0["end"]:
        torch.testing.assert_close(r0["end"][name], r1["end"][name], rtol=0, atol=0)
        assert not torch.equal(r0["end"][name], r0["start"][name])


def test_same_ledger_as_a_single_process_run(ddp_run, tmp_path):
    (r0, r1), script, _, _ = ddp_run
    ddp = Ledger.from_json(r0["ledger"])
    assert Ledger.from_json(r1["ledger"]) == ddp
    # the same config on one process
    spec = importlib.util.spec_from_file_location("train_ddp_script", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.run(str(tmp_path), {"accelerator": "cpu"})
    single = Ledger.from_json(torch.load(tmp_path / "rank0.pt")["ledger"])
    assert single.dp_sgd() == ddp.dp_sgd()  # global q = 24/96, T = 4, same σ
    assert ddp.epsilon_spent == single.epsilon_spent <= 4.0


def test_noise_is_added_once_per_global_batch(ddp_run):
    """T = 4 steps, SGD lr = 1, E = 24: std(Δθ_null)·E = σ·C·√T, not ·√(2T) nor 0."""
    (r0, _), _, _, _ = ddp_run
    spend = Ledger.from_json(r0["ledger"]).dp_sgd()
    moved = (r0["end"]["net.null.weight"] - r0["start"]["net.null.weight"]).flatten() * 24
    expected = spend.noise_multiplier * spend.max_grad_norm * 2.0
    assert moved.std().item() == pytest.approx(expected, rel=0.06)  # 4096 draws


def test_infinite_epsilon_under_ddp_is_noise_free_and_in_sync(ddp_run):
    _, _, (r0, r1), _ = ddp_run
    ledger = Ledger.from_json(r0["ledger"])
    assert not ledger.is_private and ledger.dp_sgd() is None and ledger.epsilon_spent == float("inf")
    assert r0["steps"] == r1["steps"] == 4
    for name in r0["end"]:
        torch.testing.assert_close(r0["end"][name], r1["end"][name], rtol=0, atol=0)
    # zero gradient and no noise: the null layer does not move; the classifier does
    assert torch.equal(r0["end"]["net.null.weight"], r0["start"]["net.null.weight"])
    assert not torch.equal(r0["end"]["net.clf.weight"], r0["start"]["net.clf.weight"])


def test_physical_batches_under_ddp_match_the_unsliced_run(ddp_run):
    """Each rank slices its own share; skipped slices do not communicate, the last one
    all-reduces once: replicas stay identical and equal to the unsliced DDP run."""
    (r0, _), _, _, (s0, s1) = ddp_run
    assert s0["steps"] == s1["steps"] == 4
    assert Ledger.from_json(s0["ledger"]) == Ledger.from_json(r0["ledger"])
    for name in s0["end"]:
        torch.testing.assert_close(s0["end"][name], s1["end"][name], rtol=0, atol=0)
        torch.testing.assert_close(s0["end"][name], r0["end"][name], rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def ddp_bk(ddp_run):
    """The 'bk' run of the same 2-process script (sliced in at most 5 examples)."""
    out = ddp_run[1].parent
    return [torch.load(out / f"bk-sliced-rank{r}.pt") for r in (0, 1)]


def test_bk_under_ddp_adds_noise_once_and_matches_hooks(ddp_run, ddp_bk):
    """bk's replicas are identical and equal hooks' (the noise-only layer would differ if
    bk added noise on both ranks), with each rank's ~12 examples sliced."""
    _, _, _, (s0, _) = ddp_run
    b0, b1 = ddp_bk
    for name, value in b0["end"].items():
        assert torch.equal(value, b1["end"][name])
        torch.testing.assert_close(value, s0["end"][name], rtol=1e-5, atol=1e-6)
    assert b0["ledger"] == s0["ledger"]
