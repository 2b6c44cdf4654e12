"""The conformance kit: checks a plugin author runs in their own test suite.

    from ppds_core.testing import check_plugin

    def test_my_generator_conforms(tmp_path):
        check_plugin(MyGenerator, tmp_path)

Each check asserts the contract the runner relies on (DESIGN.md): strict
configs, JSON-describable capabilities, a ledger that never exceeds its target,
deterministic and class-balanced sampling, save/load round trips, measurements
that are finite numbers or an explicit skip. Generators are fitted with their
own ``smoke_config`` on a tiny embedded-like set, so the kit runs in seconds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from pydantic import ValidationError

from ..budget import PrivacyBudget
from ..errors import SkipMeasurement
from ..imageset import ImageSet, Splits
from ..interfaces import (
    Attack,
    DatasetProvider,
    EvalContext,
    FitContext,
    Generator,
    Measurement,
    Metric,
    Plugin,
)

__all__ = [
    "check_plugin",
    "check_plugin_class",
    "check_generator",
    "check_evaluator",
    "check_dataset",
    "tiny_imageset",
]


def tiny_imageset(n: int = 120, num_classes: int = 4, shape=(1, 8, 8), seed: int = 0) -> ImageSet:
    """Class-dependent blobs: learnable, tiny, no download."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % num_classes
    c, h, w = shape
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    base = torch.stack([((xx * (k + 1) + yy * (num_classes - k)) % 1.0) for k in range(num_classes)])
    imgs = base[labels].unsqueeze(1).expand(n, c, h, w) + 0.1 * torch.randn(n, c, h, w, generator=g)
    return ImageSet(imgs.clamp(0, 1), labels, [f"c{k}" for k in range(num_classes)], "tiny")


def check_plugin_class(cls: type[Plugin]) -> None:
    """Metadata every plugin kind must get right."""
    assert isinstance(getattr(cls, "name", None), str) and cls.name, f"{cls} has no name"
    assert cls.name == cls.name.strip().lower(), f"plugin name {cls.name!r} must be lower-case"
    assert cls.kind in {"generator", "metric", "attack", "dataset"}, f"bad kind {cls.kind!r}"
    cfg = cls.Config()  # defaults alone must validate
    assert cls.Config.model_config.get("extra") == "forbid", f"{cls.name}.Config must forbid extra keys"
    try:
        cls.Config.model_validate({"__no_such_option__": 1})
    except ValidationError:
        pass
    else:  # pragma: no cover - a failing plugin
        raise AssertionError(f"{cls.name}.Config accepted an unknown option")
    json.dumps(cls.Config.model_json_schema())
    json.dumps(cls.capabilities(), default=str)
    smoke = cls.smoke_config(cfg)
    assert isinstance(smoke, cls.Config), f"{cls.name}.smoke_config must return a {cls.Config.__name__}"
    if issubclass(cls, (Metric, Attack)):
        assert cls.higher_is_better in (True, False, None)
        assert set(cls.needs) <= {"dp-sgd", "labels", "public", "shadow-models"}, cls.needs


def _assert_canonical(s: ImageSet, n: int, shape, where: str) -> None:
    assert len(s) == n, f"{where}: asked for {n} images, got {len(s)}"
    assert tuple(s.shape) == tuple(shape), f"{where}: shape {s.shape} != data shape {shape}"
    assert s.images.dtype == torch.float32
    assert float(s.images.min()) >= 0.0 and float(s.images.max()) <= 1.0


