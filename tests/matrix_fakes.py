"""Fast fake plugins for the matrix and leaderboard tests, installed as a throw-away
distribution (``*.dist-info`` + module) so that both the in-process registry and a
``ppds`` subprocess discover them through the ordinary ``ppds`` entry points.

They count what they do (one line per fit / load / evaluation) into the file named
by ``PPDS_FAKE_COUNTS``, which is how tests prove that a re-run does no work.
"""

from __future__ import annotations

import importlib
import os
import sys
from importlib import metadata
from pathlib import Path

MODULE = "ppds_fake_matrix"

SOURCE = (
    '''
    import json
    import math
    import os
    import sys
    import time
    from pathlib import Path

    import numpy as np
    import torch

    from ppds_core import (Attack, Availability, DatasetConfig, DatasetProvider, DPSGDSpend, Generator,
                           ImageSet, Ledger, Measurement, Metric, PluginConfig, SkipMeasurement, hookimpl)
    from ppds_core.privacy import epsilon_of


    def count(event):
        path = os.environ.get("PPDS_FAKE_COUNTS")
        if path:
            with open(path, "a") as f:
                f.write(event + "\\n")


    def block(what):
        """Hang (until killed) while the file named by PPDS_FAKE_BLOCK exists."""
        path = os.environ.get("PPDS_FAKE_BLOCK")
        if path and os.path.exists(path):
            Path(path + ".started").write_text(what)
            deadline = time.time() + 60
            while os.path.exists(path) and time.time() < deadline:
                time.sleep(0.05)


    def tiny_images(n, seed, classes):
        g = torch.Generator().manual_seed(seed)
        labels = torch.arange(n) % len(classes)
        images = (torch.rand(n, 1, 6, 6, generator=g) * 0.5 + labels.view(-1, 1, 1, 1) * 0.15).clamp(0, 1)
        return ImageSet(images, labels, classes)


    class TinySet(DatasetProvider):
        """80 random 6×6 images in 4 classes."""
        name = "tiny-set"
        embedded = True

        def availability(self):
            return Availability(True)

        def load(self):
            return tiny_images(80, 0, ["a", "b", "c", "d"]), None


    class TinyPublic(DatasetProvider):
        name = "tiny-public"
        embedded = True

        def availability(self):
            return Availability(True)

        def load(self):
            return tiny_images(40, 1, ["p", "q"]), None


    class FolderConfig(DatasetConfig):
        root: str = "/nonexistent/folder-set"


    class FolderSet(DatasetProvider):
        name = "folder-set"
        Config = FolderConfig

        def availability(self):
            root = Path(self.config.root)
            if not root.is_dir():
                return Availability(False, f"no folder {root}; download it and pass config.root")
            return Availability(True)

        def load(self):
            return tiny_images(40, 2, ["x", "y"]), None


    class FakeGenConfig(PluginConfig):
        steps: int = 3
        noise: float = 0.1
        sleep_s: float = 0.0  # seconds each fit takes (tests of workers keep them busy)
        hold: bool = False  # each fit first waits while the file PPDS_FAKE_BLOCK exists
        fail: bool = False
        overspend: bool = False
        understate: bool = False  # claim half the ε its spends compose to


    class FakeGen(Generator):
        """Mean image plus noise; a ledger with one DP-SGD spend at finite ε."""
        name = "fake-gen"
        Config = FakeGenConfig
        trains_with_dp_sgd = True

        @classmethod
        def smoke_config(cls, config):
            return config.model_copy(update={"steps": 1})

        def fit(self, private, budget, ctx):
            count(f"fit {budget.epsilon} {ctx.seed} {self.config.steps}")
            if ctx.trainer:
                count("trainer " + json.dumps(ctx.trainer, sort_keys=True))
            if self.config.fail:
                raise RuntimeError("fake generator exploded")
            if self.config.hold:
                block(f"fit {budget.epsilon} {ctx.seed}")
            time.sleep(self.config.sleep_s)
            for s in range(self.config.steps):
                if ctx.progress:
                    ctx.progress(s + 1, self.config.steps, {"epsilon": min(budget.epsilon, 1e9)})
            self.mean = private.images.mean(0)
            self.class_names = private.class_names
            self.ledger = Ledger(target_epsilon=budget.epsilon, delta=budget.delta, accountant=ctx.accountant)
            if budget.is_private:
                # an honest ledger: ε is the accountant's of the spend (the core recomputes it);
                # "overspend" records far too little noise for the target
                sigma = 0.3 if self.config.overspend else 5.0
                self.ledger.spends.append(DPSGDSpend(noise_multiplier=sigma, sample_rate=0.1,
                                                     steps=self.config.steps, max_grad_norm=1.0))
                self.ledger.epsilon_spent = epsilon_of(self.ledger.spends, budget.delta, ctx.accountant)
                if self.config.understate:
                    self.ledger.epsilon_spent /= 2
                self.ledger.reproducible_noise = ctx.reproducible_noise  # its "noise" follows the run
            else:
                self.ledger.epsilon_spent = math.inf
            return self.ledger

        def sample(self, n, *, seed=0, labels=None):
            g = torch.Generator().manual_seed(seed)
            noise = torch.randn(n, *self.mean.shape, generator=g) * self.config.noise
            k = len(self.class_names)
            return ImageSet((self.mean + noise).clamp(0, 1), torch.arange(n) % k, self.class_names)

        def save(self, directory):
            torch.save({"mean": self.mean, "class_names": self.class_names, "config": self.config.model_dump()},
                       Path(directory) / "fake.pt")

        @classmethod
        def load(cls, directory):
            count("load")
            state = torch.load(Path(directory) / "fake.pt")
            gen = cls(state["config"])
            gen.mean, gen.class_names = state["mean"], state["class_names"]
            return gen


    class CkptConfig(FakeGenConfig):
        step_s: float = 0.2
        on_term: bool = False  # like the engine's preemption handler: SIGTERM → checkpoint, stop
        hold_at: int = -1  # before this step, wait while the file PPDS_FAKE_BLOCK exists


    class FakeCkptGen(FakeGen):
        """fake-gen whose fit takes step_s per step and checkpoints (step, history) into
        ctx.checkpoint_dir every ctx.checkpoint_every steps; a fit finding a checkpoint resumes."""
        name = "fake-ckpt-gen"
        Config = CkptConfig

        def fit(self, private, budget, ctx):
            ckpt = Path(ctx.checkpoint_dir) if ctx.checkpoint_dir is not None else None
            start, history = 0, []
            if ckpt is not None and (ckpt / "state.json").exists():
                state = json.loads((ckpt / "state.json").read_text())
                start, history = state["step"], state["history"]
            count(f"ckpt-start {start} pid {os.getpid()}")
            stop = []
            if self.config.on_term:
                import signal
                signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
            for s in range(start, self.config.steps):
                if s == self.config.hold_at:
                    block(f"ckpt step {s}")
                time.sleep(self.config.step_s)
                history.append(s)
                count(f"ckpt-step {s} pid {os.getpid()}")
                if ckpt is not None and ((s + 1) % ctx.checkpoint_every == 0 or stop):
                    ckpt.mkdir(parents=True, exist_ok=True)
                    (ckpt / "state.tmp").write_text(json.dumps({"step": s + 1, "history": history}))
                    os.replace(ckpt / "state.tmp", ckpt / "state.json")
                if stop:
                    count(f"ckpt-stopped {s + 1}")
                    raise RuntimeError("stopped by SIGTERM after a checkpoint")
            if history != list(range(self.config.steps)):
                raise RuntimeError(f"resumed into a wrong history {history}")
            return super().fit(private, budget, ctx)


    class GapConfig(PluginConfig):
        scale: float = 1.0


    class FakeGap(Metric):
        """|mean(synthetic) − mean(holdout)|, lower is better."""
        name = "fake-gap"
        Config = GapConfig
        higher_is_better = False

        def evaluate(self, ctx):
            count(f"eval fake-gap {ctx.seed}")
            gap = (ctx.synthetic.images.mean() - ctx.splits.holdout.images.mean()).abs().item()
            return [Measurement("fake-gap", gap * self.config.scale)]


    class FakeAcc(Metric):
        """Two numbers from one evaluator; higher is better."""
        name = "fake-acc"
        higher_is_better = True
        needs = frozenset({"labels"})

        def evaluate(self, ctx):
            count(f"eval fake-acc {ctx.seed}")
            eps = ctx.budget.epsilon
            base = 1.0 if math.isinf(eps) else eps / (1.0 + eps)
            return [Measurement("fake-acc", base - 0.01 * ctx.seed, extra={"ci_low": base - 0.1, "ci_high": base}),
                    Measurement("fake-acc-top2", min(1.0, base + 0.05))]


    class Boom(Metric):
        name = "boom"
        higher_is_better = True

        def evaluate(self, ctx):
            count("eval boom")
            raise RuntimeError("kaboom")


    class FakeRero(Metric):
        """Needs the DP-SGD parameters; skipped elsewhere."""
        name = "fake-rero"
        higher_is_better = False
        needs = frozenset({"dp-sgd"})

        def evaluate(self, ctx):
            count("eval fake-rero")
            return [Measurement("fake-rero", ctx.ledger.dp_sgd().noise_multiplier / 10)]


    class Picky(Metric):
        """Raises SkipMeasurement: the runner records its message."""
        name = "picky"

        def evaluate(self, ctx):
            count("eval picky")
            raise SkipMeasurement("weights not found at /nowhere/picky.pt")


    class Blocker(Metric):
        name = "fake-block"
        higher_is_better = True

        def evaluate(self, ctx):
            block(f"fake-block eps={ctx.budget.epsilon}")
            count("eval fake-block")
            return [Measurement("fake-block", 0.5)]


    class FakeMia(Attack):
        """Scores = closeness to one shadow model's mean; writes scores.npz."""
        name = "fake-mia"
        higher_is_better = True
        needs = frozenset({"shadow-models"})

        def shadow_plan(self, splits, seed):
            return [(splits.holdout.subset(list(range(8))), 123)]

        def evaluate(self, ctx):
            count("eval fake-mia")
            shadow = ctx.fit_fresh(ctx.splits.holdout.subset(list(range(8))), 123)
            members, others = ctx.splits.private, ctx.splits.holdout
            x = torch.cat([members.images, others.images])
            center = ctx.generator.mean if hasattr(ctx.generator, "mean") else shadow.mean
            scores = -(x - center).flatten(1).pow(2).sum(1).numpy()
            is_member = np.r_[np.ones(len(members), bool), np.zeros(len(others), bool)]
            np.savez(ctx.workdir / "scores.npz", scores=scores, is_member=is_member)
            from sklearn.metrics import roc_auc_score
            return [Measurement("fake-mia-auc", roc_auc_score(is_member, scores))]


    def _segfault():
        import ctypes
        ctypes.string_at(0)


    def _hang():
        pid_file = os.environ.get("PPDS_FAKE_PID")
        if pid_file:
            Path(pid_file).write_text(str(os.getpid()))
        time.sleep(3600)


    #: what a misbehaving plugin does instead of its work (tests/test_isolation.py)
    MISBEHAVIOURS = {
        "hang": _hang,
        "exit0": lambda: sys.exit(0),
        "exit5": lambda: sys.exit(5),
        "os-exit0": lambda: os._exit(0),
        "abort": os.abort,
        "interrupt": lambda: (_ for _ in ()).throw(KeyboardInterrupt()),
        "segfault": _segfault,
    }


    def _misbehaving_metric(how):
        def evaluate(self, ctx):
            count(f"eval fake-{how}")
            MISBEHAVIOURS[how]()
            return [Measurement(f"fake-{how}", 1.0)]

        return type(f"Fake_{how}", (Metric,), {"name": f"fake-{how}", "higher_is_better": True,
                                                "evaluate": evaluate})


    class BadGenConfig(FakeGenConfig):
        how: str = "segfault"


    class FakeBadGen(FakeGen):
        """fake-gen whose fit misbehaves as config.how says (a key of MISBEHAVIOURS)."""
        name = "fake-bad-gen"
        Config = BadGenConfig

        def fit(self, private, budget, ctx):
            count(f"fit-bad {self.config.how}")
            MISBEHAVIOURS[self.config.how]()
            return super().fit(private, budget, ctx)


    @hookimpl
    def register_plugins(register):
        for cls in (TinySet, TinyPublic, FolderSet, FakeGen, FakeGap, FakeAcc, Boom, FakeRero, Picky,
                    Blocker, FakeMia, FakeBadGen, FakeCkptGen):
            register(cls)
        for how in MISBEHAVIOURS:
            register(_misbehaving_metric(how))
    '''
)


