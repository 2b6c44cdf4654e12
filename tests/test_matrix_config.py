"""Invalid matrix configs: each is exit 2 with one line naming the problem, before any work."""

from __future__ import annotations

import copy

import pytest
import yaml
from matrix_fakes import MATRIX, counts, install

from ppds_core.cli import main


@pytest.fixture
def fakes(monkeypatch, tmp_path):
    return install(monkeypatch, tmp_path)


def _write(tmp_path, data, name="m.yaml"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def _bad(tmp_path, capsys, data, *expected):
    path = _write(tmp_path, data)
    code = main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for needle in expected:
        assert needle in lines[0], lines[0]
    assert not (tmp_path / "out" / "results.jsonl").exists()
    assert counts(tmp_path) == []  # nothing fitted or measured
    return lines[0]


def _matrix(**changes):
    m = copy.deepcopy(MATRIX)
    m.update(changes)
    return m


def test_unknown_generator_suggests_the_close_name(fakes, tmp_path, capsys):
    m = _matrix(generators=[{"name": "fake-gan", "epsilons": [1]}])
    _bad(tmp_path, capsys, m, "generators[0].name", "'fake-gan'", "did you mean 'fake-gen'")


def test_unknown_metric_and_dataset_names(fakes, tmp_path, capsys):
    _bad(tmp_path, capsys, _matrix(metrics=[{"name": "fake-gapp"}]), "metrics[0]", "did you mean 'fake-gap'")
    _bad(tmp_path, capsys, _matrix(datasets=[{"name": "tiny-sett"}]), "datasets[0]", "did you mean 'tiny-set'")


def test_negative_epsilon(fakes, tmp_path, capsys):
    m = _matrix(generators=[{"name": "fake-gen", "epsilons": [1, -2]}])
    _bad(tmp_path, capsys, m, "generators[0].epsilons[1]", "epsilon must be > 0")


def test_delta_at_least_one(fakes, tmp_path, capsys):
    _bad(tmp_path, capsys, _matrix(delta=1.0), "delta", "0 < delta < 1")


def test_unknown_top_level_key_suggests(fakes, tmp_path, capsys):
    m = _matrix()
    m["sedes"] = m.pop("seeds")
    _bad(tmp_path, capsys, m, "unknown key 'sedes'", "did you mean 'seeds'")


def test_unknown_key_inside_an_entry_and_plugin_config(fakes, tmp_path, capsys):
    m = _matrix(generators=[{"name": "fake-gen", "epsilon": [1]}])
    _bad(tmp_path, capsys, m, "generators[0].epsilon", "did you mean 'epsilons'")
    m = _matrix(generators=[{"name": "fake-gen", "epsilons": [1], "config": {"stepz": 3}}])
    _bad(tmp_path, capsys, m, "generators[0].config.stepz", "unknown option")


def test_missing_dataset_folder(fakes, tmp_path, capsys):
    m = _matrix(datasets=[{"name": "folder-set", "config": {"root": str(tmp_path / "nope")}}])
    _bad(tmp_path, capsys, m, "datasets[0]", "folder-set", "not available", str(tmp_path / "nope"))


def test_malformed_yaml_names_the_line(fakes, tmp_path, capsys):
    text = "name: x\nseeds: [0\ndatasets:\n  - name: tiny-set\n"
    line = _bad(tmp_path, capsys, text, "malformed YAML", "m.yaml line")
    assert any(f"line {n}" in line for n in (2, 3, 4))


def test_not_a_mapping_and_missing_file(fakes, tmp_path, capsys):
    _bad(tmp_path, capsys, "- just\n- a list\n", "YAML mapping")
    code = main(["run", str(tmp_path / "absent.yaml"), "--check"])
    err = capsys.readouterr().err
    assert code == 2 and "no such matrix file" in err and len(err.strip().splitlines()) == 1


def test_bad_shard_is_exit_2(fakes, tmp_path, capsys):
    path = _write(tmp_path, MATRIX)
    for shard in ("3/2", "0/2", "x"):
        assert main(["run", str(path), "--out", str(tmp_path / "o"), "--shard", shard, "--quiet"]) == 2
        assert "--shard" in capsys.readouterr().err


def test_check_lists_cells_and_runs_nothing(fakes, tmp_path, capsys):
    path = _write(tmp_path, MATRIX)
    assert main(["run", str(path), "--check"]) == 0
    out = capsys.readouterr().out
    # 3 ε × 1 seed for fake-gen, plus the real-data reference of tiny-set
    assert "4 cells would run" in out and "real-data" in out and "fake-gen" in out
    assert counts(tmp_path) == []
    assert not (tmp_path / "out").exists()


def test_public_set_takes_a_name_or_a_name_with_options(tmp_path, capsys):
    from ppds_core.matrix.config import load_matrix

    base = {"datasets": [{"name": "digits", "public": "glyphs"}],
            "generators": [{"name": "dp-gan", "epsilons": [1]}]}
    assert load_matrix(base).datasets[0].public.config.image_size == 8
    with_opts = copy.deepcopy(base)
    with_opts["datasets"][0]["public"] = {"name": "glyphs", "config": {"image_size": 28}}
    assert load_matrix(with_opts).datasets[0].public.config.image_size == 28
    bad = copy.deepcopy(base)
    bad["datasets"][0]["public"] = {"name": "glyphs", "config": {"image_sise": 28}}
    path = _write(tmp_path, bad)
    assert main(["run", str(path), "--check", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "datasets[0].public.config" in err and "image_sise" in err


def test_an_attack_filter_naming_a_generator_not_in_the_matrix(fakes, tmp_path, capsys):
    line = _bad(tmp_path, capsys, _matrix(attacks=[{"name": "fake-mia", "generators": ["fake-ge"]}]),
                "attacks[0].generators[0]", "'fake-ge'", "did you mean 'fake-gen'")
    assert "real-data" in line  # the reference row is a valid choice too


def test_an_attack_filter_naming_an_epsilon_not_in_the_matrix(fakes, tmp_path, capsys):
    _bad(tmp_path, capsys, _matrix(attacks=[{"name": "fake-mia", "epsilons": [10, 5]}]),
         "attacks[0].epsilons[1]", "ε=5 is not in the matrix", "1, 10, inf")
    _bad(tmp_path, capsys, _matrix(metrics=[{"name": "fake-gap", "epsilons": [-1]}]),
         "metrics[0].epsilons[0]")