def check_generator(cls: type[Generator], tmp_path: Path, data: ImageSet | None = None,
                    public: ImageSet | None = None, epsilon: float = 10.0) -> Generator:
    """Fit (smoke config), sample, save/load; return the fitted generator."""
    check_plugin_class(cls)
    data = data or tiny_imageset()
    cfg = cls.smoke_config(cls.Config())
    ctx = FitContext(seed=0, public=public if cls.uses_public_data else None, workdir=Path(tmp_path))
    budget = PrivacyBudget(epsilon=epsilon, delta=1e-5)
    gen = cls(cfg)
    ledger = gen.fit(data, budget, ctx)
    assert gen.ledger is ledger, "fit must set self.ledger to the ledger it returns"
    assert ledger.delta == budget.delta
    if cls.trains_with_dp_sgd:
        assert ledger.epsilon_spent <= budget.epsilon * (1 + 1e-9), "spent more than the target"
        assert ledger.dp_sgd() is not None, "a DP-SGD generator must record its DP-SGD spend"
        assert gen.dp_sgd_params() is not None
    n = 2 * data.num_classes
    s1 = gen.sample(n, seed=3)
    _assert_canonical(s1, n, data.shape, f"{cls.name}.sample")
    assert s1.class_names == data.class_names, "samples must carry the private set's class names"
    counts = torch.bincount(s1.labels, minlength=data.num_classes)
    assert int(counts.max() - counts.min()) <= 1, f"labels not balanced: {counts.tolist()}"
    s2 = gen.sample(n, seed=3)
    assert torch.equal(s1.images, s2.images), "sample(seed) must be deterministic"
    out = Path(tmp_path) / "model"
    out.mkdir(parents=True, exist_ok=True)
    gen.save(out)
    again = cls.load(out)
    s3 = again.sample(n, seed=3)
    assert torch.allclose(s1.images, s3.images, atol=1e-5), "load(save(g)) samples differently"
    assert again.ledger is not None and again.ledger.epsilon_spent == ledger.epsilon_spent
    # the non-private reference row: same recipe, no DP
    ref = cls(cfg)
    ref_ledger = ref.fit(data, PrivacyBudget(epsilon=math.inf, delta=1e-5), ctx)
    assert not ref_ledger.is_private and ref.dp_sgd_params() is None
    return gen


def check_evaluator(cls: type[Metric] | type[Attack], ctx: EvalContext) -> list[Measurement]:
    """Evaluate once: finite measurements with metadata, or an explicit skip."""
    check_plugin_class(cls)
    plugin = cls(cls.smoke_config(cls.Config()))
    try:
        rows = plugin.evaluate(ctx)
    except SkipMeasurement as skip:
        assert str(skip), "a skip must say why"
        return []
    assert isinstance(rows, list) and rows, f"{cls.name}.evaluate returned no measurement"
    for m in rows:
        assert isinstance(m, Measurement)
        assert not math.isnan(m.value), f"{cls.name}: {m.name} is NaN"
        assert m.higher_is_better in (True, False, None)
    return rows


def check_dataset(cls: type[DatasetProvider]) -> Splits | None:
    """Availability is cheap and honest; an available set loads canonically and splits disjointly."""
    check_plugin_class(cls)
    provider = cls()
    avail = provider.availability()
    if not avail.available:
        assert avail.detail, f"{cls.name}: an unavailable dataset must say what is missing"
        return None
    splits = provider.splits()
    for part in (splits.private, splits.holdout, splits.test):
        assert part.images.dtype == torch.float32 and part.images.ndim == 4
        assert float(part.images.min()) >= 0 and float(part.images.max()) <= 1
    return splits


def check_plugin(cls: type[Plugin], tmp_path: Path | None = None, **kwargs) -> object:
    """Dispatch on the plugin's kind (evaluators need ``ctx=`` in kwargs)."""
    if issubclass(cls, Generator):
        assert tmp_path is not None, "check_plugin(generator) needs tmp_path"
        return check_generator(cls, tmp_path, **kwargs)
    if issubclass(cls, DatasetProvider):
        return check_dataset(cls)
    if issubclass(cls, (Metric, Attack)):
        if "ctx" in kwargs:
            return check_evaluator(cls, kwargs["ctx"])
        check_plugin_class(cls)
        return None
    raise TypeError(f"{cls!r} is not a ppds plugin class")
