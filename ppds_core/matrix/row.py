"""One row of ``results.jsonl``: the one home of its keys, their JSON form and what follows from them.

:class:`ResultRow` declares every column (docs/matrix.md's results table is
generated from it: :func:`markdown_table`), so the runner that writes a row,
the reader that decodes it and the leaderboard that renders it agree on one
list. It owns three rules that used to be spread over the runner, the reader
and the leaderboard:

- *extras never shadow a column*: a plugin's ``Measurement.extra`` key named
  like a column (``public``, ``seconds``, ``value`` …) is stored as
  ``extra_<key>`` (prefixed again while that is taken too), so no plugin can
  overwrite what the runner recorded;
- *every float survives JSON*: ±∞ and NaN, in a column or anywhere inside an
  extra, are written as ``"inf"`` / ``"-inf"`` / ``"nan"``
  (:func:`ppds_core.budget.encode_float`) and read back as floats;
- *derived once*: ``reference`` (ε = ∞ or real data) and ``headline`` are
  computed here, from the row's own fields, not by each reader.

Rows written before a key existed are still read (:func:`record_from_json` is
lenient, so ``ppds leaderboard`` can name the version that wrote a row it
cannot render); :func:`role_of` is the one compatibility read of a row without
``role``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .._version import __version__
from ..budget import decode_float, encode_float
from .config import REAL_DATA

if TYPE_CHECKING:
    from ..interfaces import Measurement
    from .cells import Cell
    from .config import ResolvedPlugin
    from .fit import FitOutcome

__all__ = ["EXTRA_PREFIX", "REQUIRED_KEYS", "ResultRow", "Role", "decode_record", "is_reference",
           "markdown_table", "record_from_json", "resolve_headlines", "role_of"]

#: what a measurement is: a number to compare, or a claim check (1.0 = the privacy claim was beaten)
Role = Literal["value", "violation"]
#: prefix of a plugin extra whose key is taken by a column
EXTRA_PREFIX = "extra_"


class ResultRow(BaseModel):
    """One measured value of one cell (or the failed / skipped row standing for an evaluation).

    Fields without a default are the schema every version of ppds wrote
    (:data:`REQUIRED_KEYS`); the others were added later and default when an
    older row lacks them. Plugin extras are the model's extra keys.
    """

    model_config = ConfigDict(extra="allow")

    cell: str = Field(description="cell content hash (folder `cells/<cell>/`)")
    dataset: str = Field(description="dataset plugin name")
    generator: str = Field(description="generator plugin name; `real-data` for the real-data reference")
    epsilon: float = Field(description='target ε; **`"inf"`** (a string) for the non-private reference and real data')
    epsilon_spent: float | None = Field(description='the ledger\'s ε (`"inf"` when non-private)')
    delta: float = Field(description="δ of the cell")
    seed: int = Field(description="the matrix seed")
    kind: str = Field(description="`metric` or `attack`")
    name: str = Field(description="the measurement's name (one evaluator may report several)")
    value: float | None = Field(description="a number, or `null` when not `ok`")
    higher_is_better: bool | None = Field(
        description="`true`/`false`/`null`, from the measurement or its plugin class")
    status: Literal["ok", "failed", "skipped"] = Field(description="`ok`, `failed` or `skipped`")
    error: str | None = Field(description="`null`, the skip reason, or `ExceptionType: message`")
    ppds_version: str = Field(description="version of ppds that wrote the row")

    measurement: str | None = Field(None, description="hash of the measurement (cell, evaluator, smoke); "
                                                       "a re-run skips one with an `ok` or `skipped` row")
    batch: str | None = Field(None, description="id of the rows written together (the reader keeps a "
                                                "measurement's last batch)")
    evaluator: str | None = Field(None, description="the metric or attack plugin that measured it")
    evaluator_version: str | None = Field(None, description="that plugin's version")
    generator_version: str | None = Field(None, description="the generator plugin's version (`null` for real data)")
    public: str | None = Field(None, description="the dataset's public set, if any")
    matrix: str | None = Field(None, description="the matrix's `name`")
    variant: str | None = Field(None, description="recipe hash without ε and seed")
    smoke: bool = Field(False, description="written by `ppds run --smoke` (never merged with real rows)")
    reference: bool = Field(False, description="ε = ∞ or real data: a reference row, never a competitor "
                                               "(derived from `generator`, `epsilon`, `reference_data`)")
    reference_data: bool = Field(False, description="the real-data row (the private split as the release)")
    reproducible_noise: bool = Field(False, description="the cell's DP noise was derived from the public seed: "
                                                        "its ε does not hold against a reader of the config, "
                                                        "and the board says so")
    headline: bool | None = Field(None, description="a headline number of its evaluation: shown in the "
                                                    "compact leaderboard")
    role: Role = Field("value", description="`value`, or `violation` for a claim check (1.0 = an attack "
                                            "beat the privacy claim: the board flags it)")
    seconds: float | None = Field(None, description="wall time of the evaluation")
    scores: str | None = Field(None, description="path of an attack's `scores.npz`, relative to DIR")

    @model_validator(mode="before")
    @classmethod
    def _derive(cls, data: Any) -> Any:
        """``reference`` from the row's own fields; ``role`` of a row written before it existed."""
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        if "epsilon" in data:
            data["reference"] = is_reference(data, derive=True)
        if "role" not in data and "name" in data:
            data["role"] = role_of(data)
        return data

    # ------------------------------------------------------------------ constructors

    @classmethod
    def for_cell(cls, cell: Cell, cell_id: str, evaluator: ResolvedPlugin, measurement: str, batch: str,
                 outcome: FitOutcome | None, matrix: str, **columns: Any) -> ResultRow:
        """The row of ``evaluator`` on ``cell``: ``ok`` with no value and ``headline`` (a skipped or
        failed evaluation's one row stands for all it would report) unless ``columns`` say
        otherwise. ``columns`` are column names only; extras go through :meth:`from_measurements`."""
        unknown = sorted(set(columns) - set(cls.model_fields))
        if unknown:
            raise TypeError(f"ResultRow.for_cell: {unknown} are not columns of a result row")
        public = cell.dataset.public
        row: dict[str, Any] = {
            "cell": cell_id,
            "dataset": cell.dataset_name,
            "generator": cell.generator_name,
            "epsilon": cell.epsilon,
            "epsilon_spent": outcome.ledger.epsilon_spent if outcome is not None else cell.epsilon,
            "delta": cell.delta,
            "seed": cell.seed,
            "kind": evaluator.kind,
            "name": evaluator.name,
            "value": None,
            "higher_is_better": getattr(evaluator.cls, "higher_is_better", None),
            "status": "ok",
            "error": None,
            "ppds_version": __version__,
            "measurement": measurement,
            "batch": batch,
            "evaluator": evaluator.name,
            "evaluator_version": evaluator.version,
            "generator_version": cell.generator.version if cell.generator else None,
            "public": public.name if public else None,
            "matrix": matrix,
            "variant": cell.variant,
            "smoke": cell.smoke,
            "reference_data": cell.is_reference_data,
            # the ledger's noise came from the public seed: the board warns that ε does not hold
            "reproducible_noise": bool(outcome.ledger.reproducible_noise) if outcome is not None else False,
            "headline": True,
            "role": "value",
        }
        return cls.model_validate(row | columns)

    @classmethod
    def from_measurements(cls, cell: Cell, cell_id: str, evaluator: ResolvedPlugin, measurement: str,
                          batch: str, outcome: FitOutcome | None, matrix: str,
                          measurements: Iterable[Measurement], *, seconds: float,
                          scores: str | None = None) -> list[ResultRow]:
        """The rows of one evaluation: one per :class:`~ppds_core.interfaces.Measurement`,
        headlines resolved over the whole evaluation (:func:`resolve_headlines`), the
        measurement's ``higher_is_better`` or else its plugin class's, and its extras
        stored so that none shadows a column (``extra_<key>``)."""
        found = list(measurements)
        common: dict[str, Any] = {"seconds": seconds} | ({"scores": scores} if scores is not None else {})
        rows = []
        for m, headline in zip(found, resolve_headlines(m.headline for m in found), strict=True):
            hib = m.higher_is_better if m.higher_is_better is not None else getattr(
                evaluator.cls, "higher_is_better", None)
            row = cls.for_cell(cell, cell_id, evaluator, measurement, batch, outcome, matrix,
                               name=m.name or evaluator.name, value=m.value, higher_is_better=hib,
                               headline=headline, role=m.role, **common)
            rows.append(row.with_extras(m.extra))
        return rows

    def with_extras(self, extra: Mapping[Any, Any]) -> ResultRow:
        """This row plus a plugin's extras; a key taken by a column (or an earlier extra) is
        stored as ``extra_<key>``, prefixed again while that is taken too."""
        record = self.to_record()
        for k, v in extra.items():
            key = str(k)
            while key in record or key in type(self).model_fields:
                key = f"{EXTRA_PREFIX}{key}"
            record[key] = v
        return type(self).model_validate(record)

    # ------------------------------------------------------------------ JSON

    def to_record(self) -> dict[str, Any]:
        """The row as a dict (floats as floats): columns in schema order, then the extras.
        A column the row was not given (an optional one, or a row rebuilt from an older
        file) is left out rather than defaulted."""
        return self.model_dump(exclude_unset=True)

    def to_json(self) -> str:
        """One line of ``results.jsonl`` (no newline): ±∞ and NaN as strings, numpy values as lists."""
        return json.dumps(_encode(self.to_record()), default=str, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> ResultRow:
        """The row a :meth:`to_json` line holds, validated (``ValueError`` if it is not one)."""
        return cls.model_validate(record_from_json(text))


#: the keys every row of every version has; a row lacking one is from another schema
REQUIRED_KEYS: tuple[str, ...] = tuple(k for k, f in ResultRow.model_fields.items() if f.is_required())
#: columns that hold text or flags: a string there is never a spelled float
_NOT_FLOAT = frozenset(k for k, f in ResultRow.model_fields.items()
                       if k not in {"epsilon", "epsilon_spent", "delta", "value", "seconds"})


def _encode(v: Any) -> Any:
    if isinstance(v, float):
        return encode_float(v)
    if isinstance(v, dict):
        return {k: _encode(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_encode(x) for x in v]
    if hasattr(v, "tolist") and callable(v.tolist):  # numpy / torch scalars and arrays
        return _encode(v.tolist())
    return v


def _decode(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _decode(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_decode(x) for x in v]
    return decode_float(v)


def decode_record(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A parsed line of ``results.jsonl`` with its floats decoded (``"inf"`` → ``math.inf`` in
    every float column and anywhere in an extra), *not* validated: a row of another schema
    still reads, so the leaderboard can say which version wrote it."""
    return {k: v if k in _NOT_FLOAT else _decode(v) for k, v in raw.items()}


def record_from_json(text: str | bytes) -> dict[str, Any]:
    """:func:`decode_record` of one line (``ValueError`` if it is not a JSON object)."""
    raw = json.loads(text)
    if not isinstance(raw, dict):
        raise ValueError("a result row is a JSON object")
    return decode_record(raw)


# --------------------------------------------------------------------------- derived fields


def is_reference(record: Mapping[str, Any], derive: bool = False) -> bool:
    """Whether a row is a reference (ε = ∞ or the real-data row). A row carries its
    ``reference`` (derived once, when it is made); ``derive`` (or a row without the
    key) computes it from ``generator``, ``epsilon`` and ``reference_data``."""
    if not derive and "reference" in record:
        return bool(record["reference"])
    eps = record.get("epsilon", 0)
    return (bool(record.get("reference_data")) or record.get("generator") == REAL_DATA
            or (isinstance(eps, float) and math.isinf(eps)))


def role_of(record: Mapping[str, Any]) -> Role:
    """A row's ``role``. Compatibility read: a row written before ``role`` existed is a
    violation flag when its name contains ``-violation`` (the naming rule of those versions:
    ``<attack>-epsilon-violation``, ``dpsgd-audit-violation``, ``reconstruction-rero-violation@mu=M``)."""
    role = record.get("role")
    if role in ("value", "violation"):
        return role  # type: ignore[return-value]
    return "violation" if "-violation" in str(record.get("name", "")) else "value"


def resolve_headlines(flags: Iterable[bool | None]) -> list[bool]:
    """The ``headline`` of each row of one measurement: as flagged, or — when none is
    flagged (a plugin that sets no flag, rows written before the flag existed) — the
    first row alone, so every evaluator keeps at least one number in a compact view."""
    out = [bool(f) for f in flags]
    return out if any(out) else [i == 0 for i in range(len(out))]


# --------------------------------------------------------------------------- docs


def markdown_table() -> str:
    """docs/matrix.md's results table: one line per column, from the field descriptions."""
    lines = ["| key | meaning |", "| --- | --- |"]
    lines += [f"| `{k}` | {f.description} |" for k, f in ResultRow.model_fields.items()]
    return "\n".join(lines)
