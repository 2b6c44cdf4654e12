"""Small image classifiers: one trainer shared by metrics, generators and attacks.

Downstream accuracy, the domain feature space of ``fd-domain`` and
``precision-recall``, and the classifiers other plugins need (PrivImage's
public-data classifier, shadow classifiers) all train through
:func:`train_classifier`, so "a classifier trained on X" means the same
recipe everywhere in ppds and numbers stay comparable across plugins.

Design choices, and why:

- GroupNorm instead of BatchNorm: per-sample gradients (Opacus) and batches of
  a few images both work, and eval/train behave the same.
- Inputs are rescaled to [−1, 1] inside the model, so callers pass canonical
  [0, 1] images and nothing else.
- Model selection uses *only* the ``val`` set the caller hands in; the trainer
  never sees a test set, so it cannot peek at one.
- Everything random (init, shuffling, dropout) is drawn inside a forked RNG
  seeded by ``seed``: the same call gives the same model and does not disturb
  the caller's global random state.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ppds_core import ImageSet

from .devices import default_device
from .pixels import to_signed

__all__ = [
    "Arch",
    "Classifier",
    "SmallCNN",
    "SmallResNet",
    "TrainingLog",
    "build_classifier",
    "resolve_arch",
    "train_classifier",
    "predict_logits",
    "embed",
    "accuracy",
]

Arch = Literal["auto", "cnn", "resnet"]


@contextmanager
def cpu_threads_for(shape: tuple[int, ...], device: torch.device) -> Iterator[None]:
    """One intra-op thread for tiny images on the CPU, restored afterwards.

    Convolutions on 8×8 or 28×28 images are too small to split across
    threads: on a busy 2-core machine, training the digits classifier took
    3.8 s of CPU with one thread and 29 s with two (the rest is spin-waiting).
    Larger images keep torch's default.
    """
    if device.type != "cpu" or shape[-1] * shape[-2] >= 32 * 32:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _groups(channels: int) -> int:
    return 8 if channels % 8 == 0 else 1


class Classifier(nn.Module):
    """Interface of every classifier here: ``embed`` (penultimate features) then ``head``."""

    num_features: int

    def embed(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))


class SmallCNN(Classifier):
    """Three 3×3 conv layers, up to two 2× poolings, then a 2×2 average grid.

    Sized for 8×8 to 28×28 grayscale digits (seconds per epoch on a CPU). The
    final 2×2 grid rather than a global average keeps coarse layout, which
    tiny digits need: on 8×8 digits a global average trains several times
    slower to a lower accuracy.
    """

    def __init__(self, in_channels: int, num_classes: int, min_side: int, width: int = 32):
        super().__init__()
        w1, w2, w3 = width, 2 * width, 4 * width
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, w1, 3, padding=1),
            nn.GroupNorm(_groups(w1), w1),
            nn.ReLU(inplace=True),
            nn.Conv2d(w1, w2, 3, padding=1),
            nn.GroupNorm(_groups(w2), w2),
            nn.ReLU(inplace=True),
        ]
        if min_side >= 8:
            layers.append(nn.MaxPool2d(2))
        layers += [
            nn.Conv2d(w2, w3, 3, padding=1),
            nn.GroupNorm(_groups(w3), w3),
            nn.ReLU(inplace=True),
        ]
        if min_side >= 16:
            layers.append(nn.MaxPool2d(2))
        layers.append(nn.AdaptiveAvgPool2d(2))
        self.body = nn.Sequential(*layers)
        self.num_features = 4 * w3
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(4 * w3, num_classes))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.body(to_signed(x)), 1)


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.norm1 = nn.GroupNorm(_groups(cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.skip = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.GroupNorm(_groups(cout), cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(out)) + self.skip(x))


class SmallResNet(Classifier):
    """A ResNet-style net for 32×32 RGB: stem + three residual stages (32→64→128 channels)."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 32):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
            nn.GroupNorm(_groups(width), width),
            nn.ReLU(True),
        )
        self.stages = nn.Sequential(
            _BasicBlock(width, width, 1),
            _BasicBlock(width, 2 * width, 2),
            _BasicBlock(2 * width, 4 * width, 2),
        )
        self.num_features = 4 * width
        self.head = nn.Linear(4 * width, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stages(self.stem(to_signed(x)))
        return torch.flatten(F.adaptive_avg_pool2d(h, 1), 1)


def resolve_arch(shape: tuple[int, int, int], arch: Arch = "auto") -> Literal["cnn", "resnet"]:
    """``auto``: the residual net for RGB images of 32 px and up, the small CNN otherwise."""
    if arch != "auto":
        return arch
    channels, height, width = shape
    return "resnet" if channels == 3 and min(height, width) >= 32 else "cnn"


def build_classifier(
    shape: tuple[int, int, int], num_classes: int, arch: Arch = "auto"
) -> Classifier:
    """An untrained classifier for C×H×W images."""
    kind = resolve_arch(shape, arch)
    if kind == "resnet":
        return SmallResNet(shape[0], num_classes)
    min_side = min(shape[1], shape[2])
    return SmallCNN(shape[0], num_classes, min_side, width=16 if min_side < 16 else 32)


@dataclass
class TrainingLog:
    """What happened during training, attached to the model as ``model.training_log``."""

    arch: str
    epochs_run: int = 0
    best_epoch: int = 0
    best_val_accuracy: float | None = None
    val_accuracies: list[float] = field(default_factory=list)
    train_losses: list[float] = field(default_factory=list)


def train_classifier(
    train: ImageSet,
    *,
    val: ImageSet | None = None,
    epochs: int = 30,
    seed: int = 0,
    arch: Arch = "auto",
    batch_size: int = 64,
    lr: float = 2e-3,
    weight_decay: float = 5e-4,
    patience: int | None = None,
    num_classes: int | None = None,
    device: str | torch.device | None = None,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Classifier:
    """Train a classifier on ``train``; return it in eval mode on the CPU.

    With ``val``, the weights of the epoch with the best ``val`` accuracy are
    kept (ties → the earlier epoch) and, with ``patience``, training stops
    after that many epochs without improvement. Without ``val`` the last
    epoch's weights are returned. ``model.training_log`` records the run.
    ``augment`` maps each training batch (on ``device``, in [0, 1]) to a
    randomly altered copy; it draws from torch's global RNG, which the
    seeded fork makes reproducible.
    """
    if len(train) == 0:
        raise ValueError("cannot train a classifier on an empty image set")
    n_classes = num_classes or train.num_classes
    dev = torch.device(device) if device is not None else default_device()
    fork_devices = [dev.index or 0] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices), cpu_threads_for(train.shape, dev):
        torch.manual_seed(seed)
        model = build_classifier(train.shape, n_classes, arch).to(dev)
        log = TrainingLog(arch=resolve_arch(train.shape, arch))
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
        shuffle = torch.Generator().manual_seed(seed)
        images, labels = train.images, train.labels
        best_state, best_acc, since_best = None, -1.0, 0
        for epoch in range(epochs):
            model.train()
            total, count = 0.0, 0
            for idx in torch.randperm(len(images), generator=shuffle).split(batch_size):
                x, y = images[idx].to(dev), labels[idx].to(dev)
                if augment is not None:
                    x = augment(x)
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                count += len(idx)
            sched.step()
            log.train_losses.append(total / count)
            log.epochs_run = epoch + 1
            if val is not None and len(val):
                acc = accuracy(model, val, device=dev)
                log.val_accuracies.append(acc)
                if acc > best_acc:
                    best_acc, since_best = acc, 0
                    best_state = copy.deepcopy(model.state_dict())
                    log.best_epoch, log.best_val_accuracy = epoch + 1, acc
                else:
                    since_best += 1
                    if patience is not None and since_best >= patience:
                        break
        if best_state is not None:
            model.load_state_dict(best_state)
        else:
            log.best_epoch = log.epochs_run
    model = model.cpu().eval()
    model.training_log = log  # type: ignore[attr-defined]
    return model


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    batch_size: int = 512,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Logits for N×C×H×W images in [0, 1], computed in eval mode; returned on the CPU."""
    return _batched(model, images, batch_size, device, lambda m, x: m(x))


@torch.no_grad()
def embed(
    model: Classifier,
    images: torch.Tensor,
    batch_size: int = 512,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Penultimate-layer features (N × ``model.num_features``) of images in [0, 1]."""
    return _batched(model, images, batch_size, device, lambda m, x: m.embed(x))


def _batched(model, images, batch_size, device, fn) -> torch.Tensor:
    if device is not None:
        model.to(torch.device(device))
    dev = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with cpu_threads_for(tuple(images.shape[1:]), dev):
            outs = [
                fn(model, images[i : i + batch_size].to(dev)).float().cpu()
                for i in range(0, len(images), batch_size)
            ]
    finally:
        model.train(was_training)
    if not outs:
        return torch.empty(0)
    return torch.cat(outs)


def accuracy(
    model: nn.Module,
    data: ImageSet,
    batch_size: int = 512,
    device: str | torch.device | None = None,
) -> float:
    """Fraction of ``data`` whose arg-max prediction equals its label."""
    if len(data) == 0:
        raise ValueError("accuracy of an empty image set is undefined")
    logits = predict_logits(model, data.images, batch_size, device)
    return float((logits.argmax(1) == data.labels).float().mean())
