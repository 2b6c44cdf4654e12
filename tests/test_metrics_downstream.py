"""downstream-accuracy: real reference on digits, no peeking at the test split, caching."""

from __future__ import annotations

import pytest
import torch
from ppds_plugins.common import classifiers as _classifiers
from ppds_plugins.metrics import _reference_cache, downstream
from ppds_plugins.metrics.downstream import DownstreamAccuracy

from ppds_core import EvalContext, ImageSet, PrivacyBudget, SkipMeasurement


@pytest.fixture(scope="module")
def splits(digits_splits):
    return digits_splits


def make_ctx(splits, synthetic: ImageSet, tmp_path, seed: int = 0) -> EvalContext:
    return EvalContext(
        splits=splits,
        synthetic=synthetic,
        generator=object(),  # type: ignore[arg-type]
        budget=PrivacyBudget(epsilon=1.0),
        ledger=None,
        seed=seed,
        cache_dir=tmp_path / "cache",
        workdir=tmp_path / "work",
    )


def rows(images: torch.Tensor) -> set[bytes]:
    return {bytes(row.numpy().tobytes()) for row in images.flatten(1)}


def test_real_reference_on_digits_and_no_test_peeking(splits, tmp_path, monkeypatch):
    _reference_cache.clear_memo()
    seen: list[tuple[ImageSet, ImageSet | None]] = []
    original = _classifiers.train_classifier

    def recording(train, *, val=None, **kwargs):
        seen.append((train, val))
        return original(train, val=val, **kwargs)

    monkeypatch.setattr(_classifiers, "train_classifier", recording)
    metric = DownstreamAccuracy(epochs=12)
    synthetic = splits.holdout  # labelled real digits standing in for good samples
    m = metric.evaluate(make_ctx(splits, synthetic, tmp_path))[0]

    assert m.name == "downstream-accuracy" and m.higher_is_better is True
    assert m.extra["real_reference"] >= 0.90  # trained on the real private split
    assert m.value >= 0.85
    # two trainings: the synthetic one and the private-split reference; neither saw the test split
    test_rows = rows(splits.test.images)
    assert len(seen) == 2
    for train, val in seen:
        assert val is not None and len(val) > 0
        assert not (rows(train.images) | rows(val.images)) & test_rows
    (syn_train, syn_val), (ref_train, ref_val) = seen
    assert rows(syn_train.images) | rows(syn_val.images) <= rows(synthetic.images)
    assert rows(ref_train.images) | rows(ref_val.images) <= rows(splits.private.images)

    # the reference is cached: another cell (another seed) trains only its own classifier
    again = metric.evaluate(make_ctx(splits, synthetic, tmp_path, seed=1))[0]
    assert len(seen) == 3
    assert again.extra["real_reference"] == m.extra["real_reference"]


def test_shuffled_labels_give_chance_accuracy(splits, tmp_path):
    g = torch.Generator().manual_seed(0)
    bad = ImageSet(
        splits.holdout.images,
        splits.holdout.labels[torch.randperm(len(splits.holdout), generator=g)],
        splits.holdout.class_names,
    )
    m = DownstreamAccuracy(epochs=4, real_reference=False).evaluate(
        make_ctx(splits, bad, tmp_path)
    )[0]
    assert "real_reference" not in m.extra
    assert m.value < 0.3


def test_mismatched_classes_are_skipped(splits, tmp_path):
    three = ImageSet(splits.holdout.images[:30], torch.arange(30) % 3, ["a", "b", "c"])
    with pytest.raises(SkipMeasurement, match="classes"):
        DownstreamAccuracy().evaluate(make_ctx(splits, three, tmp_path))


def test_validation_split_is_seeded_and_disjoint(splits):
    train, val = downstream.split_validation(splits.holdout, 0.1, seed=5)
    train2, val2 = downstream.split_validation(splits.holdout, 0.1, seed=5)
    assert len(val) == round(0.1 * len(splits.holdout)) and len(train) + len(val) == len(
        splits.holdout
    )
    assert torch.equal(val.images, val2.images)
    as_list = lambda s: sorted(bytes(r.numpy().tobytes()) for r in s.images.flatten(1))  # noqa: E731
    assert sorted(as_list(train) + as_list(val)) == as_list(splits.holdout)  # a partition
