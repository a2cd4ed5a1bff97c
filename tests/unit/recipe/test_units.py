"""Units: known symbols, aliases and exact conversions inside a family only."""

from __future__ import annotations

from decimal import Decimal

import pytest

from hmi.recipe.tags import PLC_TAGS
from hmi.recipe.units import UNITS, UnitError, convert, family, normalise_unit


def test_conversions_are_exact() -> None:
    assert convert(Decimal(15), "min", "s") == Decimal(900)
    assert convert(Decimal("0.1"), "min", "s") == Decimal("6.0")
    assert convert(Decimal(1500), "g", "kg") == Decimal("1.5")
    assert convert(Decimal("12"), "rpm", "rpm") == Decimal("12")


def test_no_conversion_across_families() -> None:
    with pytest.raises(UnitError, match="cannot convert kg"):
        convert(Decimal(1), "kg", "s")


def test_aliases_and_unknown_units() -> None:
    assert normalise_unit("degC") == "°C"
    assert family("ug/cm2") == "surface_load"
    with pytest.raises(UnitError, match="unknown unit 'furlong'"):
        normalise_unit("furlong")


def test_every_numeric_tag_has_a_known_unit() -> None:
    for tag in PLC_TAGS.values():
        assert (tag.kind == "number") == (tag.unit is not None), tag.name
        assert tag.unit is None or tag.unit in UNITS
    assert {t.name for t in PLC_TAGS.values() if t.writable} == {
        "speed_setpoint",
        "blend_time_setpoint",
        "revolutions_setpoint",
    }
