"""Checking values against the tag map: what the HMI accepts from and sends to the PLC.

Pure functions, no OPC UA: the gateway turns a received value and its status into a
:class:`~hmi.plc.types.TagUpdate` here, and checks every value and argument here before it is
sent. A bad value becomes a ``BAD`` update or a :class:`~hmi.plc.errors.PlcValueRejected`,
never a good-looking number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from hmi.plc.errors import PlcValueRejected
from hmi.plc.settings import ArgSpec, TagSpec
from hmi.plc.types import Quality, TagUpdate, TagValue

FLOAT_REL_TOLERANCE = 1e-6
"""Read-back tolerance for floats: covers a Float (32-bit) node storing a Double we sent."""


def check_value(
    kind: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    choices: Sequence[str] | None = None,
) -> TagValue:
    """Return ``value`` as the Python type of ``kind``; raise ``ValueError`` saying why not."""
    if value is None:
        raise ValueError("no value")
    result: TagValue
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected a number, got {type(value).__name__} {value!r}")
        result = float(value)
        if not math.isfinite(result):
            raise ValueError(f"not a finite number: {value!r}")
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {type(value).__name__} {value!r}")
        result = int(value)
    elif kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"expected true/false, got {type(value).__name__} {value!r}")
        result = value
    elif kind == "str":
        if not isinstance(value, str):
            raise ValueError(f"expected text, got {type(value).__name__} {value!r}")
        if choices is not None and value not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        result = value
    elif kind == "str_list":
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"expected a list of texts, got {value!r}")
        result = tuple(value)
    else:  # pragma: no cover - the settings model only allows the kinds above
        raise ValueError(f"unknown value type {kind!r}")
    if isinstance(result, int | float) and not isinstance(result, bool):
        if low is not None and result < low:
            raise ValueError(f"{result:g} is below the valid range {low:g}..{_fmt(high)}")
        if high is not None and result > high:
            raise ValueError(f"{result:g} is above the valid range {_fmt(low)}..{high:g}")
    return result


def _fmt(bound: float | None) -> str:
    return "" if bound is None else f"{bound:g}"


def received(
    tag: str,
    spec: TagSpec,
    value: object,
    *,
    status_good: bool,
    status_name: str,
    timestamp: datetime,
) -> TagUpdate:
    """Turn a value the PLC reported into a tag update, good only if everything checks out."""
    if not status_good:
        return bad(tag, spec, f"PLC reports {status_name}", timestamp)
    try:
        checked = check_value(spec.type, value, low=spec.low, high=spec.high, choices=spec.choices)
    except ValueError as exc:
        return bad(tag, spec, str(exc), timestamp)
    return TagUpdate(tag, checked, spec.unit, timestamp, Quality.GOOD)


def bad(tag: str, spec: TagSpec, reason: str, timestamp: datetime) -> TagUpdate:
    return TagUpdate(tag, None, spec.unit, timestamp, Quality.BAD, reason)


def check_write(tag: str, spec: TagSpec, value: object) -> TagValue:
    """Validate a value the HMI wants to write; raise :class:`PlcValueRejected` if not valid."""
    if not spec.writable:
        raise PlcValueRejected(tag, "this tag is read-only in the tag map", value)
    try:
        return check_value(spec.type, value, low=spec.low, high=spec.high, choices=spec.choices)
    except ValueError as exc:
        raise PlcValueRejected(tag, str(exc), value) from None


def check_arguments(
    method: str, specs: Sequence[ArgSpec], values: Sequence[object]
) -> list[TagValue]:
    """Validate method arguments in order; raise :class:`PlcValueRejected` naming the argument."""
    if len(values) != len(specs):
        names = ", ".join(a.name for a in specs) or "no arguments"
        raise PlcValueRejected(
            method, f"expects {len(specs)} argument(s) ({names}), got {len(values)}", values
        )
    checked: list[TagValue] = []
    for spec, value in zip(specs, values, strict=True):
        try:
            checked.append(
                check_value(spec.type, value, low=spec.low, high=spec.high, choices=spec.choices)
            )
        except ValueError as exc:
            raise PlcValueRejected(f"{method}({spec.name})", str(exc), value) from None
    return checked


def same_value(written: TagValue, read_back: TagValue | None) -> bool:
    """Does the read-back confirm the write? Floats within a 32-bit rounding tolerance."""
    if read_back is None:
        return False
    if isinstance(written, float) and isinstance(read_back, float):
        return math.isclose(written, read_back, rel_tol=FLOAT_REL_TOLERANCE, abs_tol=1e-9)
    return type(written) is type(read_back) and written == read_back
