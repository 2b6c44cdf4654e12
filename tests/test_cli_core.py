"""The stable CLI surface of the core: version, plugins, datasets, exit codes."""

from __future__ import annotations

import json

import pytest

from ppds_core import __version__
from ppds_core.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"ppds {__version__}"


def test_plugins_list_json(capsys):
    code, out, _ = run(capsys, "plugins", "list", "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    for name in ("digits", "mnist5k", "glyphs", "mnist", "fashion-mnist", "cifar10", "celeba"):
        assert rows[name]["status"] == "ok", rows[name]
        assert set(rows[name]) >= {"name", "kind", "distribution", "version", "status", "error"}


def test_plugins_show_json_has_schema_defaults_capabilities(capsys):
    code, out, _ = run(capsys, "plugins", "show", "digits", "--json")
    assert code == 0
    d = json.loads(out)
    assert d["kind"] == "dataset"
    assert "private" in d["config_schema"]["properties"]
    assert "split_seed" in d["defaults"]
    assert d["capabilities"]["embedded"] is True


def test_plugins_show_human(capsys):
    code, out, _ = run(capsys, "plugins", "show", "glyphs")
    assert code == 0 and "glyphs" in out and "capabilities" in out


def test_unknown_plugin_is_exit_2_with_suggestion(capsys):
    code, out, err = run(capsys, "plugins", "show", "digitz")
    assert code == 2
    assert "did you mean 'digits'" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_datasets_list_availability(capsys):
    code, out, _ = run(capsys, "datasets", "list", "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    for name in ("digits", "mnist5k", "glyphs"):
        assert rows[name]["available"] is True and rows[name]["embedded"] is True
    for name in ("mnist", "cifar10"):
        assert rows[name]["available"] is False
        assert "/" in rows[name]["detail"], "an unavailable folder dataset names the path it expects"


def test_bad_usage_is_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["plugins", "frobnicate"])
    assert exc.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_light_commands_do_not_import_the_training_stack():
    """`ppds --version`, `bounds` and `leaderboard` must start fast: no Lightning, no runner."""
    import subprocess
    import sys

    code = ("import sys; from ppds_core.cli import build_parser; build_parser(); import ppds_core; "
            "heavy = [m for m in ('pytorch_lightning', 'opacus', 'diffusers', 'pandas') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"imported at start-up: {out.stdout.strip()}"
