"""User IDs, printed names and reasons: what is accepted and how it is stored."""

from __future__ import annotations

import pytest

from hmi.auth.accounts import (
    normalise_full_name,
    normalise_reason,
    normalise_user_id,
    parse_roles,
    typed_id_for_audit,
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


def test_typed_ids_that_cannot_be_ids_are_not_copied_into_the_audit_trail() -> None:
    assert typed_id_for_audit("OLGA") == "olga"
    assert typed_id_for_audit("correct horse battery") == "<not a user ID: 21 characters>"
    assert typed_id_for_audit("x" * 5000) == "<not a user ID: 5000 characters>"


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
