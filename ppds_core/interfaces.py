"""The four plugin kinds: Generator, Metric, Attack, DatasetProvider.

A plugin is a class with a ``name``, a pydantic ``Config`` (``extra="forbid"``,
so a typo in a matrix file is an error, not a silently ignored option) and
class-level capabilities the runner reads *before* running anything: whether a
generator trains with DP-SGD, whether a metric is higher-is-better, what a
measurement needs from a cell. Everything a plugin receives at run time comes
in one context object, so the interfaces can grow without breaking plugins.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .budget import PrivacyBudget
from .device import resolve_device
from .errors import ConfigError, did_you_mean
from .imageset import ImageSet, Splits, SplitSizes, make_splits
from .privacy.ledger import Ledger

__all__ = ["PluginConfig", "Plugin", "Generator", "FitContext", "Metric", "Attack", "EvalContext",
           "Measurement", "DatasetProvider", "DatasetConfig", "Availability", "format_validation_error"]


class PluginConfig(BaseModel):
    """Base of every plugin's options: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


def _options_at(model: type[BaseModel] | None, loc: tuple) -> list[str]:
    """The option names of the (nested) model that owns the last key of ``loc``."""
    for part in loc[:-1]:
        field_info = model.model_fields.get(part) if model is not None and isinstance(part, str) else None
        inner = field_info.annotation if field_info is not None else None
        model = inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None
    return list(model.model_fields) if model is not None else []


def format_validation_error(err: ValidationError, where: str, model: type[BaseModel] | None = None) -> str:
    """One line per problem, each naming the key path: 'where.key: message'; an unknown
    option of ``model`` gets a "did you mean" when a known one is close."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown option" + did_you_mean(str(e["loc"][-1]), _options_at(model, tuple(e["loc"])))
        lines.append(f"{where}{'.' + loc if loc else ''}: {msg}")
    return "; ".join(lines)


def _non_finite(value: Any, path: str = "") -> tuple[str, float] | None:
    """The first (key path, value) of a non-finite float in a config dump, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return path, value
    items = value.items() if isinstance(value, dict) else (
        enumerate(value) if isinstance(value, list | tuple) else ())
    for k, v in items:
        found = _non_finite(v, f"{path}.{k}" if path else str(k))
        if found:
            return found
    return None


class Plugin(ABC):
    """Common ground: name, kind, validated config, capabilities."""

    name: ClassVar[str]
    kind: ClassVar[str]
    Config: ClassVar[type[PluginConfig]] = PluginConfig
    description: ClassVar[str] = ""

    def __init__(self, config: PluginConfig | dict[str, Any] | None = None, **options: Any):
        if isinstance(config, PluginConfig):
            if options:
                config = config.model_copy(update=options)
            self.config = self.Config.model_validate(config.model_dump())
        else:
            self.config = self.validate_config({**(config or {}), **options})

    @classmethod
    def validate_config(cls, data: dict[str, Any] | None, where: str | None = None) -> PluginConfig:
        """The plugin's ``Config`` from a dict, or a ConfigError naming each bad key."""
        try:
            config = cls.Config.model_validate(data or {})
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, where or f"{cls.name}.config", cls.Config)) from None
        bad = _non_finite(config.model_dump())
        if bad:
            key, value = bad
            raise ConfigError(f"{where or f'{cls.name}.config'}.{key}: must be a finite number, got {value} "
                              "(an infinite or NaN option trains NaN weights)")
        return config

    @classmethod
    def capabilities(cls) -> dict[str, Any]:
        """What the runner and `ppds plugins show` need to know up front."""
        return {}

    @classmethod
    def smoke_config(cls, config: PluginConfig) -> PluginConfig:
        """The same recipe cut to a few steps, for ``ppds run --smoke``."""
        return config

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.config!r}>"


# --------------------------------------------------------------------------- generators


