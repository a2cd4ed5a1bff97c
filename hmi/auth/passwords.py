"""Password hashing (argon2id) and the password policy (NIST SP 800-63B rev 4).

Hashing blocks for tens to hundreds of milliseconds by design: the UI calls the services that
use it from a thread worker. Parameters come from ``[password]`` in hmi.toml (at or above the
OWASP floor, enforced by the settings); tests inject cheaper ones through
:class:`Argon2Parameters` directly, never through the site configuration.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from argon2 import PasswordHasher as _Argon2
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from hmi.auth.errors import PasswordRejected
from hmi.config import PasswordSettings

#: zxcvbn gets slow on long inputs; the first characters decide whether a password is guessable.
_STRENGTH_CHECK_CHARS = 64
_CONTEXT_WORDS = ("hmi", "kiosk", "password", "passwort", "blender", "pharma")


@dataclass(frozen=True)
class Argon2Parameters:
    """argon2id cost parameters (memory in KiB)."""

    time_cost: int
    memory_kib: int
    parallelism: int
    hash_len: int = 32
    salt_len: int = 16

    @classmethod
    def from_settings(cls, settings: PasswordSettings) -> Argon2Parameters:
        return cls(
            time_cost=settings.argon2_time_cost,
            memory_kib=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
        )

    def describe(self) -> str:
        return f"argon2id t={self.time_cost} m={self.memory_kib} KiB p={self.parallelism}"


def normalise_password(password: str) -> str:
    """NFKC, so the same password typed on different keyboards or input methods matches."""
    return unicodedata.normalize("NFKC", password)


class PasswordHasher:
    """argon2id hashing with the site's parameters; verification never raises on a mismatch."""

    def __init__(self, params: Argon2Parameters) -> None:
        self.params = params
        self._hasher = _Argon2(
            time_cost=params.time_cost,
            memory_cost=params.memory_kib,
            parallelism=params.parallelism,
            hash_len=params.hash_len,
            salt_len=params.salt_len,
            type=Type.ID,
        )
        self._dummy: str | None = None

    def hash(self, password: str) -> str:
        return self._hasher.hash(normalise_password(password))

    def verify(self, encoded: str, password: str) -> bool:
        try:
            return self._hasher.verify(encoded, normalise_password(password))
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, encoded: str) -> bool:
        """Whether a stored hash uses other parameters than the site's current ones."""
        try:
            return self._hasher.check_needs_rehash(encoded)
        except (InvalidHashError, ValueError):
            return True

    def burn(self, password: str) -> None:
        """Spend the time of one verification (unknown user IDs must not answer faster)."""
        if self._dummy is None:
            self._dummy = self._hasher.hash(secrets.token_urlsafe(24))
        self.verify(self._dummy, password)


def generate_temporary_password(length: int = 20) -> str:
    """A random temporary password (about 120 bits; must be changed at the next login)."""
    alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _words(texts: Iterable[str]) -> list[str]:
    words: list[str] = []
    for text in texts:
        if not text:
            continue
        lowered = text.lower()
        words.append(lowered)
        words.extend(part for part in re.split(r"[\s._\-@']+", lowered) if len(part) >= 3)
    return sorted(set(words), key=len, reverse=True)


class PasswordPolicy:
    """Checks a new password: length, characters, guessability (zxcvbn) and the user's context.

    No composition rules (NIST SP 800-63B): length and unguessability only. The user's own ID
    and name, the site's names and obvious product words are treated as known to an attacker.
    """

    def __init__(self, settings: PasswordSettings, *, context: Sequence[str] = ()) -> None:
        self.settings = settings
        self.context = tuple(context)

    def min_length(self, *, with_totp: bool) -> int:
        s = self.settings
        return s.min_length_with_totp if with_totp else s.min_length_without_totp

    def relies_on_totp(self, password: str, *, with_totp: bool) -> bool:
        """Whether the password only meets the shorter minimum allowed with an authenticator
        (so it must be changed if the account stops using one)."""
        short = len(normalise_password(password)) < self.settings.min_length_without_totp
        return with_totp and short

    def problems(
        self, password: str, *, user_id: str, full_name: str, with_totp: bool
    ) -> list[str]:
        """Every rule the password breaks (empty when acceptable)."""
        text = normalise_password(password)
        found: list[str] = []
        minimum = self.min_length(with_totp=with_totp)
        if len(text) < minimum:
            extra = "" if with_totp else " (8 for accounts that also use an authenticator)"
            found.append(f"use at least {minimum} characters{extra}")
        if len(text) > self.settings.max_length:
            found.append(f"use at most {self.settings.max_length} characters")
        if any(unicodedata.category(ch) in {"Cc", "Cf", "Cs", "Co", "Cn"} for ch in text):
            found.append("use printable characters only (no control characters)")
        if found:
            return found
        context = _words([user_id, full_name, *self.context, *_CONTEXT_WORDS])
        s = self.settings
        needed = s.min_guesses_log10_with_totp if with_totp else s.min_guesses_log10_without_totp
        weak = self._weak(text, context, needed)
        if weak is None:
            # Strong as a whole, but maybe only thanks to words an attacker knows.
            remainder = text.lower()
            for word in context:
                remainder = remainder.replace(word, "")
            if remainder != text.lower() and (
                not remainder.strip() or self._weak(remainder, context, needed) is not None
            ):
                weak = "it is built on your user ID, your name or the site's name"
        if weak is not None:
            hint = f": {weak}" if weak else ""
            found.append(f"too easy to guess{hint}; try a few unrelated words")
        return found

    @staticmethod
    def _weak(text: str, context: list[str], needed: float) -> str | None:
        """None when strong enough, otherwise zxcvbn's warning (may be empty)."""
        from zxcvbn import zxcvbn

        sample = text[:_STRENGTH_CHECK_CHARS]
        result = zxcvbn(sample, user_inputs=context, max_length=_STRENGTH_CHECK_CHARS)
        if float(result["guesses_log10"]) >= needed:
            return None
        warning = str(result.get("feedback", {}).get("warning") or "")
        return warning.rstrip(".").lower() if warning else ""

    def require(self, password: str, *, user_id: str, full_name: str, with_totp: bool) -> str:
        """Return the normalised password or raise :class:`PasswordRejected`."""
        found = self.problems(password, user_id=user_id, full_name=full_name, with_totp=with_totp)
        if found:
            raise PasswordRejected(found)
        return normalise_password(password)
