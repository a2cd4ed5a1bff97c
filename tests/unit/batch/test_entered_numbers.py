"""One rule for a number a person types (``entered_number``): what the batch screen checks as
it is typed is exactly what the engine accepts, decided once."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hmi.batch.errors import StepDataInvalid
from hmi.batch.rows import entered_number
from hmi.screens.batch_run import _number


@pytest.mark.parametrize(
    ("typed", "number"),
    [
        ("99.8", "99.8"),
        ("99,8", "99.8"),  # the decimal comma of a European keyboard
        (" 180 ", "180"),
        ("0.90", "0.90"),  # the digits as typed, trailing zero kept
        (".5", "0.5"),
        ("12.", "12"),
    ],
)
def test_plain_numbers_are_taken_as_typed(typed: str, number: str) -> None:
    assert entered_number(typed, "quantity") == Decimal(number)
    assert str(entered_number(typed, "quantity")) == str(Decimal(number.replace(",", ".")))


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("", "enter a number"),
        ("1e2", "not a number as entered here"),
        ("1,234.5", "not a number as entered here"),  # a thousands separator: ambiguous
        ("+5", "not a number as entered here"),
        ("NaN", "not a number as entered here"),
        ("5 kg", "not a number as entered here"),
        ("-5", "below zero, which a quantity cannot be"),
        ("1234567890123456", "more than 15 digits"),
    ],
)
def test_anything_else_is_refused_saying_why(typed: str, says: str) -> None:
    with pytest.raises(StepDataInvalid, match=says):
        entered_number(typed, "quantity")


def test_a_setpoint_may_be_below_zero_and_a_decimal_passes_through() -> None:
    assert entered_number("-5,5", "jacket_temperature", negative=True) == Decimal("-5.5")
    assert entered_number(Decimal("12.50"), "blend_speed") == Decimal("12.50")
    with pytest.raises(StepDataInvalid):
        entered_number(Decimal("NaN"), "blend_speed")


@given(st.text(alphabet="0123456789.,-+eE ", max_size=8))
def test_the_screen_accepts_exactly_what_the_engine_accepts(typed: str) -> None:
    try:
        engine: Decimal | None = entered_number(typed, "result")
    except StepDataInvalid:
        engine = None
    assert _number(typed) == engine