@dataclass
class FitContext:
    """Everything a generator may use while fitting, besides the private data.

    ``public`` is a *different* dataset anyone may use (PrivImage pretrains on
    it); ``trainer`` is passed to Lightning's ``Trainer`` (devices, strategy,
    num_nodes); ``progress(step, total, info)`` reports training progress.
    ``seed`` seeds everything that is *not* a privacy mechanism (initialisation,
    latents, image sampling); DP noise and Poisson batches come from OS entropy
    unless ``reproducible_noise`` (docs/privacy-accounting.md, "Threat model").
    """

    seed: int = 0
    public: ImageSet | None = None
    trainer: dict[str, Any] = field(default_factory=dict)
    workdir: Path | None = None
    accountant: str = "prv"
    progress: Callable[[int, int, dict[str, Any]], None] | None = None
    #: derive DP noise and Poisson batches from ``seed`` instead of OS entropy (tests,
    #: bit-exact comparisons); ε then does not hold against a reader of the config.
    #: Draw a mechanism's randomness with ``ppds_core.privacy.mechanism_generator``.
    reproducible_noise: bool = False
    #: ``"cpu"`` or ``"cuda"``: where sampling and non-private work run. The runner resolves it
    #: once per run from ``trainer`` (:func:`ppds_core.device.resolve_device`: CPU unless
    #: ``accelerator`` asks for a GPU); None resolves it from this context's ``trainer``.
    device: str | None = None
    #: a folder that outlives the fit's process (the runner passes ``<cell>/checkpoint``): a
    #: generator that can resume saves its state there every ``checkpoint_every`` steps and
    #: continues from one of the same plan, so a killed fit loses at most that many steps and
    #: its ledger equals an uninterrupted fit's (docs/dp-sgd-engine.md). None: no checkpoints.
    checkpoint_dir: Path | None = None
    #: private (or non-private) optimisation steps between two checkpoints
    checkpoint_every: int = 200

    def __post_init__(self) -> None:
        if self.device is None:
            self.device = resolve_device(self.trainer)


class Generator(Plugin):
    """A (DP) image generator: fit on private data under a budget, then sample.

    Contract:
    - ``fit`` trains from scratch, spends at most ``budget`` and returns the
      model's :class:`Ledger` (also kept on ``self.ledger``). ``epsilon=inf``
      runs the identical recipe without clipping or noise.
    - ``sample(n, seed=…)`` is deterministic for a seed and class-balanced
      unless ``labels`` are given.
    - ``save(dir)`` / ``load(dir)`` round-trip a fitted model and its ledger.
    - A fresh instance with the same config (``fresh()``) is what membership
      attacks train as shadow models.
    """

    kind: ClassVar[str] = "generator"
    #: trains with the core's DP-SGD engine, so its (σ, C, q, T) are on the ledger after fit
    #: (``True``), or privatises its data another way, e.g. one Gaussian release recorded with
    #: ``ppds_core.privacy.gaussian_release`` (``False``). No default: every generator says,
    #: because DP-SGD attacks and bounds (audit, ReRo) apply only to the first kind; the
    #: registry marks a generator that does not say as broken.
    trains_with_dp_sgd: ClassVar[bool]
    #: consumes ``FitContext.public``
    uses_public_data: ClassVar[bool] = False
    #: samples images of a requested class (``sample(labels=...)``); a generator that cannot
    #: sets ``False``, and evaluators whose ``needs`` include ``labels`` are skipped for it
    class_conditional: ClassVar[bool] = True

    def __init__(self, config=None, **options):
        super().__init__(config, **options)
        self.ledger: Ledger | None = None
        #: what the fit reports about itself (steps taken, the grad-sample mode in use, …):
        #: JSON-safe values; the matrix copies it into the cell's ``fit.json``
        self.train_info: dict[str, Any] = {}

    @classmethod
    def capabilities(cls) -> dict[str, Any]:
        return {
            "trains_with_dp_sgd": getattr(cls, "trains_with_dp_sgd", None),
            "uses_public_data": cls.uses_public_data,
            "class_conditional": cls.class_conditional,
        }

    @abstractmethod
    def fit(self, private: ImageSet, budget: PrivacyBudget, ctx: FitContext) -> Ledger:
        """Train on ``private`` within ``budget``; return the ledger."""

    @abstractmethod
    def sample(self, n: int, *, seed: int = 0, labels=None) -> ImageSet:
        """``n`` images in canonical form, class-balanced unless ``labels`` given."""

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write the fitted model (and its ledger) into ``directory``."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path) -> Generator:
        """Read back what ``save`` wrote."""

    def dp_sgd_recipe(self, private: ImageSet, budget: PrivacyBudget,
                      ctx: FitContext) -> tuple[Any, Any] | None:
        """Optional: the ``(DPSGDModule, DPSGDPlan)`` that ``fit`` hands the engine, freshly
        built (untrained), or None. ``fit`` must build its own pair with the same code,
        so the two cannot drift. ``dpsgd-audit`` trains that module's own parameters
        through the engine with canary losses (CONTRIBUTING.md, "The DP-SGD recipe");
        without a recipe it falls back to a reference module and says so in its rows.
        """
        return None


