"""Plugin discovery through the `ppds` entry-point group, including a broken third party."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ppds_core import (
    BrokenPluginError,
    PluginClashError,
    PluginNotFoundError,
    get_plugin,
    get_registry,
    list_plugins,
)
from ppds_core.testing import make_plugin_distribution, plugin_path

GOOD = """
from ppds_core import hookimpl, Metric, Measurement

class ConstantMetric(Metric):
    name = "constant-metric"
    higher_is_better = True
    def evaluate(self, ctx):
        return [Measurement(self.name, 1.0, True)]

@hookimpl
def register_plugins(register):
    register(ConstantMetric)
"""
BROKEN_IMPORT = "import this_module_does_not_exist_anywhere\n"
BROKEN_HOOK = """
from ppds_core import hookimpl

@hookimpl
def register_plugins(register, unexpected_argument):
    pass
"""
RAISES = """
from ppds_core import hookimpl

@hookimpl
def register_plugins(register):
    raise RuntimeError("boom at registration")
"""
NOT_A_PLUGIN = """
from ppds_core import hookimpl

@hookimpl
def register_plugins(register):
    register(dict)
"""


@pytest.fixture
def third_party(tmp_path):
    return make_plugin_distribution(
        tmp_path / "site",
        "ppds-thirdparty",
        {"tp_good": GOOD, "tp_broken": BROKEN_IMPORT, "tp_badhook": BROKEN_HOOK,
         "tp_raises": RAISES, "tp_notplugin": NOT_A_PLUGIN},
        {"good": "tp_good", "broken": "tp_broken", "badhook": "tp_badhook",
         "raises": "tp_raises", "notplugin": "tp_notplugin"},
        version="1.2.3",
    )


def _by_name(rows):
    return {r.name: r for r in rows}


def test_first_party_datasets_register_through_entry_points():
    rows = _by_name(list_plugins())
    for name in ("digits", "mnist5k", "glyphs"):
        assert rows[name].status == "ok", rows[name].error
        assert rows[name].kind == "dataset"
        assert rows[name].distribution == "ppds"


def test_third_party_good_and_broken_plugins(third_party):
    with plugin_path(third_party):
        rows = _by_name(list_plugins())
        good = rows["constant-metric"]
        assert (good.status, good.kind, good.distribution, good.version) == (
            "ok", "metric", "ppds-thirdparty", "1.2.3")
        assert get_plugin("constant-metric").higher_is_better is True
        assert rows["broken"].status == "broken"
        assert "this_module_does_not_exist_anywhere" in rows["broken"].error
        assert rows["badhook"].status == "broken" and "unexpected_argument" in rows["badhook"].error
        assert rows["raises"].status == "broken" and "boom at registration" in rows["raises"].error
        assert rows["notplugin"].status == "broken" and "subclass" in rows["notplugin"].error
        # the host keeps working: first-party plugins are still there
        assert rows["digits"].status == "ok"
        with pytest.raises(BrokenPluginError, match="this_module_does_not_exist"):
            get_plugin("broken")


def test_name_clash_names_both_distributions(tmp_path):
    a = make_plugin_distribution(tmp_path / "a", "ppds-alpha", {"clash_a": GOOD}, {"m": "clash_a"})
    b = make_plugin_distribution(tmp_path / "b", "ppds-beta", {"clash_b": GOOD}, {"m": "clash_b"})
    with plugin_path(a), plugin_path(b):
        with pytest.raises(PluginClashError) as err:
            get_plugin("constant-metric")
        assert "ppds-alpha" in str(err.value) and "ppds-beta" in str(err.value)
        statuses = [r.status for r in list_plugins() if r.name == "constant-metric"]
        assert statuses == ["broken", "broken"]


def test_unknown_name_suggests_close_match():
    with pytest.raises(PluginNotFoundError, match="did you mean 'digits'"):
        get_plugin("digitz")
    with pytest.raises(PluginNotFoundError, match="unknown dataset plugin"):
        get_plugin("zzzzzz", "dataset")


def test_disable_and_allow_lists(third_party, monkeypatch):
    with plugin_path(third_party):
        monkeypatch.setenv("PPDS_DISABLE_PLUGINS", "broken,constant-metric")
        from ppds_core import reset_registry

        reset_registry()
        names = {r.name for r in list_plugins()}
        assert "broken" not in names and "constant-metric" not in names and "digits" in names
        monkeypatch.setenv("PPDS_DISABLE_PLUGINS", "*")
        reset_registry()
        assert list_plugins() == []
        monkeypatch.delenv("PPDS_DISABLE_PLUGINS")
        monkeypatch.setenv("PPDS_ENABLE_PLUGINS", "good")
        reset_registry()
        assert {r.name for r in list_plugins()} == {"constant-metric"}


def test_cli_lists_broken_plugin_and_exits_zero(third_party):
    env = dict(os.environ, PYTHONPATH=str(third_party))
    out = subprocess.run(
        [sys.executable, "-m", "ppds_core.cli", "plugins", "list", "--json"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["broken"]["status"] == "broken" and rows["broken"]["error"]
    assert rows["constant-metric"]["status"] == "ok"
    assert rows["digits"]["status"] == "ok"


def test_registry_is_cached_per_process():
    assert get_registry() is get_registry()
