"""A real cell for the conformance kit: splits, a DP-SGD-trained generator, an EvalContext.

Why: a metric or attack checked against a context its author built by hand is
checked against the author's assumptions. The kit builds the context the
runner would build — private / holdout / test / public splits, synthetic
images from a generator trained with the core's DP-SGD engine, its verified
ledger, ``fit_fresh`` for shadow models — so ``check_plugin(MyAttack, tmp)``
really evaluates. The generator (:class:`KitGenerator`) is deliberately tiny:
one class-conditional mean image per class, learnt with DP-SGD on an
``nn.Embedding`` (a layer every grad-sample mode supports).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from ..budget import PrivacyBudget
from ..imageset import ImageSet, Splits
from ..interfaces import EvalContext, FitContext, Generator, PluginConfig
from ..privacy.engine import DPSGDModule, DPSGDPlan, fit_private
from ..privacy.ledger import Ledger
from ..privacy.verify import verify_ledger

__all__ = ["KitGenerator", "tiny_imageset", "tiny_splits", "make_eval_context"]


def tiny_imageset(n: int = 120, num_classes: int = 4, shape=(1, 8, 8), seed: int = 0) -> ImageSet:
    """Class-dependent blobs: learnable, tiny, no download."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % num_classes
    c, h, w = shape
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([((xx * (k + 1) + yy * (num_classes - k)) % 1.0) for k in range(num_classes)])
    imgs = base[labels].unsqueeze(1).expand(n, c, h, w) + 0.1 * torch.randn(n, c, h, w, generator=g)
    return ImageSet(imgs.clamp(0, 1), labels, [f"c{k}" for k in range(num_classes)], "tiny")


def tiny_splits(seed: int = 0) -> Splits:
    """Disjoint private / holdout / test splits of one tiny set, and a public set of another."""
    pool = tiny_imageset(n=240, seed=seed)
    idx = torch.arange(len(pool))
    private = pool.subset(idx[:120], "tiny/private")
    holdout = pool.subset(idx[120:180], "tiny/holdout")
    test = pool.subset(idx[180:], "tiny/test")
    public = tiny_imageset(n=60, seed=seed + 1000)
    public.name = "tiny-public"
    return Splits(private=private, holdout=holdout, test=test, public=public)


class _MeansModule(DPSGDModule):
    def __init__(self, num_classes: int, shape: tuple[int, ...], lr: float) -> None:
        super().__init__()
        self.shape, self.lr = tuple(shape), lr
        self.means = nn.Embedding(num_classes, math.prod(shape))
        nn.init.constant_(self.means.weight, 0.5)

    def private_module(self) -> nn.Module:
        return self.means

    def configure_private_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.means.parameters(), lr=self.lr)

    def training_step(self, batch, batch_idx):
        x, y = batch
        losses = ((self.means(y) - x.flatten(1)) ** 2).mean(1)
        self.private_step(losses)


class KitConfig(PluginConfig):
    steps: int = 20
    batch_size: int = 30
    lr: float = 5.0


class KitGenerator(Generator):
    """Class means learnt with DP-SGD, sampled with a little pixel noise."""

    name: ClassVar[str] = "ppds-kit-generator"
    Config: ClassVar[type[PluginConfig]] = KitConfig
    trains_with_dp_sgd: ClassVar[bool] = True

    def fit(self, private: ImageSet, budget: PrivacyBudget, ctx: FitContext) -> Ledger:
        cfg = self.config
        torch.manual_seed(ctx.seed)
        module = _MeansModule(private.num_classes, tuple(private.shape), cfg.lr)
        plan = DPSGDPlan(budget=budget, batch_size=min(cfg.batch_size, len(private)), steps=cfg.steps)
        self.ledger = fit_private(module, private, plan, ctx)
        self.means = module.means.weight.detach().clone()
        self.shape, self.class_names = tuple(private.shape), list(private.class_names)
        return self.ledger

    def sample(self, n: int, *, seed: int = 0, labels=None) -> ImageSet:
        g = torch.Generator().manual_seed(seed)
        k = len(self.class_names)
        labels = torch.arange(n) % k if labels is None else torch.as_tensor(labels).long()
        images = self.means[labels] + 0.05 * torch.randn(len(labels), self.means.shape[1], generator=g)
        return ImageSet(images.reshape(len(labels), *self.shape).clamp(0, 1), labels,
                        list(self.class_names), f"{self.name}/samples")

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        torch.save({"means": self.means}, directory / "means.pt")
        (directory / "kit.json").write_text(json.dumps({"shape": list(self.shape),
                                                         "class_names": self.class_names,
                                                         "config": self.config.model_dump()}))
        (directory / "ledger.json").write_text(self.ledger.to_json())

    @classmethod
    def load(cls, directory: Path) -> KitGenerator:
        directory = Path(directory)
        info = json.loads((directory / "kit.json").read_text())
        gen = cls(info["config"])
        gen.means = torch.load(directory / "means.pt", weights_only=True)["means"]
        gen.shape, gen.class_names = tuple(info["shape"]), list(info["class_names"])
        gen.ledger = Ledger.from_json((directory / "ledger.json").read_text())
        return gen


def make_eval_context(tmp_path: Path, epsilon: float = 10.0, delta: float = 1e-5,
                      seed: int = 0, samples: int = 120) -> EvalContext:
    """The context the runner builds for one cell of :class:`KitGenerator` at (ε, δ)."""
    tmp_path = Path(tmp_path)
    splits = tiny_splits(seed)
    budget = PrivacyBudget(epsilon=epsilon, delta=delta)

    def fit_fresh(private: ImageSet, shadow_seed: int) -> Generator:
        gen = KitGenerator()
        ledger = gen.fit(private, budget, FitContext(seed=shadow_seed, public=splits.public))
        gen.ledger = verify_ledger(ledger, budget, gen.name)
        return gen

    generator = fit_fresh(splits.private, seed)
    workdir = tmp_path / "eval"
    cache = tmp_path / "cache"
    workdir.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    return EvalContext(splits=splits, synthetic=generator.sample(samples, seed=seed),
                       generator=generator, budget=budget, ledger=generator.ledger, seed=seed,
                       cache_dir=cache, workdir=workdir, fit_fresh=fit_fresh)
