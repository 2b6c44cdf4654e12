"""Folder datasets, each read from tiny files written here in its official format."""

from __future__ import annotations

import gzip
import pickle
import struct
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from ppds_plugins.datasets.folders import CelebA, Cifar10, FashionMnist, ImageNetFolder, Mnist

from ppds_core import DataNotFoundError, list_datasets, reset_registry
from ppds_core.registry import ENTRY_POINT_GROUP

# --------------------------------------------------------------------------- IDX (MNIST)


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    magic = 0x0800 | array.ndim
    blob = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(blob))
    else:
        path.write_bytes(blob)
    return path


def make_mnist(folder: Path, n_train: int = 12, n_test: int = 5, gz: bool = False, seed: int = 0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test, dtype=np.uint8) * 3) % 10,
    }
    for stem, array in data.items():
        write_idx(folder / stem, array, gz)
    return data


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_reads_plain_and_gzipped_idx(tmp_path, gz):
    data = make_mnist(tmp_path, gz=gz)
    provider = Mnist(root=str(tmp_path))
    assert provider.availability().available
    train, test = provider.load()
    assert train.images.shape == (12, 1, 28, 28) and test.images.shape == (5, 1, 28, 28)
    assert torch.allclose(train.images[:, 0] * 255, torch.from_numpy(data["train-images-idx3-ubyte"]).float(), atol=1e-3)
    assert train.labels.tolist() == data["train-labels-idx1-ubyte"].tolist()
    assert test.labels.tolist() == data["t10k-labels-idx1-ubyte"].tolist()
    assert train.class_names == [str(d) for d in range(10)]


def test_torchvision_layout_official_test_and_splits(tmp_path):
    make_mnist(tmp_path / "FashionMNIST" / "raw", n_train=20, n_test=6, gz=True)
    provider = FashionMnist(root=str(tmp_path), image_size=32)
    train, test = provider.load()
    assert train.images.shape == (20, 1, 32, 32)
    assert train.class_names[0] == "T-shirt/top" and train.class_names[9] == "Ankle boot"
    splits = provider.splits()  # defaults: 80/20 of train, all of the official test set
    assert (len(splits.private), len(splits.holdout), len(splits.test)) == (16, 4, 6)
    assert splits.test.fingerprint() != splits.private.fingerprint()
    assert FashionMnist(root=str(tmp_path), image_size=32).splits().fingerprint() == splits.fingerprint()


def test_mnist_missing_folder_names_files_and_root(tmp_path):
    root = tmp_path / "nowhere"
    provider = Mnist(root=str(root))
    avail = provider.availability()
    assert not avail.available
    assert "train-images-idx3-ubyte" in avail.detail and str(root) in avail.detail
    assert "root:" in avail.detail
    with pytest.raises(DataNotFoundError, match="t10k-labels-idx1-ubyte"):
        provider.load()


def test_mnist_partially_present_lists_what_is_missing(tmp_path):
    make_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    detail = Mnist(root=str(tmp_path)).availability().detail
    assert "missing t10k-labels-idx1-ubyte" in detail


def test_idx_wrong_magic_names_the_file(tmp_path):
    make_mnist(tmp_path)
    labels = (tmp_path / "train-labels-idx1-ubyte").read_bytes()
    (tmp_path / "train-images-idx3-ubyte").write_bytes(labels)  # labels where images belong
    with pytest.raises(DataNotFoundError, match="train-images-idx3-ubyte.*magic number"):
        Mnist(root=str(tmp_path)).load()


def test_idx_truncated_plain_and_gz_name_the_file(tmp_path):
    make_mnist(tmp_path / "plain")
    path = tmp_path / "plain" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataNotFoundError, match="t10k-images-idx3-ubyte.*truncated"):
        Mnist(root=str(tmp_path / "plain")).load()
    make_mnist(tmp_path / "gz", gz=True)
    path = tmp_path / "gz" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DataNotFoundError, match="train-images-idx3-ubyte.gz"):
        Mnist(root=str(tmp_path / "gz")).load()


def test_idx_count_mismatch_between_images_and_labels(tmp_path):
    make_mnist(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(7, dtype=np.uint8))
    with pytest.raises(DataNotFoundError, match="12 images but .* 7 labels"):
        Mnist(root=str(tmp_path)).load()


# --------------------------------------------------------------------------- CIFAR-10


