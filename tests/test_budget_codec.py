"""ε as a value has one home (ppds_core.budget): parse, encode, decode, format, compare."""

from __future__ import annotations

import json
import math

import pytest
from pydantic import BaseModel, ValidationError

from ppds_core.budget import (
    EPSILON_RTOL,
    Delta,
    Epsilon,
    PrivacyBudget,
    decode_float,
    encode_float,
    format_epsilon,
    within_budget,
)


@pytest.mark.parametrize("spelling", ["inf", "INF", ".inf", "infinity", "+inf", "none", "∞", " inf "])
def test_every_spelling_of_infinity_parses_to_math_inf(spelling):
    assert PrivacyBudget(epsilon=spelling).epsilon == math.inf


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "-inf"])
def test_a_non_positive_or_nan_epsilon_is_refused(bad):
    with pytest.raises(ValidationError):
        PrivacyBudget(epsilon=bad)


@pytest.mark.parametrize("bad", [0, 1, 1.5, -1e-5])
def test_a_delta_outside_the_open_unit_interval_is_refused(bad):
    with pytest.raises(ValidationError):
        PrivacyBudget(epsilon=1, delta=bad)


def test_the_annotated_types_validate_in_any_model():
    class M(BaseModel):
        eps: Epsilon
        delta: Delta

    assert M(eps="inf", delta=1e-5).eps == math.inf
    with pytest.raises(ValidationError):
        M(eps=1, delta=2)


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, 1.5, 0.0, 3, "x", None])
def test_every_float_round_trips_through_json(value):
    back = decode_float(json.loads(json.dumps(encode_float(value))))
    if isinstance(value, float) and math.isnan(value):
        assert math.isnan(back)
    else:
        assert back == value and type(back) is type(value)


def test_encoded_infinities_are_strict_json():
    text = json.dumps([encode_float(math.inf), encode_float(-math.inf), encode_float(math.nan)],
                      allow_nan=False)  # raises ValueError on a bare inf/nan
    assert text == '["inf", "-inf", "nan"]'


@pytest.mark.parametrize(("eps", "style", "text"), [
    (10.0, "text", "10"), (math.inf, "text", "∞"),
    (10.0, "ascii", "10"), (math.inf, "ascii", "inf"),
    (0.99812, "spent", "0.999"), (math.inf, "spent", "∞"),
    (1.0, "label", "ε=1"), (math.inf, "label", "ε=∞ (non-private)"),
    (math.inf, "sort", "1e308"),
])
def test_format_epsilon_styles(eps, style, text):
    assert format_epsilon(eps, style) == text


@pytest.mark.parametrize(("eps", "text"), [
    (0.99812, "0.999"), (0.998, "0.998"), (1.0001, "1.01"), (9.991, "10"), (123456.0, "124000"),
    (0.0, "0"),
])
def test_a_spent_epsilon_is_shown_rounded_up_so_the_text_never_understates_it(eps, text):
    assert format_epsilon(eps, "spent") == text
    assert float(text) >= eps


@pytest.mark.parametrize(("eps", "text"), [(0.99812, "0.998"), (0.998, "0.998"), (1.0009, "1"), (2.5e-7, "2.5e-07")])
def test_an_empirical_lower_bound_is_shown_rounded_down_so_the_text_never_overstates_it(eps, text):
    assert format_epsilon(eps, "lower") == text
    assert float(text) <= eps


def test_an_unknown_format_style_is_an_error():
    with pytest.raises(ValueError, match="style"):
        format_epsilon(1.0, "fancy")  # type: ignore[arg-type]


def test_spent_within_budget_uses_one_tolerance():
    assert within_budget(1.0 * (1 + EPSILON_RTOL), 1.0)
    assert not within_budget(1.0 * (1 + 2 * EPSILON_RTOL), 1.0)
    assert within_budget(math.inf, math.inf)
    assert not within_budget(math.inf, 10.0)
    assert not within_budget(math.nan, 10.0)
