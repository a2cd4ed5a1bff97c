"""Argument types for the ``hmi`` command: one per kind of value, used by every sub-command.

Each is an ``argparse`` ``type=`` function: a value out of its range, or not a value of its
kind, stops the command before anything is opened, with one sentence naming the argument and
what it takes, and exit status 2. :func:`check_arguments` checks what involves two arguments
(``--from`` after ``--to``) once the command line is parsed.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime

#: The years a ``--from``/``--to`` may name (no record is older; any later end is "ever").
MIN_YEAR, MAX_YEAR = 1970, 9998

#: A version of a recipe (the recipe format's range).
VERSION_RANGE = (1, 9999)

_INTEGER = re.compile(r"^[+-]?[0-9]{1,30}$")
_OFFSET_AFTER_SPACE = re.compile(r"\s+([+-]\d{2}:?\d{2})$")
_SHOWN = 40


def _shown(text: str) -> str:
    return repr(text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "...")


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """A whole number from ``low`` to ``high`` (both included)."""

    def parse(text: str) -> int:
        cleaned = text.strip()
        if not _INTEGER.match(cleaned):
            if re.match(r"^[+-]?[0-9]+$", cleaned):
                raise argparse.ArgumentTypeError(
                    f"expected a whole number from {low} to {high}, got a number of"
                    f" {len(cleaned.lstrip('+-'))} digits"
                )
            raise argparse.ArgumentTypeError(
                f"expected a whole number from {low} to {high}, got {_shown(text)}"
            )
        value = int(cleaned)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"expected a whole number from {low} to {high}, got {_shown(cleaned)}"
            )
        return value

    parse.__name__ = "whole number"
    return parse


def bounded_float(low: float, high: float) -> Callable[[str], float]:
    """A finite number from ``low`` to ``high`` (both included)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a number from {low:g} to {high:g}, got {_shown(text)}"
            ) from None
        if not math.isfinite(value) or not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"expected a number from {low:g} to {high:g}, got {_shown(text)}"
            )
        return value

    parse.__name__ = "number"
    return parse


def version(text: str) -> int:
    """A recipe version number (1 to 9999)."""
    return bounded_int(*VERSION_RANGE)(text)


def parse_moment(text: str, *, end: bool = False) -> datetime:
    """An ISO date or date-time a user typed, as an aware UTC datetime.

    Local time unless it carries an offset (``+01:00``, ``Z``; the form the screens show,
    ``2026-03-02 06:00:00 +01:00``, too). A date alone is the start of that day, or with
    ``end`` its last microsecond. Raises ``ValueError`` with a sentence when it is not a time
    or is outside the years 1970 to 9998."""
    cleaned = _OFFSET_AFTER_SPACE.sub(r"\1", text.strip())
    if cleaned.endswith(("Z", "z")):
        cleaned = cleaned[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(cleaned)
    except ValueError:
        raise ValueError(
            f"{_shown(text.strip())} is not a date or time; use e.g. 2026-01-05 or"
            " 2026-01-05T08:30 (local time) or 2026-01-05T08:30+01:00"
        ) from None
    if not MIN_YEAR <= moment.year <= MAX_YEAR:
        raise ValueError(
            f"{_shown(text.strip())} is out of range: a time in the years {MIN_YEAR} to"
            f" {MAX_YEAR} is expected"
        )
    if len(cleaned) == 10 and end:
        moment = moment.replace(hour=23, minute=59, second=59, microsecond=999999)
    if moment.tzinfo is None:
        moment = moment.astimezone()  # local time
    found = moment.astimezone(UTC)
    return found


def iso_time(text: str) -> str:
    """A ``--from``/``--to`` value: checked as :func:`parse_moment` reads it, kept as typed
    (each command turns it into its range's start or end)."""
    try:
        parse_moment(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


iso_time.__name__ = "time"


def check_arguments(args: argparse.Namespace) -> str | None:
    """What no single argument can check: ``--from`` must not be after ``--to``."""
    ts_from, ts_to = getattr(args, "ts_from", None), getattr(args, "ts_to", None)
    if isinstance(ts_from, str) and isinstance(ts_to, str):
        try:
            start, stop = parse_moment(ts_from), parse_moment(ts_to, end=True)
        except ValueError as exc:
            return str(exc)
        if start > stop:
            return (
                f"the range ends before it starts: --from {ts_from.strip()} is after --to"
                f" {ts_to.strip()}; give the earlier time first"
            )
    return None
