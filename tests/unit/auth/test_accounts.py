"""User IDs, printed names and reasons: what is accepted and how it is stored."""

from __future__ import annotations

import re

import pytest

from hmi.auth.accounts import (
    normalise_full_name,
    normalise_reason,
    normalise_user_id,
    parse_roles,
    typed_id_digest,
    typed_id_key,
)
from hmi.auth.errors import InvalidUserInput
from hmi.auth.roles import Role


@pytest.mark.parametrize(
    ("typed", "stored"),
    [("olga", "olga"), (" Olga ", "olga"), ("ＯＬＧＡ", "olga"), ("j.doe-2", "j.doe-2")],
)
def test_user_ids_are_case_insensitive_and_normalised(typed: str, stored: str) -> None:
    assert normalise_user_id(typed) == stored


@pytest.mark.parametrize(
    "bad", ["", "a", "1olga", "olga smith", "olga\x00", "ölga", "x" * 33, "o;drop"]
)
def test_malformed_user_ids_are_refused(bad: str) -> None:
    with pytest.raises(InvalidUserInput):
        normalise_user_id(bad)


def test_a_typed_id_digest_is_keyed_correlates_repeats_and_keeps_only_the_length() -> None:
    key = typed_id_key(b"k" * 32)
    typed = "copper-lantern-meadow-42"  # a password typed into the ID field looks like an ID
    digest = typed_id_digest(key, typed)
    assert re.fullmatch(r"uid-hmac:[0-9a-f]{16}:len24", digest), digest
    assert typed not in digest and "copper" not in digest
    # the same text typed again (or in another case, with spaces) is the same digest
    assert typed_id_digest(key, f" {typed.upper()} ") == digest
    assert typed_id_digest(key, typed + "x") != digest
    # another site's key gives another digest: nothing to compare across sites without it
    assert typed_id_digest(typed_id_key(b"s" * 32), typed) != digest
    assert key != b"k" * 32 and len(key) == 32
    assert typed_id_digest(key, "x" * 5000).endswith(":len5000")


def test_printed_names_keep_unicode_and_collapse_spaces() -> None:
    assert normalise_full_name("  José   Núñez-Åberg ") == "José Núñez-Åberg"
    for bad in ("J", "12345", "Bad\x07Name", "x" * 81):
        with pytest.raises(InvalidUserInput):
            normalise_full_name(bad)


def test_reasons_are_required_and_bounded() -> None:
    assert normalise_reason(" new   starter ") == "new starter"
    for bad in (None, "", "ab", "x" * 501, "tab\x1bescape"):
        with pytest.raises(InvalidUserInput):
            normalise_reason(bad)


def test_roles_are_parsed_and_ordered() -> None:
    assert parse_roles(["qa", "SUPERVISOR"]) == (Role.SUPERVISOR, Role.QA)
    with pytest.raises(InvalidUserInput, match="unknown role"):
        parse_roles(["root"])
