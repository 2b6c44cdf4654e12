"""The matrix file: parse YAML, validate it strictly, resolve plugin names.

A matrix is hours of compute, so every mistake we can see up front (a typo in
a key, an unknown plugin, ε ≤ 0, a dataset folder that is not there) is
reported before anything runs, as one line naming the file, the place and the
fix. The plugin options under ``config:`` are validated by each plugin's own
model, so the file and ``ppds plugins show NAME`` never disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..budget import Delta, Epsilon, format_epsilon
from ..errors import ConfigError, PpdsError, did_you_mean
from ..interfaces import Plugin, PluginConfig
from ..privacy.accounting import check_ledger_accountant
from ..registry import get_registry
from ._resources import Resources
from ._yaml import load_yaml, read_config_text

__all__ = [
    "MatrixConfig",
    "DatasetEntry",
    "GeneratorEntry",
    "EvaluatorEntry",
    "ResolvedPlugin",
    "ResolvedDataset",
    "ResolvedMatrix",
    "load_matrix",
    "parse_yaml",
    "resolve_plugin",
    "Resources",
]


#: generator name of the reference rows that evaluate the private split itself
REAL_DATA = "real-data"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PublicEntry(_Strict):
    name: str = Field(description="dataset plugin name of the public set")
    config: dict[str, Any] = Field(default_factory=dict, description="its own options (root, image_size, …)")


class DatasetEntry(_Strict):
    name: str = Field(description="dataset plugin name (`ppds datasets list`)")
    public: str | PublicEntry | None = Field(
        None, description="public dataset for generators that use one: a name, or {name, config}")
    config: dict[str, Any] = Field(default_factory=dict, description="the dataset's own options")


class _YamlBoolean(ValueError):
    """The boolean refusal (its message keeps pydantic's "Value error, ", as it always read)."""


def _no_booleans(value: Any) -> Any:
    """YAML's true/false are not numbers: `epsilons: [true]` must not become ε = 1."""
    items = value if isinstance(value, list) else [value]
    for i, v in enumerate(items):
        if isinstance(v, bool):
            where = f"[{i}]" if isinstance(value, list) else ""
            raise _YamlBoolean(f"{where} {str(v).lower()} is a YAML boolean, not a number".lstrip())
    return value


#: matrix seeds: non-negative and small enough for every RNG that derives from them
MAX_SEED = 2**31 - 1
#: minutes an evaluation may run before its process is killed and its row is `failed`; an
#: attack that trains shadow models (`needs: shadow-models`) fits generators, which have no limit
EVALUATOR_TIMEOUT_MIN = 60.0


def _timeout_field(what: str, default: str) -> Any:
    return Field(None, gt=0, description=f"minutes {what} may run before its process is killed "
                 f"and recorded as failed (.inf: no limit); default: {default}")


def evaluator_timeout(timeout_min: float | None, needs: frozenset[str]) -> float | None:
    """An evaluator's time limit in minutes (None: no limit): the file's, else the default."""
    if timeout_min is not None:
        return timeout_min if math.isfinite(timeout_min) else None
    return None if "shadow-models" in needs else EVALUATOR_TIMEOUT_MIN


class GeneratorEntry(_Strict):
    name: str = Field(description="generator plugin name")
    epsilons: list[Epsilon] = Field(min_length=1, description="target ε values; inf = non-private")
    config: dict[str, Any] = Field(default_factory=dict, description="the generator's own options")
    timeout_min: float | None = _timeout_field("one fit of this generator", "no limit")
    resources: Resources | None = Field(None, description="what one fit needs on a cluster "
                                        "(`--launcher slurm`: GPU workers for gpus > 0)")

    _check_epsilons = field_validator("epsilons", "timeout_min", mode="before")(_no_booleans)


class EvaluatorEntry(_Strict):
    name: str = Field(description="metric or attack plugin name")
    config: dict[str, Any] = Field(default_factory=dict, description="its own options")
    generators: list[str] | None = Field(
        None, min_length=1, description="run only on these generators' cells (and on the "
        f"{REAL_DATA!r} reference row if listed); default: every cell")
    epsilons: list[Epsilon] | None = Field(
        None, min_length=1, description="run only on generator cells at these ε (the "
        f"{REAL_DATA!r} row is chosen by `generators` alone); default: every ε")
    timeout_min: float | None = _timeout_field(
        "one evaluation", f"{EVALUATOR_TIMEOUT_MIN:g}, no limit for attacks that train shadow models")

    _check_timeout = field_validator("epsilons", "timeout_min", mode="before")(_no_booleans)


class MatrixConfig(_Strict):
    """The top level of a matrix YAML file (docs/architecture.md, "Matrix config")."""

    name: str = "matrix"
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    delta: Delta = 1e-5
    accountant: str = Field("prv", description="accountant that calibrates σ and fills every ledger "
                            "(prv | rdp: both upper-bound ε; gdp under-reports and is refused)")
    reproducible_noise: bool = Field(
        False, description="derive DP noise and Poisson batches from the seed (tests, bit-exact "
        "comparisons); ε then does not hold against a reader of the config, and the board says so")
    samples: int = Field(2000, gt=0, description="synthetic images drawn per cell")
    real_data: bool = Field(True, description="add the 'real-data' reference row (the private split measured and attacked as the release)")
    trainer: dict[str, Any] = Field(default_factory=dict, description="passed to Lightning's Trainer")
    checkpoint_every: int = Field(200, ge=1, description="steps between two checkpoints of a fit "
                                  "(FitContext.checkpoint_every): a killed fit resumes from the last")
    threads: int | None = Field(
        None, ge=1, description="torch CPU threads for this run (default: torch's own choice); "
        "1 is fastest for the tiny models of embedded data")
    datasets: list[DatasetEntry] = Field(min_length=1)
    generators: list[GeneratorEntry] = Field(min_length=1)
    metrics: list[EvaluatorEntry] = Field(default_factory=list)
    attacks: list[EvaluatorEntry] = Field(default_factory=list)

    _check_numbers = field_validator("seeds", "delta", "samples", "threads", "checkpoint_every",
                                     mode="before")(_no_booleans)

    @field_validator("seeds")
    @classmethod
    def _check_seeds(cls, seeds: list[int]) -> list[int]:
        bad = [x for x in seeds if not 0 <= x <= MAX_SEED]
        if bad:
            raise ValueError(f"seed {bad[0]} is out of range; use whole numbers from 0 to {MAX_SEED}")
        twice = sorted({x for x in seeds if seeds.count(x) > 1})
        if twice:
            raise ValueError(f"seed {twice[0]} is listed twice (it would run the same cells twice); keep one")
        return seeds


_MODELS_BY_FIELD: dict[str, type[BaseModel]] = {
    "datasets": DatasetEntry,
    "generators": GeneratorEntry,
    "metrics": EvaluatorEntry,
    "attacks": EvaluatorEntry,
    "resources": Resources,
}


# --------------------------------------------------------------------------- resolved form


@dataclass
class ResolvedPlugin:
    """A plugin named in the file: its class, validated config and version."""

    name: str
    kind: str
    cls: type[Plugin]
    config: PluginConfig
    version: str
    where: str

    #: an evaluator's cell filter (``generators:`` / ``epsilons:`` in the file); None = all
    generators: tuple[str, ...] | None = None
    epsilons: tuple[float, ...] | None = None
    #: minutes one unit of it (a fit, an evaluation) may run; None = no limit
    timeout_min: float | None = None
    #: a generator's cluster resources (``resources:``); None = a CPU worker's
    resources: Resources | None = None

    def config_dict(self) -> dict[str, Any]:
        return self.config.model_dump(mode="json")

    def selects(self, generator: str, epsilon: float) -> bool:
        """Whether this evaluator runs on a cell of ``generator`` at ``epsilon``
        (``generator`` = REAL_DATA for the reference row, which ``epsilons`` ignores)."""
        if self.generators is not None and generator not in self.generators:
            return False
        return generator == REAL_DATA or self.epsilons is None or epsilon in self.epsilons


@dataclass
class ResolvedDataset:
    plugin: ResolvedPlugin
    public: ResolvedPlugin | None


@dataclass
class ResolvedGenerator:
    plugin: ResolvedPlugin
    epsilons: list[float]


@dataclass
class ResolvedMatrix:
    """A validated matrix: every name resolved, every config checked, smoke applied."""

    config: MatrixConfig
    source: str
    smoke: bool
    datasets: list[ResolvedDataset]
    generators: list[ResolvedGenerator]
    evaluators: list[ResolvedPlugin] = field(default_factory=list)

    @property
    def samples(self) -> int:
        # a smoke run checks the plumbing; a few hundred images exercise every metric
        return min(self.config.samples, 256) if self.smoke else self.config.samples

    def plugin_classes(self) -> list[type[Plugin]]:
        """Every plugin class the matrix names (datasets, public sets, generators, evaluators)."""
        found = [p for d in self.datasets for p in (d.plugin, d.public) if p is not None]
        found += [g.plugin for g in self.generators] + self.evaluators
        return [p.cls for p in found]


# --------------------------------------------------------------------------- parsing


def parse_yaml(text: str, source: str) -> dict[str, Any]:
    """The YAML mapping, or a one-line ConfigError with the line number.

    Strict (``_yaml``): duplicate keys, aliases and oversized text are refused.
    """
    data = load_yaml(text, source)
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a matrix file is a YAML mapping (name:, datasets:, generators:, …)")
    return data


def _loc_model(loc: tuple) -> type[BaseModel]:
    """The model that owns the last key in ``loc`` (for did-you-mean on unknown keys)."""
    model: type[BaseModel] = MatrixConfig
    for part in loc[:-1]:
        if isinstance(part, str) and part in _MODELS_BY_FIELD:
            model = _MODELS_BY_FIELD[part]
    return model


def _budget_sentence(e: Any) -> bool:
    """An ε or δ refusal (``ppds_core.budget``: "epsilon must be > 0 …", "delta must satisfy …"):
    shown without pydantic's "Value error, ", as the file's budget errors always read."""
    loc = e["loc"]
    budget_field = loc[-1:] == ("delta",) or loc[-2:-1] == ("epsilons",)
    return (e["type"] == "value_error" and budget_field
            and not isinstance(e.get("ctx", {}).get("error"), _YamlBoolean))


def _format_matrix_error(err: ValidationError, source: str) -> str:
    problems = []
    for e in err.errors():
        loc = e["loc"]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
        if e["type"] == "extra_forbidden":
            key = str(loc[-1])
            hint = did_you_mean(key, _loc_model(loc).model_fields)
            problems.append(f"unknown key {where!r}{hint}")
        elif e["type"] == "missing":
            problems.append(f"missing required key {where!r}")
        elif _budget_sentence(e):
            problems.append(f"{where}: {e['msg'].removeprefix('Value error, ')}")
        else:
            problems.append(f"{where}: {e['msg']}")
    return f"{source}: " + "; ".join(problems)


def resolve_plugin(name: str, kind: str, data: dict[str, Any] | None, *, smoke: bool = False,
                   where: str | None = None, source: str | None = None) -> ResolvedPlugin:
    """Plugin ``name`` of ``kind`` with ``data`` validated by its own model (``smoke``: cut down).

    From a matrix file (``source`` and ``where`` given) every error names the file
    and the place (``m.yaml: generators[0].config.steps: …``); otherwise the
    plugin (``fake-gen.config.steps: …``).
    """
    try:
        info = get_registry().info(name, kind)
    except PpdsError as err:
        if source is None:
            raise
        raise type(err)(f"{source}: {where}.name: {err}") from None
    cls = info.cls
    assert cls is not None
    config = cls.validate_config(data, where=f"{source}: {where}.config" if source else f"{name}.config")
    if smoke:
        config = cls.smoke_config(config)
    return ResolvedPlugin(name, kind, cls, config, info.version, where or name)


def load_matrix(spec: str | Path | dict[str, Any], *, smoke: bool = False) -> ResolvedMatrix:
    """Validate a matrix (a YAML path or an already-parsed dict) and resolve every plugin."""
    if isinstance(spec, dict):
        source, data = "<matrix>", spec
    else:
        path = Path(spec)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"{source}: no such matrix file; pass the path of a YAML matrix config")
        data = parse_yaml(read_config_text(path), source)
    try:  # ε and δ are checked here too (budget.Epsilon / Delta): past this point they are trusted
        cfg = MatrixConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_matrix_error(err, source)) from None
    check_ledger_accountant(cfg.accountant, where=f"{source}: accountant")
    from ..privacy._opacus_lightning import check_trainer_options  # lazy: Lightning is heavy

    check_trainer_options(cfg.trainer, where=f"{source}: trainer")

    datasets = []
    for i, d in enumerate(cfg.datasets):
        where = f"datasets[{i}]"
        plugin = resolve_plugin(d.name, "dataset", d.config, smoke=smoke, where=where, source=source)
        public = None
        if d.public is not None:
            pub = d.public if isinstance(d.public, PublicEntry) else PublicEntry(name=d.public)
            public = resolve_plugin(pub.name, "dataset", pub.config, smoke=smoke, where=f"{where}.public",
                                    source=source)
        datasets.append(ResolvedDataset(plugin, public))

    generators = []
    for i, g in enumerate(cfg.generators):
        where = f"generators[{i}]"
        plugin = resolve_plugin(g.name, "generator", g.config, smoke=smoke, where=where, source=source)
        plugin.timeout_min = g.timeout_min if g.timeout_min is None or math.isfinite(g.timeout_min) else None
        plugin.resources = g.resources
        generators.append(ResolvedGenerator(plugin, list(dict.fromkeys(g.epsilons))))  # each ε once

    evaluators = []
    for kind, entries in (("metric", cfg.metrics), ("attack", cfg.attacks)):
        seen: set[str] = set()
        for i, e in enumerate(entries):
            where = f"{kind}s[{i}]"
            if e.name in seen:
                raise ConfigError(f"{source}: {where}: {kind} {e.name!r} is listed twice; keep one")
            seen.add(e.name)
            ev = resolve_plugin(e.name, kind, e.config, smoke=smoke, where=where, source=source)
            ev.generators, ev.epsilons = _filters(e, generators, where, source)
            ev.timeout_min = evaluator_timeout(e.timeout_min, frozenset(getattr(ev.cls, "needs", ())))
            evaluators.append(ev)
    return ResolvedMatrix(cfg, source, smoke, datasets, generators, evaluators)


