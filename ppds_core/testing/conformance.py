"""The conformance kit: checks a plugin author runs in their own test suite.

    from ppds_core.testing import check_plugin

    def test_my_generator_conforms(tmp_path):
        check_plugin(MyGenerator, tmp_path)

Each check asserts the contract the runner relies on (docs/architecture.md): strict
configs, JSON-describable capabilities, a ledger the core can recompute and
that never exceeds its target (for *every* generator, DP-SGD or not),
deterministic and class-balanced sampling, save/load round trips, measurements
that are finite numbers or an explicit skip. Generators are fitted with their
own ``smoke_config`` on a tiny embedded-like set, so the kit runs in seconds.
Metrics and attacks are evaluated on a real cell the kit builds itself
(:func:`~ppds_core.testing.make_eval_context`: splits, a generator trained
with the DP-SGD engine, its verified ledger, shadow-model fits). Every failed
check raises an ``AssertionError`` that says what is wrong and where.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from pydantic import ValidationError

from ..budget import PrivacyBudget
from ..errors import LedgerError, SkipMeasurement
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
from ..privacy.verify import verify_ledger
from ._context import make_eval_context, tiny_imageset

__all__ = [
    "check_plugin",
    "check_plugin_class",
    "check_generator",
    "check_evaluator",
    "check_dataset",
    "tiny_imageset",
    "make_eval_context",
]


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
        assert cls.higher_is_better in (True, False, None), (
            f"{cls.name}.higher_is_better must be True, False or None, got {cls.higher_is_better!r}")
        unknown = set(cls.needs) - {"dp-sgd", "labels", "public", "shadow-models"}
        assert not unknown, f"{cls.name}.needs lists unknown needs {sorted(unknown)}"
    if issubclass(cls, Generator):
        assert isinstance(getattr(cls, "trains_with_dp_sgd", None), bool), (
            f"{cls.name} must declare trains_with_dp_sgd: True if it trains with ppds' DP-SGD engine, "
            "False if it privatises its data another way (e.g. ppds_core.privacy.gaussian_release)")


def _assert_canonical(s: ImageSet, n: int, shape, where: str) -> None:
    assert len(s) == n, f"{where}: asked for {n} images, got {len(s)}"
    assert tuple(s.shape) == tuple(shape), f"{where}: shape {s.shape} != data shape {shape}"
    assert s.images.dtype == torch.float32, f"{where}: images must be float32, got {s.images.dtype}"
    assert float(s.images.min()) >= 0.0 and float(s.images.max()) <= 1.0, (
        f"{where}: pixels must lie in [0, 1], got [{float(s.images.min()):g}, {float(s.images.max()):g}]")


def check_ledger(cls: type[Generator], gen: Generator, ledger: object,
                 budget: PrivacyBudget) -> None:
    """The ledger ``fit`` returned holds, as the runner will check it after every fit.

    Recomputed ε not above the claim, within the target, the right (ε, δ), at
    least one spend at finite ε, none at ε = ∞ — and a DP-SGD generator's
    DP-SGD spend on it. A broken ledger is an ``AssertionError`` with the reason.
    """
    where = f"{cls.name}.fit at {budget.label()}"
    assert gen.ledger is ledger, f"{where}: fit must set self.ledger to the ledger it returns"
    try:
        verified = verify_ledger(ledger, budget, cls.name)
    except LedgerError as err:
        raise AssertionError(f"{where}: {err}") from None
    if budget.is_private and cls.trains_with_dp_sgd:
        assert verified.dp_sgd() is not None, (
            f"{where}: {cls.name} declares trains_with_dp_sgd but its ledger lists no DP-SGD spend "
            "(train with ppds_core.privacy.engine.fit_private, or declare trains_with_dp_sgd = False)")
    if budget.is_private and not cls.trains_with_dp_sgd:
        assert verified.dp_sgd() is None, (
            f"{where}: {cls.name} records a DP-SGD spend but declares trains_with_dp_sgd = False; "
            "say True so DP-SGD attacks and bounds apply to it")


def check_generator(cls: type[Generator], tmp_path: Path, data: ImageSet | None = None,
                    public: ImageSet | None = None, epsilon: float = 10.0) -> Generator:
    """Fit (smoke config) at ε and at ε = ∞, check both ledgers, sample, save/load."""
    check_plugin_class(cls)
    data = data or tiny_imageset()
    cfg = cls.smoke_config(cls.Config())
    ctx = FitContext(seed=0, public=public if cls.uses_public_data else None, workdir=Path(tmp_path))
    budget = PrivacyBudget(epsilon=epsilon, delta=1e-5)
    gen = cls(cfg)
    ledger = gen.fit(data, budget, ctx)
    check_ledger(cls, gen, ledger, budget)
    n = 2 * data.num_classes
    s1 = gen.sample(n, seed=3)
    _assert_canonical(s1, n, data.shape, f"{cls.name}.sample")
    assert s1.class_names == data.class_names, (
        f"{cls.name}.sample: samples must carry the private set's class names {data.class_names}, "
        f"got {s1.class_names}")
    counts = torch.bincount(s1.labels, minlength=data.num_classes)
    assert int(counts.max() - counts.min()) <= 1, f"{cls.name}.sample: labels not balanced: {counts.tolist()}"
    s2 = gen.sample(n, seed=3)
    assert torch.equal(s1.images, s2.images), f"{cls.name}.sample(seed) must be deterministic"
    out = Path(tmp_path) / "model"
    out.mkdir(parents=True, exist_ok=True)
    gen.save(out)
    again = cls.load(out)
    s3 = again.sample(n, seed=3)
    assert torch.allclose(s1.images, s3.images, atol=1e-5), f"{cls.name}: load(save(g)) samples differently"
    assert again.ledger is not None and again.ledger.epsilon_spent == ledger.epsilon_spent, (
        f"{cls.name}: load(save(g)) must restore the ledger")
    # the non-private reference row: same recipe, no DP, no spend
    ref = cls(cfg)
    inf = PrivacyBudget(epsilon=math.inf, delta=1e-5)
    check_ledger(cls, ref, ref.fit(data, inf, ctx), inf)
    return gen


def check_evaluator(cls: type[Metric] | type[Attack], ctx: EvalContext | None = None,
                    tmp_path: Path | None = None) -> list[Measurement]:
    """Evaluate once: finite measurements with metadata, or an explicit skip.

    Without ``ctx`` the kit builds a real cell in ``tmp_path``
    (:func:`make_eval_context`) and evaluates on it.
    """
    check_plugin_class(cls)
    if ctx is None:
        assert tmp_path is not None, f"check_evaluator({cls.name}) needs ctx= or tmp_path="
        ctx = make_eval_context(tmp_path)
    plugin = cls(cls.smoke_config(cls.Config()))
    try:
        rows = plugin.evaluate(ctx)
    except SkipMeasurement as skip:
        assert str(skip), f"{cls.name}: a skip must say why"
        return []
    assert isinstance(rows, list) and rows, f"{cls.name}.evaluate returned no measurement"
    for m in rows:
        assert isinstance(m, Measurement), f"{cls.name}.evaluate must return Measurements, got {type(m).__name__}"
        assert not math.isnan(m.value), f"{cls.name}: {m.name} is NaN"
        assert m.higher_is_better in (True, False, None), f"{cls.name}: {m.name}.higher_is_better"
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
    """Dispatch on the plugin's kind: generators fit, evaluators evaluate, datasets load.

    Metrics and attacks take ``ctx=`` or build their own cell in ``tmp_path``.
    """
    if issubclass(cls, Generator):
        assert tmp_path is not None, "check_plugin(generator) needs tmp_path"
        return check_generator(cls, tmp_path, **kwargs)
    if issubclass(cls, DatasetProvider):
        return check_dataset(cls)
    if issubclass(cls, (Metric, Attack)):
        return check_evaluator(cls, kwargs.get("ctx"), tmp_path)
    raise TypeError(f"{cls!r} is not a ppds plugin class")