# --------------------------------------------------------------------------- metrics & attacks


@dataclass
class Measurement:
    """One measured value; becomes one row of results.jsonl.

    ``extra`` holds additional keys for that row (``ci_low``, ``ci_high``,
    ``tpr_at_fpr``, …; a key named like a column of the row is stored as
    ``extra_<key>``, see :class:`ppds_core.matrix.ResultRow`). ``name``
    defaults to the plugin's name; a plugin that measures several things
    (precision *and* recall) returns one per thing.

    ``headline`` marks the few numbers a reader should see first: an attack
    reports many (AUC, TPR at several FPRs, ε bounds …), and the leaderboard's
    compact attack table shows only the headlines. When none of the
    measurements one ``evaluate`` returns sets it, the first one is the
    headline, so a plugin that never heard of the flag still shows up.

    ``role="violation"`` marks a claim check: ``1.0`` when the measurement beat
    what the privacy accounting promises (an empirical ε lower bound above the
    ε spent, a reconstruction rate above its ReRo bound), ``0.0`` otherwise.
    The leaderboard lists every raised one above its tables and never hides
    its column, whatever the measurement is called.
    """

    name: str
    value: float
    higher_is_better: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    headline: bool = False
    role: Literal["value", "violation"] = "value"

    def __post_init__(self) -> None:
        self.value = float(self.value)
        if math.isnan(self.value):
            raise ValueError(f"measurement {self.name!r} is NaN")
        if self.role not in ("value", "violation"):
            raise ValueError(f"measurement {self.name!r}: role must be 'value' or 'violation', "
                             f"got {self.role!r}")


@dataclass
class EvalContext:
    """What a metric or attack sees of one matrix cell.

    ``fit_fresh(private, seed)`` trains a new generator of the cell's recipe
    and budget on a chosen subset (what LiRA's shadow models need);
    ``cache_dir`` is shared by all cells of a run (real-data statistics);
    ``workdir`` belongs to this measurement (scores, plots).
    """

    splits: Splits
    synthetic: ImageSet
    #: None in the matrix's ``real-data`` reference row (the private split as "samples")
    generator: Generator | None
    budget: PrivacyBudget
    ledger: Ledger | None
    seed: int
    cache_dir: Path
    workdir: Path
    trainer: dict[str, Any] = field(default_factory=dict)
    fit_fresh: Callable[[ImageSet, int], Generator] | None = None
    #: images each ``fit_fresh`` shadow draws and saves with its model (a fit always samples;
    #: attacks draw their own from the returned generator): an attack may set it before fitting
    shadow_samples: int = 64
    #: the cell's device, as in :attr:`FitContext.device` (None: resolved from ``trainer``)
    device: str | None = None

    def __post_init__(self) -> None:
        if self.device is None:
            self.device = resolve_device(self.trainer)