def make_fake_distribution(root: Path) -> Path:
    """Write module + dist-info into ``root/site`` and return that folder (for sys.path / PYTHONPATH)."""
    from ppds_core.testing.distributions import make_plugin_distribution

    return make_plugin_distribution(root / "site", "ppds-fake-matrix", {MODULE: SOURCE},
                                    {"fake-matrix": MODULE}, version="0.1")


def first_party_entry_points() -> str:
    """Entry points of the ppds distribution itself, to switch off (speed; no clashes)."""
    names = [ep.name for ep in metadata.entry_points(group="ppds")
             if getattr(ep, "dist", None) is not None and ep.dist.metadata["Name"] == "ppds"]
    return ",".join(names) or "none"


def install(monkeypatch, tmp_path: Path) -> Path:
    """Put the fake distribution on sys.path for this test and reset the registry."""
    from ppds_core import reset_registry

    site = make_fake_distribution(tmp_path)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PPDS_DISABLE_PLUGINS", first_party_entry_points())
    monkeypatch.setenv("PPDS_FAKE_COUNTS", str(tmp_path / "counts.txt"))
    sys.modules.pop(MODULE, None)
    importlib.invalidate_caches()
    reset_registry()
    return site


def counts(tmp_path: Path) -> list[str]:
    p = tmp_path / "counts.txt"
    return p.read_text().splitlines() if p.exists() else []


def subprocess_env(site: Path, tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["PPDS_DISABLE_PLUGINS"] = first_party_entry_points()
    env["PPDS_FAKE_COUNTS"] = str(tmp_path / "counts.txt")
    return env


MATRIX = {
    "name": "fake",
    "seeds": [0],
    "delta": 1e-5,
    "samples": 40,
    "datasets": [{"name": "tiny-set", "public": "tiny-public"}],
    "generators": [{"name": "fake-gen", "epsilons": [1, 10, "inf"], "config": {"steps": 2}}],
    "metrics": [{"name": "fake-gap"}, {"name": "fake-acc"}, {"name": "fake-rero"}],
    "attacks": [{"name": "fake-mia"}],
}
