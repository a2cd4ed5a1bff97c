"""Canonical encoding: the exact bytes that are hashed and signed.

JSON with keys sorted by Unicode code point, no insignificant whitespace, UTF-8, non-ASCII
characters written as themselves. Floats are refused (their text is not portable): decimals
travel as strings. See ``docs/audit-format.md`` for the byte-level specification.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any

import orjson

from hmi.clock import to_utc_text

MAX_SAFE_INTEGER = 2**53 - 1

JsonValue = None | bool | int | str | list["JsonValue"] | dict[str, "JsonValue"]


class CanonicalEncodingError(ValueError):
    """A value cannot be encoded canonically (a float, a non-string key, an unknown type)."""


class _NeedsDetail(Exception):
    """Internal: the fast path met something it does not handle; the slow path explains."""


def _fast(value: Any) -> JsonValue:
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value  # type: ignore[no-any-return]
    if kind is int:
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return value  # type: ignore[no-any-return]
        raise _NeedsDetail
    if kind is dict:
        out: dict[str, JsonValue] = {}
        for key, item in value.items():
            if type(key) is not str:
                raise _NeedsDetail
            out[key] = _fast(item)
        return out
    if kind is list or kind is tuple:
        return [_fast(item) for item in value]
    if kind is Decimal:
        if not value.is_finite():
            raise _NeedsDetail
        return str(value)
    raise _NeedsDetail


def normalise(value: Any, path: str = "$") -> JsonValue:
    """Turn a Python value into plain canonical JSON data, or say exactly which part cannot be."""
    try:
        return _fast(value)
    except _NeedsDetail:
        return _normalise(value, path)


def _normalise(value: Any, path: str) -> JsonValue:
    if value is None or isinstance(value, bool | str):
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise CanonicalEncodingError(f"{path}: text is not valid Unicode") from None
        return value
    if isinstance(value, Enum):
        return _normalise(value.value, path)
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise CanonicalEncodingError(f"{path}: integer {value} too large; pass it as a string")
        return value
    if isinstance(value, float):
        raise CanonicalEncodingError(f"{path}: floats are not allowed; use Decimal or a string")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise CanonicalEncodingError(f"{path}: decimal {value} is not finite")
        return str(value)
    if isinstance(value, datetime):
        return to_utc_text(value)
    if isinstance(value, Mapping):
        out: dict[str, JsonValue] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise CanonicalEncodingError(f"{path}: keys must be strings, got {key!r}")
            out[key] = _normalise(item, f"{path}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [_normalise(item, f"{path}[{i}]") for i, item in enumerate(value)]
    raise CanonicalEncodingError(f"{path}: cannot encode a {type(value).__name__}")


def dumps(value: Any) -> str:
    """Canonical JSON text of a value."""
    text = json.dumps(
        normalise(value),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            _normalise(value, "$")  # names the offending text
            raise
    return text


_PLAIN = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def encode_plain(value: JsonValue) -> bytes:
    """Canonical bytes of data already passed through :func:`normalise` (the hot path).

    orjson writes plain data exactly as the canonical form asks (keys sorted by code point,
    no whitespace, characters as themselves, the same escapes: checked against the standard
    encoder character by character in tests/unit/audit/test_canonical.py); what it refuses
    (a lone surrogate, an integer beyond 64 bits) goes the standard way, which explains."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        pass
    text = _PLAIN.encode(value)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        _normalise(value, "$")  # names the offending text
        raise


def canonical_bytes(value: Any) -> bytes:
    """Canonical JSON bytes of a value (UTF-8)."""
    return dumps(value).encode("utf-8")


def _no_float(literal: str) -> Any:
    raise CanonicalEncodingError(f"floats are not allowed in canonical JSON: {literal}")


_DECODER = json.JSONDecoder(parse_float=_no_float)


def loads(text: str | bytes) -> Any:
    """Parse canonical JSON; refuses floats so a round trip can never change a value."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return _DECODER.decode(text)
