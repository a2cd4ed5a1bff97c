"""Password policy (NIST SP 800-63B rev 4) and argon2id hashing."""

from __future__ import annotations

import unicodedata

import pytest
from pydantic import ValidationError

from hmi.auth.errors import PasswordRejected
from hmi.auth.passwords import (
    Argon2Parameters,
    PasswordHasher,
    PasswordPolicy,
    generate_temporary_password,
    normalise_password,
)
from hmi.config import PasswordSettings, SessionSettings

CHEAP = Argon2Parameters(time_cost=1, memory_kib=8, parallelism=1)


@pytest.fixture
def policy() -> PasswordPolicy:
    return PasswordPolicy(PasswordSettings(), context=("Test Site", "Line 1", "KIOSK-01"))


def check(policy: PasswordPolicy, password: str, *, with_totp: bool = False) -> list[str]:
    return policy.problems(password, user_id="asmith", full_name="Alice Smith", with_totp=with_totp)


def test_fifteen_characters_without_totp_and_eight_with(policy: PasswordPolicy) -> None:
    assert check(policy, "orbit canyon 4") != []  # 14
    assert any("at least 15" in p for p in check(policy, "orbit canyon 4"))
    assert check(policy, "orbit canyon 47") == []  # 15
    assert check(policy, "Kw9#pLm2", with_totp=True) == []
    assert any("at least 8" in p for p in check(policy, "Kw9#pLm", with_totp=True))


def test_no_composition_rules_and_long_passphrases_allowed(policy: PasswordPolicy) -> None:
    assert check(policy, "lowercase words only make a fine passphrase") == []
    assert check(policy, "x" * 50 + " quite random tail 9") == []  # up to the maximum
    long = "many unrelated words " * 7  # 147 characters
    assert any("at most 128" in p for p in check(policy, long))


def test_common_and_guessable_passwords_are_rejected(policy: PasswordPolicy) -> None:
    for weak in (
        "password123456789",
        "qwertyuiopasdfghjkl",
        "aaaaaaaaaaaaaaaaaaaa",
        "1234567890123456",
    ):
        problems = check(policy, weak)
        assert problems and "too easy to guess" in problems[0], weak
    for weak in ("Summer2026!", "Welcome2026", "P@ssw0rd99"):  # long enough with TOTP, guessable
        assert "too easy to guess" in check(policy, weak, with_totp=True)[0], weak


def test_passwords_built_on_the_users_id_name_or_site_are_rejected(policy: PasswordPolicy) -> None:
    assert "built on your user ID" in check(policy, "alice.smith2026!!")[0]
    assert "built on your user ID" in check(policy, "Test Site Line 1 kiosk")[0]
    assert "too easy to guess" in check(policy, "asmith-asmith-2026")[0]
    assert check(policy, "Alice's two blue elephants dance") == []


def test_control_characters_are_rejected(policy: PasswordPolicy) -> None:
    assert any("printable" in p for p in check(policy, "orbit canyon\x00 walrus"))


def test_require_raises_with_every_problem(policy: PasswordPolicy) -> None:
    with pytest.raises(PasswordRejected) as caught:
        policy.require("short", user_id="asmith", full_name="Alice Smith", with_totp=False)
    assert caught.value.problems == [
        "use at least 15 characters (8 for accounts that also use an authenticator)"
    ]


def test_relies_on_totp_marks_passwords_only_good_enough_with_an_authenticator(
    policy: PasswordPolicy,
) -> None:
    assert policy.relies_on_totp("Kw9#pLm2vQ", with_totp=True)
    assert not policy.relies_on_totp("Kw9#pLm2vQ-orbit-canyon", with_totp=True)
    assert not policy.relies_on_totp("Kw9#pLm2vQ", with_totp=False)


def test_nfkc_makes_the_same_password_typed_differently_match() -> None:
    hasher = PasswordHasher(CHEAP)
    composed = "Ångström façade déjà vu"
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    stored = hasher.hash(composed)
    assert hasher.verify(stored, decomposed)
    assert normalise_password("ｆｕｌｌｗｉｄｔｈ") == "fullwidth"
    assert not hasher.verify(stored, "Angstrom facade deja vu")


def test_hasher_uses_argon2id_with_the_given_parameters() -> None:
    hasher = PasswordHasher(Argon2Parameters(time_cost=2, memory_kib=19_456, parallelism=1))
    stored = hasher.hash("orbit canyon 47")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert hasher.verify(stored, "orbit canyon 47")
    assert not hasher.verify(stored, "orbit canyon 48")
    assert not hasher.verify("not a hash", "orbit canyon 47")
    assert PasswordHasher(CHEAP).needs_rehash(stored)
    assert not hasher.needs_rehash(stored)
    hasher.burn("anything")  # spends the time of one verification, never raises


def test_product_parameters_come_from_settings_and_respect_the_owasp_floor() -> None:
    params = Argon2Parameters.from_settings(PasswordSettings())
    assert (params.time_cost, params.memory_kib, params.parallelism) == (3, 65_536, 1)
    with pytest.raises(ValidationError):
        PasswordSettings(argon2_memory_kib=8)
    with pytest.raises(ValidationError):
        PasswordSettings(argon2_time_cost=1)
    with pytest.raises(ValidationError):
        PasswordSettings(min_length_without_totp=12)
    with pytest.raises(ValidationError):
        PasswordSettings(max_length=32)
    with pytest.raises(ValidationError):
        SessionSettings(idle_lock_minutes=0)


def test_generated_temporary_passwords_pass_the_policy(policy: PasswordPolicy) -> None:
    first, second = generate_temporary_password(), generate_temporary_password()
    assert first != second and len(first) == 20
    assert check(policy, first) == []