def make_cifar(folder: Path, per_batch: int = 3, protocol: int = 2, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"labels": [int(v) for v in rng.integers(0, 10, per_batch)],
            b"batch_label": name.encode(),
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
        batches[name] = batch
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names, b"num_vis": 3072}, protocol=protocol))
    return batches


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_reads_batches_from_parent_folder(tmp_path, protocol):
    batches = make_cifar(tmp_path / "cifar-10-batches-py", protocol=protocol)
    train, test = Cifar10(root=str(tmp_path)).load()
    assert train.images.shape == (15, 3, 32, 32) and test.images.shape == (3, 3, 32, 32)
    assert train.class_names[0] == "airplane" and train.class_names[9] == "truck"
    first = batches["data_batch_1"][b"data"][0]
    # row layout: 1024 red, then 1024 green, then 1024 blue values, row-major
    assert round(train.images[0, 1, 0, 5].item() * 255) == first[1024 + 5]
    assert round(train.images[0, 2, 31, 31].item() * 255) == first[3071]
    assert train.labels[3:6].tolist() == batches["data_batch_2"][b"labels"]
    assert test.labels.tolist() == batches["test_batch"][b"labels"]


def test_cifar10_root_may_be_the_batches_folder_and_resize(tmp_path):
    make_cifar(tmp_path)
    train, _ = Cifar10(root=str(tmp_path), image_size=16).load()
    assert train.images.shape == (15, 3, 16, 16)


class _Evil:
    def __reduce__(self):
        return (Path.touch, (Path("/tmp/ppds-should-not-exist"),))


def test_cifar10_refuses_pickles_that_run_code(tmp_path):
    make_cifar(tmp_path)
    marker = Path("/tmp/ppds-should-not-exist")
    marker.unlink(missing_ok=True)
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}))
    with pytest.raises(DataNotFoundError, match="data_batch_3.*refusing"):
        Cifar10(root=str(tmp_path)).load()
    assert not marker.exists()


def test_cifar10_missing_and_corrupt(tmp_path):
    avail = Cifar10(root=str(tmp_path)).availability()
    assert not avail.available and "data_batch_1" in avail.detail and "cifar-10-batches-py" in avail.detail
    make_cifar(tmp_path)
    (tmp_path / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DataNotFoundError, match="test_batch"):
        Cifar10(root=str(tmp_path)).load()
    (tmp_path / "data_batch_5").unlink()
    assert "missing data_batch_5" in Cifar10(root=str(tmp_path)).availability().detail


# --------------------------------------------------------------------------- CelebA


ATTR_NAMES = ["Bald", "Male", "Smiling"]


def make_celeba(root: Path, n: int = 6, partition: bool = True) -> list[int]:
    """Faces 178×218 whose central 140×140 is blue and whose border is red."""
    images = root / "img_align_celeba"
    images.mkdir(parents=True)
    male = []
    for i in range(n):
        img = np.zeros((218, 178, 3), dtype=np.uint8)
        img[..., 0] = 255
        top, left = (218 - 140) // 2, (178 - 140) // 2
        img[top : top + 140, left : left + 140] = (0, 0, 255)
        Image.fromarray(img).save(images / f"{i + 1:06d}.jpg", quality=95)
        male.append(1 if i % 3 == 0 else -1)
    lines = [str(n), " ".join(ATTR_NAMES)]
    lines += [f"{i + 1:06d}.jpg {-1:2d} {male[i]:2d} {1:2d}" for i in range(n)]
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    if partition:
        parts = [0, 0, 0, 1, 2, 2][:n]
        (root / "list_eval_partition.txt").write_text("".join(f"{i + 1:06d}.jpg {p}\n" for i, p in enumerate(parts)))
    return male


def test_celeba_crop_resize_labels_and_official_partition(tmp_path):
    male = make_celeba(tmp_path)
    provider = CelebA(root=str(tmp_path), image_size=16)
    assert provider.availability().available
    train, test = provider.load()
    assert train.images.shape == (3, 3, 16, 16) and test.images.shape == (2, 3, 16, 16)
    assert train.class_names == ["not Male", "Male"]
    assert train.labels.tolist() == [int(m == 1) for m in male[:3]]
    assert test.labels.tolist() == [int(m == 1) for m in male[4:6]]
    # the centre crop of 140 keeps only the blue square: no red survives
    assert train.images[:, 2].mean() > 0.9 and train.images[:, 0].max() < 0.2


