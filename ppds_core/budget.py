"""The privacy budget a cell is trained under, and the one home of ε as a value.

Everything that turns an ε into text or JSON, or back, goes through this module:
:func:`parse_epsilon` (YAML/CLI/JSON input), :func:`encode_float` /
:func:`decode_float` (JSON has no infinity: ``inf`` is written as the string
``"inf"``), :func:`format_epsilon` (text, HTML, plots, file-safe labels) and
:func:`within_budget` (the one tolerance of "spent ≤ target"). The annotated
types :data:`Epsilon` and :data:`Delta` validate once at the edge (matrix
config, :class:`PrivacyBudget`, the ledger); code past that point trusts them.
"""

from __future__ import annotations

import math
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

__all__ = [
    "EPSILON_RTOL",
    "Delta",
    "Epsilon",
    "PrivacyBudget",
    "check_delta_for",
    "decode_float",
    "encode_float",
    "format_epsilon",
    "parse_epsilon",
    "within_budget",
]

#: the one tolerance of "spent ≤ target" and "claim = recomputed": the PRV
#: accountant's own discretisation error is ≤ ~0.3 % of ε (privacy.accounting),
#: so two honest evaluations of one history never differ by more than this
EPSILON_RTOL = 1e-3

_INF_WORDS = frozenset({"inf", "+inf", "infinity", ".inf", "none", "∞"})


def parse_epsilon(value: Any) -> Any:
    """A spelling of ∞ (``inf``, ``.inf``, ``infinity``, ``none``, ``∞``) → ``math.inf``.

    Anything else is returned unchanged for pydantic's float parsing, which
    refuses other non-numbers. A boolean is refused here: YAML reads ``true`` as
    a boolean, and pydantic would otherwise coerce it to ε = 1.
    """
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is a boolean, not a number")
    if isinstance(value, str) and value.strip().lower() in _INF_WORDS:
        return math.inf
    return value


def _check_epsilon(v: float) -> float:
    if math.isnan(v) or v <= 0:
        raise ValueError(f"epsilon must be > 0 (or 'inf' for the non-private reference), got {v}")
    return v


def _check_delta(v: float) -> float:
    if not 0 < v < 1:
        raise ValueError(
            f"delta must satisfy 0 < delta < 1 (typically below 1/N of the private set), got {v}"
        )
    return v


#: a target ε: a positive float or ∞ (the same recipe without DP)
Epsilon = Annotated[float, BeforeValidator(parse_epsilon), AfterValidator(_check_epsilon)]
#: a δ in (0, 1); :func:`check_delta_for` adds the δ < 1/N check once N is known
Delta = Annotated[float, AfterValidator(_check_delta)]


def encode_float(value: Any) -> Any:
    """JSON-safe form of a float: ±∞ and NaN become ``"inf"``, ``"-inf"``, ``"nan"``.

    Non-floats pass through, so this can be mapped over any row value.
    """
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def decode_float(value: Any) -> Any:
    """The inverse of :func:`encode_float`: ``"inf"``/``"-inf"``/``"nan"`` back to floats."""
    if isinstance(value, str) and value in ("inf", "-inf", "nan"):
        return float(value)
    return value


EpsilonStyle = Literal["text", "ascii", "spent", "lower", "label", "sort"]


def format_epsilon(eps: float, style: EpsilonStyle = "text") -> str:
    """ε as a person reads it.

    ``text``  ``10`` / ``∞`` (tables, HTML, plots);
    ``ascii`` ``10`` / ``inf`` (file names, CSV, log lines, cell keys);
    ``spent`` ``0.998`` / ``∞`` (a spent ε, an upper bound: three significant digits,
              rounded up, so the text never understates it);
    ``lower`` ``0.997`` / ``∞`` (an empirical lower bound on ε: rounded down, so the
              text never overstates it);
    ``label`` ``ε=10`` / ``ε=∞ (non-private)``;
    ``sort``  a numeric string that sorts ∞ last (HTML ``data-sort``).
    """
    inf = math.isinf(eps)
    if style == "ascii":
        return "inf" if inf else f"{eps:g}"
    if style == "spent":
        return "∞" if inf else _round(eps, 3, ROUND_CEILING)
    if style == "lower":
        return "∞" if inf else _round(eps, 3, ROUND_FLOOR)
    if style == "label":
        return "ε=∞ (non-private)" if inf else f"ε={eps:g}"
    if style == "sort":
        return "1e308" if inf else f"{eps}"
    if style == "text":
        return "∞" if inf else f"{eps:g}"
    raise ValueError(f"unknown epsilon style {style!r}")


def _round(x: float, digits: int, rounding: str) -> str:
    """``x`` to ``digits`` significant digits in one direction (decimal, so 0.998 stays 0.998)."""
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    d = Decimal(repr(x))
    exponent = d.adjusted() - digits + 1
    return f"{float(d.quantize(Decimal(1).scaleb(exponent), rounding=rounding)):g}"


def within_budget(spent: float, target: float) -> bool:
    """``spent ≤ target`` up to :data:`EPSILON_RTOL` (∞ ≤ ∞ holds; a non-finite spend never fits a finite target)."""
    if math.isinf(target):
        return True
    return math.isfinite(spent) and spent <= target * (1 + EPSILON_RTOL)


class PrivacyBudget(BaseModel):
    """A target (ε, δ). ``epsilon = inf`` means "the same recipe without DP".

    The non-private reference row is part of every honest comparison, so it is a
    budget like any other rather than a separate code path: generators receive
    ``inf`` and switch noise and clipping off, keeping everything else equal.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    epsilon: Epsilon
    delta: Delta = 1e-5

    @property
    def is_private(self) -> bool:
        return math.isfinite(self.epsilon)

    def label(self) -> str:
        """'ε=10' or 'ε=∞ (non-private)' — for tables and plots."""
        return format_epsilon(self.epsilon, "label")


def check_delta_for(delta: float, num_examples: int) -> None:
    """Refuse δ ≥ 1/N for a private set of N examples (BudgetError naming N and the limit).

    An (ε, δ) guarantee with δ ≥ 1/N is met by a mechanism that publishes one
    randomly chosen example outright; it protects nobody. The usual choice is
    δ ≪ 1/N (1e-5 for the embedded sets).
    """
    from .errors import BudgetError

    n = int(num_examples)
    if n > 0 and delta >= 1.0 / n:
        raise BudgetError(
            f"delta={delta:g} is not below 1/N = 1/{n} = {1 / n:.3g} for the {n} private examples: such "
            f"a guarantee allows publishing an example outright; use delta < {1 / n:.3g}, usually "
            f"much smaller (e.g. {10 ** math.floor(math.log10(0.1 / n)):.0e})"
        )