class _Evaluator(Plugin):
    """Shared shape of metrics and attacks."""

    #: what a cell must offer; the runner skips (status ``skipped``) otherwise.
    #: Known needs: "dp-sgd" (generator trained by the engine with finite ε),
    #: "labels" (class-conditional samples), "public" (public data present),
    #: "shadow-models" (``fit_fresh``). Attacks run on the ``real-data`` reference row too
    #: (the private split released as is: the leakage ceiling); there ``generator`` is None
    #: and ``fit_fresh`` raises SkipMeasurement, so an attack that needs a model is skipped.
    needs: ClassVar[frozenset[str]] = frozenset()
    higher_is_better: ClassVar[bool | None] = None

    @classmethod
    def capabilities(cls) -> dict[str, Any]:
        return {"higher_is_better": cls.higher_is_better, "needs": sorted(cls.needs)}

    @abstractmethod
    def evaluate(self, ctx: EvalContext) -> list[Measurement]:
        """Measure; raise :class:`~ppds_core.errors.SkipMeasurement` if it does not apply."""


class Metric(_Evaluator):
    """Utility or bound: a number about a cell (FID, downstream accuracy, ReRo γ)."""

    kind: ClassVar[str] = "metric"


class Attack(_Evaluator):
    """An adversary against a cell's model or its released samples."""

    kind: ClassVar[str] = "attack"

    def shadow_plan(self, splits: Splits, seed: int) -> list[tuple[ImageSet, int]]:
        """The ``(training subset, seed)`` of each ``ctx.fit_fresh`` call ``evaluate`` will make on a
        cell of ``splits`` at matrix ``seed``; [] = not known ahead. ``ppds worker`` fits each as
        its own unit into the shadow cache first; a mismatch costs only time, never a result."""
        return []


# --------------------------------------------------------------------------- datasets


@dataclass
class Availability:
    """Whether a dataset can be loaded here; if not, ``detail`` says what is missing."""

    available: bool
    detail: str = ""


class DatasetConfig(PluginConfig):
    """Options every dataset shares: split sizes and the seed that fixes them."""

    private: float | int = Field(0.5, description="fraction (≤1.0) or count of the private split")
    holdout: float | int = Field(0.25, description="fraction (≤1.0) or count of the holdout split")
    test: float | int = Field(0.25, description="fraction (≤1.0) or count of the test split")
    split_seed: int = Field(0, description="seed of the split permutation (fixed across matrix seeds)")


class DatasetProvider(Plugin):
    """A source of images: embedded in a package, or read from a local folder.

    ``load`` returns the training pool and, where the dataset has one, its
    official test set; ``splits`` cuts them into private / holdout / test.
    """

    kind: ClassVar[str] = "dataset"
    Config: ClassVar[type[PluginConfig]] = DatasetConfig
    #: shipped inside a package, no download or folder needed
    embedded: ClassVar[bool] = False

    @classmethod
    def capabilities(cls) -> dict[str, Any]:
        return {"embedded": cls.embedded}

    @abstractmethod
    def availability(self) -> Availability:
        """Cheap check (no full load): can ``load`` succeed here?"""

    @abstractmethod
    def load(self) -> tuple[ImageSet, ImageSet | None]:
        """(training pool, official test set or None), canonical form."""

    def splits(self, public: ImageSet | None = None) -> Splits:
        """Deterministic disjoint private / holdout / test splits per the config."""
        train, test = self.load()
        cfg = self.config
        sizes = SplitSizes(private=cfg.private, holdout=cfg.holdout, test=cfg.test)
        try:
            return make_splits(train, test, sizes, cfg.split_seed, public=public)
        except ValueError as err:
            raise ConfigError(f"{self.name}.config: {err}") from None
