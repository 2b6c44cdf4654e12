"""ImageSet invariants, deterministic disjoint splits, and PrivacyBudget messages."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from ppds_core import ImageSet, PrivacyBudget, SplitSizes, make_splits


def _set(n=100, classes=5):
    g = torch.Generator().manual_seed(1)
    return ImageSet(torch.rand(n, 1, 4, 4, generator=g), torch.arange(n) % classes,
                    [str(i) for i in range(classes)], "toy")


def test_uint8_and_nhw_inputs_become_canonical():
    s = ImageSet(torch.full((3, 4, 4), 255, dtype=torch.uint8), [0, 1, 0], ["a", "b"])
    assert s.images.dtype == torch.float32 and s.shape == (1, 4, 4)
    assert float(s.images.max()) == 1.0


@pytest.mark.parametrize("bad", [
    dict(images=torch.full((2, 1, 2, 2), 2.0), labels=[0, 0]),
    dict(images=torch.zeros(2, 1, 2, 2), labels=[0]),
    dict(images=torch.zeros(2, 1, 2, 2), labels=[0, 5]),
])
def test_invalid_imagesets_are_refused(bad):
    with pytest.raises(ValueError):
        ImageSet(class_names=["a", "b"], **bad)


def test_npz_round_trip(tmp_path):
    s = _set()
    s.save_npz(tmp_path / "s.npz")
    t = ImageSet.load_npz(tmp_path / "s.npz")
    assert torch.allclose(s.images, t.images, atol=1 / 255) and torch.equal(s.labels, t.labels)
    assert t.class_names == s.class_names
    assert t.fingerprint() == ImageSet.load_npz(tmp_path / "s.npz").fingerprint()


def test_splits_are_disjoint_deterministic_and_sized():
    s = _set()
    s.meta["ids"] = None
    a = make_splits(s, None, SplitSizes(0.5, 0.2, 30), seed=3)
    b = make_splits(s, None, SplitSizes(0.5, 0.2, 30), seed=3)
    c = make_splits(s, None, SplitSizes(0.5, 0.2, 30), seed=4)
    assert (len(a.private), len(a.holdout), len(a.test)) == (50, 20, 30)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    rows = lambda x: {tuple(r.flatten().tolist()) for r in x.images}  # noqa: E731
    assert not rows(a.private) & rows(a.holdout)
    assert not rows(a.private) & rows(a.test) and not rows(a.holdout) & rows(a.test)


def test_official_test_set_is_kept():
    train, test = _set(100), _set(40)
    sp = make_splits(train, test, SplitSizes(60, 40, 1.0), seed=0)
    assert (len(sp.private), len(sp.holdout), len(sp.test)) == (60, 40, 40)


def test_oversized_split_is_refused():
    with pytest.raises(ValueError, match="exceed"):
        make_splits(_set(10), None, SplitSizes(8, 8, 8), seed=0)


def test_privacy_budget():
    assert PrivacyBudget(epsilon="inf").is_private is False
    assert math.isinf(PrivacyBudget(epsilon="inf").epsilon)
    assert PrivacyBudget(epsilon=1).label() == "ε=1"
    with pytest.raises(ValidationError, match="epsilon must be > 0"):
        PrivacyBudget(epsilon=-1)
    with pytest.raises(ValidationError, match="0 < delta < 1"):
        PrivacyBudget(epsilon=1, delta=1.0)
    with pytest.raises(ValidationError):
        PrivacyBudget(epsilon=1, delta=1e-5, extra=1)
