"""Bad data, oversized images, costly bounds and read-only folders (issue 20): one line on
stderr naming the file or the number at fault and the fix, a clean exit code, no traceback."""

from __future__ import annotations

import copy
import errno
import json
import os
import pickle

import numpy as np
import pytest
import yaml
from matrix_fakes import MATRIX, first_party_entry_points, install

from ppds_core.cli import main
from ppds_core.matrix import read_results


def _one_line(capsys, argv, code=2) -> str:
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def datasets(monkeypatch, tmp_path):
    """The fake generator and metrics, plus this package's real dataset plugins."""
    from ppds_core import reset_registry

    install(monkeypatch, tmp_path)
    keep = {"datasets-embedded", "datasets-folders"}
    monkeypatch.setenv("PPDS_DISABLE_PLUGINS",
                       ",".join(n for n in first_party_entry_points().split(",") if n not in keep))
    reset_registry()
    return tmp_path


def _fit(tmp_path, dataset, dataset_config) -> list[str]:
    return ["fit", "fake-gen", "--dataset", dataset, "--dataset-config", json.dumps(dataset_config),
            "--epsilon", "inf", "--samples", "10", "--out", str(tmp_path / "fit"), "--quiet"]


# --------------------------------------------------------------------------- loaders


def _cifar_folder(root, data=None, labels=None):
    """A CIFAR-10 python-batch folder of 10 images per batch; ``data`` / ``labels`` replace the
    test batch's entries."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (10, 3072), dtype=np.uint8), "labels": list(range(10))}
        if name == "test_batch":
            batch |= {k: v for k, v in (("data", data), ("labels", labels)) if v is not None}
        (root / name).write_bytes(pickle.dumps(batch))
    (root / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    return root


@pytest.mark.parametrize("data, labels, match", [
    ([[0] + [300] * 3071] * 10, None, "pixel values range 0..300, outside 0..255"),  # a list: was OverflowError
    (np.full((10, 3072), 300, dtype=np.int64), None, "outside 0..255"),  # an array: was wrapped to 44
    (np.full((10, 3072), 0.5), None, "pixel values are floats"),
    (None, ["cat"] * 10, "labels are strings (e.g. 'cat'), expected integers 0..9; class names belong"),
    (None, [str(i) for i in range(10)], "labels are strings"),  # "3" is not silently parsed as 3
])
def test_a_bad_cifar_batch_names_the_file_and_the_fix(datasets, capsys, data, labels, match):
    root = _cifar_folder(datasets / "cifar", data, labels)
    err = _one_line(capsys, _fit(datasets, "cifar10", {"root": str(root)}))
    assert match in err and str(root / "test_batch") in err


def test_a_good_cifar_batch_still_loads(datasets, capsys):
    root = _cifar_folder(datasets / "cifar")
    assert main(_fit(datasets, "cifar10", {"root": str(root), "private": 20, "holdout": 20, "test": 10})) == 0
    assert (datasets / "fit" / "samples.npz").exists()


@pytest.mark.parametrize("side, pixels", [(10_000, "100,000,000 pixels"),  # Pillow's warning band
                                          (20_000, "400,000,000 pixels"),  # Pillow's error band
                                          (8_200, "8200×8200 = 67,240,000 pixels")])  # ppds' own limit
def test_a_decompression_bomb_png_is_refused_naming_the_file_and_its_pixels(datasets, capsys, side, pixels):
    from PIL import Image

    folder = datasets / "tree" / "cls"
    folder.mkdir(parents=True)
    Image.new("1", (side, side)).save(folder / "bomb.png")  # a few kB on disk
    err = _one_line(capsys, _fit(datasets, "imagenet-folder", {"root": str(datasets / "tree")}))
    assert str(folder / "bomb.png") in err and pixels in err and "remove the file" in err


# --------------------------------------------------------------------------- image_size


def _digits_matrix(tmp_path, image_size):
    cfg = tmp_path / "m.yaml"
    cfg.write_text(yaml.safe_dump({
        "datasets": [{"name": "digits", "config": {"image_size": image_size}}],
        "generators": [{"name": "fake-gen", "epsilons": ["inf"]}], "metrics": [{"name": "fake-gap"}]}))
    return str(cfg)


def test_an_image_size_too_large_for_the_memory_is_refused_up_front(datasets, monkeypatch, capsys):
    from ppds_plugins.datasets import _common

    monkeypatch.setattr(_common, "available_memory", lambda: 4 * 2**30)
    cfg = _digits_matrix(datasets, 1024)
    for argv in (["run", cfg, "--check"], ["run", cfg, "--out", str(datasets / "out"), "--quiet"],
                 _fit(datasets, "digits", {"image_size": 1024})):
        err = _one_line(capsys, argv)
        # 1797 × 1×1024×1024 × 4 bytes, the limit and the largest side that fits 2 GiB
        assert "image_size 1024 makes its 1,797 images 7.0 GiB" in err, err
        assert "half of the 4.0 GiB" in err and "use image_size 546 or less" in err
    assert not (datasets / "out").exists() and not (datasets / "fit").exists()  # nothing was started
    # with enough memory the same size passes the estimate (asked directly: `run --check` would
    # then load the 7 GiB set, and this test must not need that much memory itself)
    monkeypatch.setattr(_common, "available_memory", lambda: 64 * 2**30)
    assert _common.memory_problem("digits", 1797, 1, 1024) is None
    assert main(["run", _digits_matrix(datasets, 32), "--check", "--quiet"]) == 0


def test_an_image_size_that_would_overflow_is_one_line(datasets, capsys):
    err = _one_line(capsys, _fit(datasets, "digits", {"image_size": 10**12}))
    assert "image_size" in err and "1024" in err


def test_a_diffusion_image_size_that_would_overflow_is_one_line(tmp_path, capsys):
    argv = ["fit", "dp-diffusion", "--dataset", "digits", "--config", json.dumps({"image_size": 10**12}),
            "--epsilon", "inf", "--out", str(tmp_path / "fit"), "--quiet"]
    err = _one_line(capsys, argv)
    assert "dp-diffusion.config.image_size" in err and "1024" in err


# --------------------------------------------------------------------------- bounds rero

RERO = ["bounds", "rero", "--kappa", "0.01", "--noise-multiplier", "1", "--sample-rate", "0.01"]


def test_a_rero_bound_that_would_run_for_hours_is_refused_naming_the_estimate(capsys):
    err = _one_line(capsys, RERO + ["--steps", str(10**6)])
    assert "would take about" in err and "2 × 100,000 × 1,000,000 draws" in err
    assert "over --max-minutes 10" in err and "lower --samples (--samples " in err
    # the cap is the user's to move: a tiny one refuses even a small bound
    assert "over --max-minutes 0.0001" in _one_line(capsys, RERO + ["--steps", "10", "--samples", "100",
                                                                    "--max-minutes", "0.0001"])


def test_a_long_rero_bound_is_announced_and_its_numbers_do_not_change(monkeypatch, capsys):
    from ppds_core.cli import cmd_bounds

    argv = RERO + ["--steps", "20", "--samples", "400", "--json"]
    assert main(argv) == 0
    quiet = capsys.readouterr()
    assert quiet.err == ""  # a second's bound says nothing
    monkeypatch.setattr(cmd_bounds, "_NOTE_SECONDS", 0.0)  # as if it were long
    assert main(argv) == 0
    loud = capsys.readouterr()
    assert loud.err.startswith("ppds: this bound takes about ") and "Traceback" not in loud.err
    assert json.loads(loud.out) == json.loads(quiet.out)


def test_the_monte_carlo_reports_every_draw_to_its_progress_callback():
    from ppds_core.privacy.bounds import rero_dpsgd

    seen = []
    with_bar = rero_dpsgd(0.01, 1.0, 0.01, 3000, samples=300, progress=seen.append)
    assert sum(seen) == 2 * 300 * 3000 and len(seen) > 2
    assert with_bar == rero_dpsgd(0.01, 1.0, 0.01, 3000, samples=300)


# --------------------------------------------------------------------------- read-only folders


def _read_only(monkeypatch, folder, code=errno.EROFS):
    """Make every write, create, rename or delete under ``folder`` fail with ``code``.

    The tests run as root, for whom chmod blocks nothing, and a read-only bind mount needs
    privileges a test does not have; so the system calls are refused in-process (forked
    units inherit the patches). Reads, and writes through descriptors already open, still work.
    """
    import builtins
    import io
    import shutil

    root = os.path.realpath(folder)

    def under(path) -> bool:
        if isinstance(path, int):
            return False
        p = os.path.realpath(os.fsdecode(path))
        return p == root or p.startswith(root + os.sep)

    def refuse(path):
        raise OSError(code, os.strerror(code), os.fsdecode(path))

    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    real_os_open, real_open = os.open, builtins.open

    def os_open(path, flags, *a, **k):
        if flags & writes and under(path):
            refuse(path)
        return real_os_open(path, flags, *a, **k)

    def py_open(file, mode="r", *a, **k):
        if any(c in mode for c in "wax+") and under(file):
            refuse(file)
        return real_open(file, mode, *a, **k)

    def guard(real, *paths_at):
        def call(*args, **kwargs):
            for i in paths_at:
                if len(args) > i and under(args[i]):
                    refuse(args[i])
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(builtins, "open", py_open)
    monkeypatch.setattr(io, "open", py_open)
    for name, paths_at in (("mkdir", (0,)), ("replace", (0, 1)), ("rename", (0, 1)), ("unlink", (0,)),
                           ("remove", (0,)), ("rmdir", (0,)), ("symlink", (1,)), ("chmod", (0,))):
        monkeypatch.setattr(os, name, guard(getattr(os, name), *paths_at))
    monkeypatch.setattr(shutil, "rmtree", guard(shutil.rmtree, 0))


def _fake_matrix(tmp_path) -> str:
    cfg = tmp_path / "m.yaml"
    cfg.write_text(yaml.safe_dump(copy.deepcopy(MATRIX)))
    return str(cfg)


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
@pytest.mark.parametrize("fresh", [True, False])
def test_ppds_run_into_a_read_only_folder_is_one_line(monkeypatch, tmp_path, capsys, code, fresh):
    install(monkeypatch, tmp_path)
    cfg, out = _fake_matrix(tmp_path), tmp_path / "out"
    if not fresh:  # a finished run folder, made read-only
        assert main(["run", cfg, "--out", str(out), "--quiet"]) == 0
    else:
        out.mkdir()
    before = sorted(p.name for p in out.iterdir())
    _read_only(monkeypatch, out, code)
    err = _one_line(capsys, ["run", cfg, "--out", str(out), "--quiet"])
    assert str(out) in err and os.strerror(code) in err and "pass a folder you can write to" in err
    assert sorted(p.name for p in out.iterdir()) == before


def test_ppds_run_under_a_read_only_parent_is_one_line(monkeypatch, tmp_path, capsys):
    install(monkeypatch, tmp_path)
    cfg = _fake_matrix(tmp_path)
    _read_only(monkeypatch, tmp_path / "ro")
    err = _one_line(capsys, ["run", cfg, "--out", str(tmp_path / "ro" / "new"), "--quiet"])
    assert "cannot create the output folder" in err and "Read-only file system" in err


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
@pytest.mark.parametrize("when", ["between cells", "inside a fit"])
def test_a_folder_turning_read_only_mid_run_stops_it_in_one_line_and_a_rerun_resumes(
        monkeypatch, tmp_path, capsys, code, when):
    install(monkeypatch, tmp_path)
    from ppds_core.matrix import runner

    cfg, out = _fake_matrix(tmp_path), tmp_path / "out"
    method = "run_cell" if when == "between cells" else "_write_cell_json"
    real, calls = getattr(runner._Runner, method), {"n": 0}

    def turn_read_only(self, *args):
        calls["n"] += 1
        if calls["n"] == 2 and when == "between cells":  # remounted read-only after the first cell
            _read_only(monkeypatch, out, code)
        result = real(self, *args)
        if calls["n"] == 2 and when == "inside a fit":  # ... after the cell folder was made: the fit fails
            _read_only(monkeypatch, out, code)
        return result

    monkeypatch.setattr(runner._Runner, method, turn_read_only)
    err = _one_line(capsys, ["run", cfg, "--out", str(out), "--quiet"], code=1)
    assert os.strerror(code) in err and "make the folder writable and run the same command again" in err
    assert "MiB free" not in err and "free space" not in err  # it is not a full disk
    done = read_results(out)
    assert done and not list(out.rglob("*.partial"))  # no temporary file left behind
    monkeypatch.undo()
    install(monkeypatch, tmp_path)
    assert main(["run", cfg, "--out", str(out), "--quiet"]) == 0
    rows = read_results(out)
    keys = [(r["cell"], r["name"]) for r in rows]
    assert len(keys) == len(set(keys)) and {(r["cell"], r["name"]) for r in done} <= set(keys)
    assert all(r["status"] in ("ok", "skipped") for r in rows)


def test_leaderboard_reads_a_read_only_folder_and_refuses_to_write_into_one(monkeypatch, tmp_path, capsys):
    install(monkeypatch, tmp_path)
    out = tmp_path / "out"
    assert main(["run", _fake_matrix(tmp_path), "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    _read_only(monkeypatch, out)
    assert main(["leaderboard", str(out)]) == 0
    assert main(["leaderboard", str(out), "--format", "html"]) == 0
    assert "fake-gen" in capsys.readouterr().out
    err = _one_line(capsys, ["leaderboard", str(out), "--format", "md", "-o", str(out / "board.md")])
    assert "--output" in err and "Read-only file system" in err and not (out / "board.md").exists()


# --------------------------------------------------------------------------- DDP fits' timeout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie is gone for all purposes
        return fh.read().split(") ")[-1][0] != "Z"


def test_a_hanging_ddp_fit_is_killed_at_its_generators_timeout_and_fails_its_cell(monkeypatch, tmp_path):
    import time

    from ppds_core.matrix import run_matrix

    site = install(monkeypatch, tmp_path)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("PPDS_FAKE_PID", str(tmp_path / "hung.pid"))
    matrix = {"name": "ddp-timeout", "seeds": [0], "samples": 10, "real_data": False,
              "datasets": [{"name": "tiny-set"}],
              "trainer": {"accelerator": "cpu", "devices": 2, "strategy": "ddp"},  # → worker processes
              "generators": [{"name": "fake-bad-gen", "epsilons": ["inf"], "config": {"how": "hang"},
                              "timeout_min": 0.3},  # the worker starts (imports torch) in ~5 s
                             {"name": "fake-gen", "epsilons": ["inf"], "config": {"steps": 1}}],
              "metrics": [{"name": "fake-gap"}]}
    t0 = time.monotonic()
    summary = run_matrix(matrix, tmp_path / "out")
    assert time.monotonic() - t0 < 120  # not the fake's hour-long sleep
    rows = {r["generator"]: r for r in read_results(tmp_path / "out")}
    assert rows["fake-bad-gen"]["status"] == "failed"
    assert "timed out after 0.3 min (timeout_min)" in rows["fake-bad-gen"]["error"]
    assert rows["fake-gen"]["status"] == "ok" and summary.exit_code == 1
    hung = int((tmp_path / "hung.pid").read_text())
    assert not _alive(hung)  # the worker's group was killed, not left behind
