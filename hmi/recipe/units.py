"""Units a recipe may use, the family each belongs to, and exact conversions inside a family.

A recipe states every number with its unit; the validator refuses an unknown unit and a unit
from the wrong family (a speed in kilograms). Conversions are exact decimal multiplications
(1 min = 60 s, 1 g = 0.001 kg), so a value converted for the PLC never picks up a rounding error.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Unit:
    """A unit symbol, its family and its factor to the family's base unit."""

    symbol: str
    family: str
    factor: Decimal
    description: str


_UNIT_LIST = (
    Unit("rpm", "speed", Decimal(1), "revolutions per minute"),
    Unit("s", "time", Decimal(1), "seconds"),
    Unit("min", "time", Decimal(60), "minutes"),
    Unit("kg", "mass", Decimal(1), "kilograms"),
    Unit("g", "mass", Decimal("0.001"), "grams"),
    Unit("A", "current", Decimal(1), "amperes"),
    Unit("°C", "temperature", Decimal(1), "degrees Celsius"),
    Unit("%", "percent", Decimal(1), "percent (of label claim, of target, ...)"),
    Unit("count", "count", Decimal(1), "a dimensionless count (revolutions, samples)"),
    Unit("ppm", "concentration", Decimal(1), "parts per million (mass)"),
    Unit("µg/cm²", "surface_load", Decimal(1), "micrograms per square centimetre (swabs)"),
)

#: Every unit a recipe may name, by its canonical symbol.
UNITS: dict[str, Unit] = {unit.symbol: unit for unit in _UNIT_LIST}

#: ASCII spellings accepted for symbols that are hard to type at a kiosk keyboard.
UNIT_ALIASES: dict[str, str] = {"degC": "°C", "ug/cm2": "µg/cm²"}


class UnitError(ValueError):
    """A unit is unknown, or two units cannot be converted into each other."""


def known_unit_symbols() -> list[str]:
    """The canonical symbols followed by the accepted aliases, for error messages and docs."""
    return [*UNITS, *UNIT_ALIASES]


def normalise_unit(symbol: str) -> str:
    """The canonical symbol for a unit as written in a file (``degC`` becomes ``°C``)."""
    canonical = UNIT_ALIASES.get(symbol, symbol)
    if canonical not in UNITS:
        raise UnitError(
            f"unknown unit {symbol!r}; expected one of: {', '.join(known_unit_symbols())}"
        )
    return canonical


def family(symbol: str) -> str:
    """The family of a unit (``min`` and ``s`` are both ``time``)."""
    return UNITS[normalise_unit(symbol)].family


def convert(value: Decimal, from_unit: str, to_unit: str) -> Decimal:
    """Convert a value exactly between two units of one family (15 min -> 900 s)."""
    source, target = UNITS[normalise_unit(from_unit)], UNITS[normalise_unit(to_unit)]
    if source.family != target.family:
        raise UnitError(
            f"cannot convert {source.symbol} ({source.family}) to {target.symbol} ({target.family})"
        )
    if source.factor == target.factor:
        return value
    return value * source.factor / target.factor