def test_celeba_without_partition_limit_and_torchvision_layout(tmp_path):
    make_celeba(tmp_path / "celeba", partition=False)
    train, test = CelebA(root=str(tmp_path), attribute="Smiling", limit=4, crop=178, image_size=8).load()
    assert test is None and len(train) == 4
    assert train.labels.tolist() == [1, 1, 1, 1]
    assert train.images[:, 0].max() > 0.5  # crop 178 keeps the red border


def test_celeba_missing_attribute_file_and_image(tmp_path):
    avail = CelebA(root=str(tmp_path)).availability()
    assert not avail.available and "list_attr_celeba.txt" in avail.detail and "img_align_celeba" in avail.detail
    make_celeba(tmp_path)
    with pytest.raises(DataNotFoundError, match="list_attr_celeba.txt.*'male'.*did you mean 'Male'"):
        CelebA(root=str(tmp_path), attribute="male").load()
    (tmp_path / "img_align_celeba" / "000002.jpg").unlink()
    with pytest.raises(DataNotFoundError, match="000002.jpg"):
        CelebA(root=str(tmp_path)).load()


def test_celeba_truncated_attribute_list(tmp_path):
    make_celeba(tmp_path)
    attrs = tmp_path / "list_attr_celeba.txt"
    attrs.write_text("\n".join(attrs.read_text().splitlines()[:-2]) + "\n")
    with pytest.raises(DataNotFoundError, match="list_attr_celeba.txt.*truncated"):
        CelebA(root=str(tmp_path)).load()


# --------------------------------------------------------------------------- class folders


def make_tree(root: Path) -> None:
    colours = {"cat": (255, 0, 0), "dog": (0, 255, 0), "zebra": (0, 0, 255)}
    for k, (name, colour) in enumerate(colours.items()):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(3 + k):
            img = Image.new("RGB", (40 + 10 * i, 60), colour)
            suffix = ".JPEG" if i % 2 == 0 else ".png"
            img.save(folder / f"img{i}{suffix}")
        (folder / "notes.txt").write_text("not an image")


def test_imagenet_folder_classes_sizes_limit_and_grey(tmp_path):
    make_tree(tmp_path)
    train, test = ImageNetFolder(root=str(tmp_path), image_size=16).load()
    assert test is None
    assert train.class_names == ["cat", "dog", "zebra"]
    assert train.images.shape == (12, 3, 16, 16)
    assert torch.bincount(train.labels).tolist() == [3, 4, 5]
    assert train.images[train.labels == 1, 1].mean() > 0.95  # dog images are green
    limited, _ = ImageNetFolder(root=str(tmp_path), image_size=8, limit_per_class=2, channels=1).load()
    assert limited.images.shape == (6, 1, 8, 8)


def test_imagenet_folder_missing_and_empty_class(tmp_path):
    avail = ImageNetFolder(root=str(tmp_path / "none")).availability()
    assert not avail.available and "one sub-folder per class" in avail.detail
    make_tree(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError, match="empty"):
        ImageNetFolder(root=str(tmp_path)).load()
    (tmp_path / "dog" / "img1.png").write_bytes(b"garbage")
    (tmp_path / "empty").rmdir()
    with pytest.raises(DataNotFoundError, match="img1.png"):
        ImageNetFolder(root=str(tmp_path)).load()


# --------------------------------------------------------------------------- listing


@pytest.fixture
def dataset_registry_only(monkeypatch):
    """The real entry-point registry, with every non-dataset entry point switched off
    before import (importing all generators costs many seconds and is not under test)."""
    ours = {"datasets-embedded", "datasets-folders"}
    others = [ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name not in ours]
    monkeypatch.setenv("PPDS_DISABLE_PLUGINS", ",".join(others))
    reset_registry()
    yield
    reset_registry()


def test_list_datasets_marks_embedded_available_and_folders_with_expected_path(
    tmp_path, monkeypatch, dataset_registry_only
):
    monkeypatch.setenv("PPDS_DATA", str(tmp_path))
    rows = {r["name"]: r for r in list_datasets()}
    for name in ("digits", "mnist5k", "glyphs"):
        assert rows[name]["available"] and rows[name]["embedded"]
    for name in ("mnist", "fashion-mnist", "cifar10", "celeba", "imagenet-folder"):
        assert not rows[name]["available"] and not rows[name]["embedded"]
        assert str(tmp_path / name) in rows[name]["detail"]
    make_mnist(tmp_path / "mnist")
    assert {r["name"]: r for r in list_datasets()}["mnist"]["available"]
