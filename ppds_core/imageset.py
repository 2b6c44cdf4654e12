"""The image-set container every plugin speaks, and deterministic splits.

Canonical form: float32 in [0, 1], N×C×H×W, integer labels. Each plugin
converts at its own edge (a diffusion model to [−1, 1], Inception to 299 px),
so no two plugins ever disagree about what a pixel means.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .atomic import atomic_open

__all__ = ["ImageSet", "Splits", "SplitSizes", "make_splits", "shared_images", "check_public_disjoint"]


@dataclass
class ImageSet:
    """Images (N×C×H×W float32 in [0, 1]) with integer labels and class names."""

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    name: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        images = torch.as_tensor(self.images)
        if images.dtype == torch.uint8:
            images = images.float() / 255.0
        images = images.float()
        if images.ndim == 3:  # N×H×W grayscale
            images = images.unsqueeze(1)
        if images.ndim != 4:
            raise ValueError(f"ImageSet {self.name!r}: images must be N×C×H×W, got {tuple(images.shape)}")
        labels = torch.as_tensor(self.labels).long().reshape(-1)
        if labels.shape[0] != images.shape[0]:
            raise ValueError(
                f"ImageSet {self.name!r}: {images.shape[0]} images but {labels.shape[0]} labels"
            )
        if images.numel() and not bool(torch.isfinite(images).all()):
            # e.g. a generator whose weights went NaN: its "samples" must fail the fit, not be measured
            raise ValueError(f"ImageSet {self.name!r}: {int((~torch.isfinite(images)).sum())} pixel "
                             "values are NaN or infinite (non-finite weights?)")
        if images.numel() and (images.min() < -1e-6 or images.max() > 1 + 1e-6):
            raise ValueError(
                f"ImageSet {self.name!r}: pixel values must lie in [0, 1] "
                f"(got [{images.min():.3g}, {images.max():.3g}]); convert at the plugin's edge"
            )
        if labels.numel() and (labels.min() < 0 or labels.max() >= len(self.class_names)):
            raise ValueError(
                f"ImageSet {self.name!r}: labels must be in [0, {len(self.class_names)}) "
                f"for {len(self.class_names)} class names"
            )
        self.images = images.contiguous()
        self.labels = labels
        self.class_names = list(self.class_names)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, index, name: str | None = None) -> ImageSet:
        index = torch.as_tensor(index, dtype=torch.long)
        return ImageSet(
            self.images[index], self.labels[index], self.class_names, name or self.name, dict(self.meta)
        )

    def to_uint8(self) -> np.ndarray:
        return (self.images.clamp(0, 1) * 255).round().to(torch.uint8).numpy()

    def save_npz(self, path: str | Path) -> None:
        """Write as uint8 ``images``, ``labels`` and ``class_names`` (atomic)."""
        with atomic_open(path) as fh:  # a planted link at the name cannot redirect it
            np.savez_compressed(
                fh,
                images=self.to_uint8(),
                labels=self.labels.numpy(),
                class_names=np.array(self.class_names),
            )

    @classmethod
    def load_npz(cls, path: str | Path, name: str = "") -> ImageSet:
        with np.load(path, allow_pickle=False) as z:
            return cls(
                torch.from_numpy(z["images"]),
                torch.from_numpy(z["labels"]),
                [str(c) for c in z["class_names"]],
                name or Path(path).stem,
            )

    def fingerprint(self) -> str:
        """A content hash: identical pixels, labels and classes ⇒ identical string."""
        import hashlib

        h = hashlib.sha256()
        h.update(self.to_uint8().tobytes())
        h.update(self.labels.numpy().astype(np.int64).tobytes())
        h.update("\x00".join(self.class_names).encode())
        h.update(str(tuple(self.images.shape)).encode())
        return h.hexdigest()[:16]


@dataclass
class SplitSizes:
    """How many images go to each role.

    A float ≤ 1.0 is a fraction of the pool it is drawn from (1.0 = all of it);
    an int is a count.
    """

    private: float = 0.5
    holdout: float = 0.25
    test: float = 0.25


@dataclass
class Splits:
    """The four roles. Only ``private`` is protected by DP.

    ``holdout`` is the evaluator's and attacker's real data (non-members,
    feature extractors, priors); ``test`` is touched only by final utility
    metrics; ``public`` is a different dataset anyone may use.
    """

    private: ImageSet
    holdout: ImageSet
    test: ImageSet
    public: ImageSet | None = None

    def fingerprint(self) -> str:
        parts = [self.private.fingerprint(), self.holdout.fingerprint(), self.test.fingerprint()]
        parts.append(self.public.fingerprint() if self.public is not None else "-")
        return "/".join(parts)


def _count(size: float, pool: int) -> int:
    if size <= 0:
        return 0
    if isinstance(size, float) and size <= 1.0:
        return int(round(size * pool))
    return int(size)


def make_splits(
    train: ImageSet,
    test: ImageSet | None,
    sizes: SplitSizes,
    seed: int,
    public: ImageSet | None = None,
) -> Splits:
    """Deterministic, disjoint private / holdout / test splits.

    A dataset with an official test set keeps it as ``test`` (subsampled if a
    count is asked for) and splits ``train`` into private and holdout; one
    without takes all three from one shuffled pool. Fractions refer to the
    pool they are drawn from. The permutation depends only on ``seed``.
    """
    gen = torch.Generator().manual_seed(int(seed))
    n = len(train)
    perm = torch.randperm(n, generator=gen)
    if test is None:
        n_priv, n_hold, n_test = (_count(s, n) for s in (sizes.private, sizes.holdout, sizes.test))
        if n_priv + n_hold + n_test > n:
            raise ValueError(
                f"{train.name}: split sizes private={n_priv} + holdout={n_hold} + test={n_test} "
                f"exceed the {n} images available; lower them"
            )
        a, b = n_priv, n_priv + n_hold
        priv, hold, tst = perm[:a], perm[a:b], perm[b : b + n_test]
        test_set = train.subset(tst, f"{train.name}/test")
    else:
        n_priv, n_hold = _count(sizes.private, n), _count(sizes.holdout, n)
        if n_priv + n_hold > n:
            raise ValueError(
                f"{train.name}: private={n_priv} + holdout={n_hold} exceed the {n} training images"
            )
        priv, hold = perm[:n_priv], perm[n_priv : n_priv + n_hold]
        n_test = min(_count(sizes.test, len(test)), len(test))
        tperm = torch.randperm(len(test), generator=gen)[:n_test]
        test_set = test.subset(tperm, f"{test.name}/test")
    splits = Splits(
        private=train.subset(priv, f"{train.name}/private"),
        holdout=train.subset(hold, f"{train.name}/holdout"),
        test=test_set,
        public=public,
    )
    if public is not None:
        check_public_disjoint(splits.private, public)
    return splits


def _pixel_digests(images: ImageSet) -> list[bytes]:
    """One digest per image of its 8-bit pixels (what a saved PNG would hold)."""
    import hashlib

    pixels = (images.images.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return [hashlib.blake2b(p.tobytes(), digest_size=16).digest() for p in pixels]


def shared_images(a: ImageSet, b: ImageSet) -> int:
    """How many images of ``a`` are pixel-identical (as 8-bit images) to an image of ``b``."""
    if tuple(a.shape) != tuple(b.shape):
        return 0  # different sizes or channels: no image can be an exact duplicate
    theirs = set(_pixel_digests(b))
    return sum(d in theirs for d in _pixel_digests(a))


def check_public_disjoint(private: ImageSet, public: ImageSet) -> None:
    """Refuse a public set that contains images of the private split.

    DP protects the private split only; a generator that pretrains on public
    data (PrivImage) or selects from it would learn a duplicated private image
    with no noise at all, outside every ledger. Exact duplicates of the 8-bit
    pixels are what this catches (e.g. ``mnist5k`` private with ``public: mnist``).
    """
    from .errors import ConfigError

    k = shared_images(private, public)
    if k:
        raise ConfigError(
            f"the public set {public.name!r} contains {k} image(s) identical to images of the "
            f"private split {private.name!r}: DP protects only the private data, so public data "
            "must be disjoint from it; choose another public set, or remove those images from it"
        )
