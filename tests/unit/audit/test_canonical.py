"""Canonical encoding: deterministic bytes, exact round trip, floats refused."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hmi.audit import canonical

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1),
    st.text(),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


@given(json_values)
@settings(max_examples=300, deadline=None)
def test_round_trip_is_exact(value: object) -> None:
    text = canonical.dumps(value)
    assert canonical.loads(text) == value
    assert canonical.dumps(canonical.loads(text)) == text


@given(st.dictionaries(st.text(max_size=6), json_scalars, min_size=2, max_size=12), st.randoms())
@settings(max_examples=200, deadline=None)
def test_key_order_does_not_change_the_bytes(
    mapping: dict[str, object], rnd: random.Random
) -> None:
    items = list(mapping.items())
    rnd.shuffle(items)
    assert canonical.canonical_bytes(dict(items)) == canonical.canonical_bytes(mapping)


def test_exact_bytes_of_a_known_value() -> None:
    value = {"b": [1, True, None], "a": 'Zürich "q"\n', "c": Decimal("0.90")}
    assert canonical.canonical_bytes(value) == (
        '{"a":"Zürich \\"q\\"\\n","b":[1,true,null],"c":"0.90"}'.encode()
    )


def test_datetimes_become_utc_text() -> None:
    moment = datetime(2026, 1, 5, 8, 0, 0, 123456, tzinfo=UTC)
    assert canonical.dumps({"t": moment}) == '{"t":"2026-01-05T08:00:00.123456Z"}'


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ({"w": 1.5}, "$.w: floats are not allowed"),
        ({1: "x"}, "keys must be strings"),
        ({"n": 2**60}, "too large"),
        ({"d": Decimal("NaN")}, "not finite"),
        ({"o": object()}, "cannot encode a object"),
        ({"s": "\ud800"}, "not valid Unicode"),
    ],
)
def test_values_that_cannot_be_canonical_are_refused(value: object, fragment: str) -> None:
    with pytest.raises(canonical.CanonicalEncodingError, match=fragment.replace("$", r"\$")):
        canonical.dumps(value)


def test_parsing_refuses_floats() -> None:
    with pytest.raises(canonical.CanonicalEncodingError):
        canonical.loads('{"x":1.0}')


text_or_null = st.one_of(st.none(), st.text())


@given(
    st.fixed_dictionaries(
        {
            name: text_or_null
            for name in (
                "action",
                "actor_id",
                "actor_role",
                "entity_id",
                "entity_type",
                "field",
                "meaning",
                "new_value",
                "old_value",
                "reason",
                "session_id",
                "ts",
            )
        }
    ),
    st.dictionaries(st.text(max_size=6), json_scalars, max_size=5),
)
@settings(max_examples=300, deadline=None)
def test_fast_content_encoding_equals_the_canonical_one(
    fields: dict[str, str | None], details: dict[str, object]
) -> None:
    from hmi.audit.hashing import content_bytes, content_object

    details_text = canonical.dumps(details)
    try:
        expected = canonical.canonical_bytes(content_object({**fields, "details": details_text}))
    except canonical.CanonicalEncodingError:
        with pytest.raises(canonical.CanonicalEncodingError):
            content_bytes(fields, details_text)
        return
    assert content_bytes(fields, details_text) == expected


_STANDARD = __import__("json").JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False
)


def test_the_fast_plain_encoder_writes_every_character_as_the_standard_one() -> None:
    """encode_plain uses orjson: for every character of the Basic Multilingual Plane (but the
    surrogates, which are not text) and some beyond, as a key and as a value, the same bytes as
    the standard encoder the format is defined by."""
    chars = [chr(c) for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF]
    chars += ["\U0001f600", "\U0010ffff", "\U00010000"]
    for start in range(0, len(chars), 64):
        part = chars[start : start + 64]
        value = {f"k{c}": [c, f"a{c}b"] for c in part}
        assert canonical.encode_plain(value) == _STANDARD.encode(value).encode("utf-8"), part


@given(json_values)
def test_the_fast_plain_encoder_equals_the_standard_one(value: object) -> None:
    assert canonical.encode_plain(value) == _STANDARD.encode(value).encode("utf-8")  # type: ignore[arg-type]


def test_a_lone_surrogate_is_refused_by_name_by_the_plain_encoder() -> None:
    with pytest.raises(canonical.CanonicalEncodingError, match=r"\$\.a: text is not valid Unicode"):
        canonical.encode_plain({"a": "\ud800"})