def _filters(e: EvaluatorEntry, generators: list[ResolvedGenerator], where: str,
             source: str) -> tuple[tuple[str, ...] | None, tuple[float, ...] | None]:
    """An evaluator's ``generators`` / ``epsilons`` filter, checked against the matrix."""
    names = [g.plugin.name for g in generators]
    chosen = names
    if e.generators is not None:
        for j, name in enumerate(e.generators):
            if name not in names and name != REAL_DATA:
                raise ConfigError(
                    f"{source}: {where}.generators[{j}]: {name!r} is not a generator of this matrix "
                    f"(it has {names + [REAL_DATA]}){did_you_mean(name, names + [REAL_DATA])}")
        chosen = [n for n in names if n in e.generators]
    if e.epsilons is None:
        return (tuple(e.generators) if e.generators is not None else None), None
    available = sorted({eps for g in generators if g.plugin.name in chosen for eps in g.epsilons})
    epsilons: list[float] = []
    for j, eps in enumerate(e.epsilons):
        if eps not in available:
            raise ConfigError(
                f"{source}: {where}.epsilons[{j}]: ε={format_epsilon(eps, 'ascii')} is not in the matrix "
                f"(its generators{' chosen here' if e.generators else ''} run ε = "
                f"{', '.join(format_epsilon(x, 'ascii') for x in available) or 'none'})")
        epsilons.append(eps)
    return (tuple(e.generators) if e.generators is not None else None), tuple(epsilons)

