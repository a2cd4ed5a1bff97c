"""How a record prints a value (``shown_value``): readings with the recipe's precision, typed
values as typed, and never a rounding that reads differently against the limits."""

from __future__ import annotations

import pytest

from hmi.batch.rows import places_of, shown_value


@pytest.mark.parametrize(
    ("value", "source", "low", "high", "places", "shown"),
    [
        ("180.40640895713583", "computed", "178.2", "181.8", None, "180.4"),
        ("181.80640895713583", "plc", None, None, 1, "181.8"),  # a gross weight: the step's
        ("181.84", "computed", "178.2", "181.8", None, "181.84"),  # not 181.8: it is out
        ("178.19", "computed", "178.2", "181.8", None, "178.19"),  # not 178.2: it is out
        ("178.21", "computed", "178.2", "181.8", None, "178.2"),  # in, and still reads in
        ("900.0", "plc", "840", "960", None, "900"),
        ("0.90", "entered", "0.882", "0.918", None, "0.90"),  # typed: as typed
        ("99.4", "entered", "90", "110", None, "99.4"),
        ("Idle", "plc", None, None, 2, "Idle"),
        ("12.5", "plc", None, None, None, "12.5"),  # no limits, no sibling: as recorded
    ],
)
def test_a_value_prints_with_the_recipes_precision(
    value: str, source: str, low: str | None, high: str | None, places: int | None, shown: str
) -> None:
    assert shown_value(value, source, low, high, places) == shown


def test_the_precision_is_the_limits_decimals() -> None:
    assert places_of("178.2", "181.8") == 1
    assert places_of("0.882", "0.918") == 3
    assert places_of("840", "960") == 0
    assert places_of(None, None) is None
