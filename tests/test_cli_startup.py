"""Light commands start fast: no torch for parsing, --version, --help, bounds, a cached
`plugins list`; and the plugin cache is never stale (times: benchmarks/bench_startup.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib import metadata
from typing import Literal

import pytest

from ppds_core._plugin_cache import PluginCache
from ppds_core.registry import Registry
from ppds_core.testing import make_plugin_distribution

HEAVY = ("torch", "pytorch_lightning", "opacus", "diffusers", "pandas", "ppds_plugins")

PROBE = textwrap.dedent("""
    import json, sys
    from ppds_core.cli import main
    try:
        code = main(json.loads(sys.argv[1]))
    except SystemExit as exc:
        code = exc.code
    heavy = [m for m in json.loads(sys.argv[2]) if m in sys.modules]
    print("\\nPROBE " + json.dumps({"code": code, "heavy": heavy}))
""")


def probe(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, list[str], str]:
    """Run the CLI in a fresh interpreter: (exit code, heavy modules it imported, stdout)."""
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv), json.dumps(HEAVY)],
                          capture_output=True, text=True, timeout=300, env=env or dict(os.environ))
    assert "PROBE " in done.stdout, done.stderr[-3000:]
    out, _, tail = done.stdout.rpartition("PROBE ")
    result = json.loads(tail)
    return result["code"], result["heavy"], out


@pytest.mark.parametrize("argv", [
    ["--version"],
    ["--help"],
    ["bounds", "rero", "--kappa", "0.01", "--mu", "1"],
    ["bounds", "rero", "--kappa", "0.01", "--epsilon", "1", "--delta", "1e-5"],
    ["bounds", "epsilon", "--noise-multiplier", "1", "--sample-rate", "0.01", "--steps", "100",
     "--delta", "1e-5"],
    ["bounds", "epsilon", "--noise-multiplier", "1", "--sample-rate", "0.01", "--steps", "100",
     "--delta", "1e-5", "--accountant", "rdp", "--json"],
    ["bounds", "rero", "--kappa", "0.01", "--noise-multiplier", "2", "--sample-rate", "0.01",
     "--steps", "10", "--samples", "200", "--json"],
], ids=lambda a: " ".join(a[:2]) + (f" {a[-1]}" if len(a) > 2 else ""))
def test_light_commands_never_import_torch(argv):
    code, heavy, _ = probe(argv)
    assert code == 0
    assert heavy == [], f"`ppds {' '.join(argv)}` imported {heavy}"


def test_import_ppds_core_is_light_and_every_public_name_still_resolves():
    code = ("import sys, ppds_core; heavy = [m for m in ('torch', 'pydantic', 'numpy') if m in sys.modules]; "
            "print(','.join(heavy))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout + done.stderr
    import ppds_core

    for name in ppds_core.__all__:
        assert getattr(ppds_core, name) is not None, name
    from ppds_core import Generator, run_matrix  # noqa: F401 - the lazy names import as before

    assert set(ppds_core.__all__) <= set(dir(ppds_core))
    with pytest.raises(AttributeError):
        ppds_core.no_such_name  # noqa: B018


def test_opacus_analysis_without_torch_gives_opacus_numbers_exactly():
    """The private, torch-free copy of Opacus' analysis and the real import agree to the bit
    (each in a fresh process with the same environment: BLAS threads move the last bits)."""
    from opacus.accountants import RDPAccountant

    from ppds_core.privacy.accountants._opacus import OPACUS_DEFAULT_ALPHAS

    assert OPACUS_DEFAULT_ALPHAS == tuple(float(a) for a in RDPAccountant.DEFAULT_ALPHAS)
    code = textwrap.dedent("""
        import json, sys
        if sys.argv[1] == "real":
            import opacus  # noqa: F401 - then ppds uses opacus' own modules
        from ppds_core.privacy.accounting import dp_sgd_epsilon
        from ppds_core.privacy.accountants._opacus import analysis
        from ppds_core.privacy.bounds import rero_numerical
        out = [dp_sgd_epsilon(1.1, 0.02, 300, 1e-5, a) for a in ("prv", "rdp")]
        out.append(rero_numerical(0.01, [(2.0, 0.01, 50)]))
        print(json.dumps({"module": analysis("prv").__name__, "torch": "torch" in sys.modules,
                          "numbers": [repr(x) for x in out]}))
    """)
    runs = {}
    for how in ("private", "real"):
        done = subprocess.run([sys.executable, "-c", code, how], capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        runs[how] = json.loads(done.stdout)
    assert runs["private"]["module"].startswith("_ppds_opacus.") and not runs["private"]["torch"]
    assert runs["real"]["module"] == "opacus.accountants.analysis.prv"
    assert runs["private"]["numbers"] == runs["real"]["numbers"]


def test_a_cached_plugins_list_imports_no_plugin_and_lists_the_same(tmp_path):
    env = dict(os.environ, PPDS_CACHE_DIR=str(tmp_path / "cache"))
    code, _, cold = probe(["plugins", "list", "--json"], env)
    assert code == 0
    code, heavy, warm = probe(["plugins", "list", "--json"], env)
    assert code == 0 and heavy == [], f"a warm `plugins list` imported {heavy}"
    assert json.loads(warm) == json.loads(cold)
    _, _, fresh = probe(["plugins", "list", "--json", "--no-cache"], env)
    assert json.loads(fresh) == json.loads(cold)


PLUGIN = '''
from ppds_core import Metric, Measurement, hookimpl

class Gap(Metric):
    name = "{name}"
    higher_is_better = False
    needs = frozenset()
    def evaluate(self, ctx):
        return [Measurement(self.name, 0.0)]

@hookimpl
def register_plugins(register):
    register(Gap)
'''


def _eps(site) -> list[metadata.EntryPoint]:
    return [ep for d in metadata.distributions(path=[str(site)]) for ep in d.entry_points
            if ep.group == "ppds"]


def _names(site, folder, monkeypatch) -> tuple[list[str], list[str]]:
    """(names listed through the cache, entry points it imported)."""
    imported: list[str] = []
    real = Registry._load

    def spy(self, ep):
        imported.append(ep.name)
        return real(self, ep)

    monkeypatch.setattr(Registry, "_load", spy)
    for mod in [m for m in sys.modules if m.startswith("ppds_cache_probe")]:
        del sys.modules[mod]
    cache = PluginCache(folder)
    names = [i.name for i in Registry(_eps(site), cache=cache).list()]
    cache.save()
    return names, imported


def test_the_plugin_cache_follows_edits_versions_and_never_keeps_a_broken_plugin(tmp_path, monkeypatch):
    site = make_plugin_distribution(tmp_path / "site", "ppds-cache-probe",
                                    {"ppds_cache_probe": PLUGIN.format(name="gap-one")},
                                    {"probe": "ppds_cache_probe"}, version="1.0")
    monkeypatch.syspath_prepend(str(site))
    folder = tmp_path / "cache"
    assert _names(site, folder, monkeypatch) == (["gap-one"], ["probe"])
    assert _names(site, folder, monkeypatch) == (["gap-one"], [])  # answered by the cache
    module = site / "ppds_cache_probe.py"
    module.write_text(PLUGIN.format(name="gap-renamed"))  # edited in place, same version
    assert _names(site, folder, monkeypatch) == (["gap-renamed"], ["probe"])
    module.write_text("raise ImportError('needs a library that is not installed')\n")
    for _ in range(2):  # a broken entry point is imported, and reported, every time
        names, imported = _names(site, folder, monkeypatch)
        assert names == ["probe"] and imported == ["probe"]
    module.write_text(PLUGIN.format(name="gap-one"))
    _names(site, folder, monkeypatch)
    info = next(site.glob("*.dist-info"))  # a new version of the distribution
    info.rename(site / "ppds_cache_probe-2.0.dist-info")
    meta = site / "ppds_cache_probe-2.0.dist-info" / "METADATA"
    meta.write_text(meta.read_text().replace("Version: 1.0", "Version: 2.0"))
    assert _names(site, folder, monkeypatch) == (["gap-one"], ["probe"])
    assert _names(site, folder, monkeypatch) == (["gap-one"], [])


def test_plugins_show_lists_the_values_of_literal_options():
    from enum import Enum

    from ppds_core import PluginConfig
    from ppds_core.cli.cmd_plugins import option_type

    class Mode(str, Enum):
        fast = "fast"
        slow = "slow"

    class Config(PluginConfig):
        loss: Literal["hinge", "nonsat"] = "hinge"
        sigma: float | Literal["auto"] = "auto"
        mode: Mode = Mode.fast
        steps: int = 3

    schema = Config.model_json_schema()
    props, defs = schema["properties"], schema.get("$defs", {})
    assert option_type(props["loss"], defs) == 'one of: "hinge", "nonsat"'
    assert option_type(props["sigma"], defs) == 'number | one of: "auto"'
    assert option_type(props["mode"], defs) == 'one of: "fast", "slow"'
    assert option_type(props["steps"], defs) == "integer"
