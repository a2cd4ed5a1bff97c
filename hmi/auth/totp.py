"""TOTP (RFC 6238) second factor: secrets encrypted at rest, code checks, enrolment QR codes.

Secrets are 160 bits (32 base32 characters) and never stored in plain text: they are encrypted
with AES-256-GCM under a key derived (HKDF-SHA256) from the site key (``keys/site.key``, 32
random bytes created by ``hmi init``), bound to the user ID and enrolment number so a stored
secret cannot be moved to another account. Codes: 6 digits, 30 s step, one step of clock drift
either way, and a code (or an older one) is never accepted twice.
"""

from __future__ import annotations

import base64
import hmac
import os
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TextIO

import pyotp
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hmi.auth.errors import SiteKeyError, TotpError

STEP_SECONDS = 30
DIGITS = 6
WINDOW_STEPS = 1
#: How far outside the window a code is still recognised as "expired" rather than "wrong".
EXPIRED_LOOKBACK_STEPS = 10
SECRET_CHARS = 32  # 32 base32 characters = 160 bits
MIN_SECRET_BITS = 160
SITE_KEY_BYTES = 32
_CIPHER_VERSION = "v1"
_HKDF_INFO = b"hmi/totp-secret/v1"


def load_site_key(path: Path) -> bytes:
    """Read the site key, refusing a file others can read or one of the wrong size."""
    try:
        mode = path.stat().st_mode & 0o777
        data = path.read_bytes()
    except FileNotFoundError:
        raise SiteKeyError(f"the site key {path} is missing; TOTP secrets cannot be read") from None
    except OSError as exc:
        raise SiteKeyError(f"cannot read the site key {path}: {exc}") from None
    if mode & 0o077:
        raise SiteKeyError(
            f"the site key {path} is readable by others (mode {mode:o}); it must be 0600"
        )
    if len(data) != SITE_KEY_BYTES:
        raise SiteKeyError(f"the site key {path} is not {SITE_KEY_BYTES} bytes long")
    return data


class TotpCipher:
    """Encrypts TOTP secrets for storage (AES-256-GCM, key derived from the site key)."""

    def __init__(self, site_key: bytes) -> None:
        if len(site_key) != SITE_KEY_BYTES:
            raise SiteKeyError(f"the site key must be {SITE_KEY_BYTES} bytes")
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
            site_key
        )
        self._aead = AESGCM(derived)

    def encrypt(self, secret: str, *, user_id: str, enrolment: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, secret.encode("ascii"), _aad(user_id, enrolment))
        return f"{_CIPHER_VERSION}:{base64.urlsafe_b64encode(nonce + sealed).decode('ascii')}"

    def decrypt(self, stored: str, *, user_id: str, enrolment: str) -> str:
        version, _, body = stored.partition(":")
        if version != _CIPHER_VERSION:
            raise SiteKeyError(f"unknown TOTP secret format {version!r}")
        try:
            raw = base64.urlsafe_b64decode(body.encode("ascii"))
            plain = self._aead.decrypt(raw[:12], raw[12:], _aad(user_id, enrolment))
        except (InvalidTag, ValueError) as exc:
            raise SiteKeyError(
                "a stored TOTP secret cannot be decrypted: wrong site key or altered record"
            ) from exc
        return plain.decode("ascii")


def _aad(user_id: str, enrolment: str) -> bytes:
    return f"hmi-totp|{user_id}|{enrolment}".encode()


def new_secret() -> str:
    """A fresh random secret: 32 base32 characters (160 bits)."""
    return pyotp.random_base32(length=SECRET_CHARS)


def normalise_secret(text: str) -> str:
    """A secret given by a person or a provisioning system: spaces removed, upper case, checked."""
    cleaned = "".join(text.split()).upper().rstrip("=")
    try:
        raw = base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
    except (ValueError, TypeError) as exc:
        raise TotpError("the TOTP secret is not valid base32") from exc
    if len(raw) * 8 < MIN_SECRET_BITS:
        raise TotpError(f"the TOTP secret must have at least {MIN_SECRET_BITS} bits")
    return cleaned


def step_at(moment: datetime) -> int:
    return int(moment.timestamp()) // STEP_SECONDS


def code_for_step(secret: str, step: int) -> str:
    return str(pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).at(step * STEP_SECONDS))


def code_at(secret: str, moment: datetime) -> str:
    """The code an authenticator shows at ``moment`` (tests, demos and benchmarks)."""
    return code_for_step(secret, step_at(moment))


class TotpOutcome(StrEnum):
    ACCEPTED = "accepted"
    WRONG = "wrong"
    REPLAYED = "replayed"
    EXPIRED = "expired"


@dataclass(frozen=True)
class TotpMatch:
    outcome: TotpOutcome
    step: int | None = None


def normalise_code(code: str) -> str | None:
    """Digits only (spaces allowed for readability); None when it cannot be a code."""
    cleaned = "".join(code.split())
    if len(cleaned) != DIGITS or not cleaned.isascii() or not cleaned.isdigit():
        return None
    return cleaned


def check_code(secret: str, code: str, *, at: datetime, last_used_step: int | None) -> TotpMatch:
    """Match a code against the steps around ``at``; a step at or before the last used one is a
    replay (a code is never accepted twice, nor one older than the last accepted)."""
    cleaned = normalise_code(code)
    if cleaned is None:
        return TotpMatch(TotpOutcome.WRONG)
    current = step_at(at)
    for step in range(current - WINDOW_STEPS, current + WINDOW_STEPS + 1):
        if hmac.compare_digest(code_for_step(secret, step), cleaned):
            if last_used_step is not None and step <= last_used_step:
                return TotpMatch(TotpOutcome.REPLAYED, step)
            return TotpMatch(TotpOutcome.ACCEPTED, step)
    for step in range(current - WINDOW_STEPS - EXPIRED_LOOKBACK_STEPS, current - WINDOW_STEPS):
        if hmac.compare_digest(code_for_step(secret, step), cleaned):
            return TotpMatch(TotpOutcome.EXPIRED, step)
    return TotpMatch(TotpOutcome.WRONG)


def provisioning_uri(secret: str, *, user_id: str, issuer: str) -> str:
    """The ``otpauth://`` URI an authenticator app reads from the QR code."""
    uri = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=user_id, issuer_name=issuer
    )
    return str(uri)


def grouped_secret(secret: str) -> str:
    """The key as a person types it into an authenticator: groups of four."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def qr_lines(uri: str, *, dark_background: bool = True, border: int = 2) -> list[str]:
    """The QR code as lines of plain text (Unicode half blocks, two modules per character row).

    No escape codes, so a Textual widget can show it. On a dark background the light modules are
    drawn, so the code appears dark-on-light as scanners expect.
    """
    import segno

    qr = segno.make(uri, error="m", micro=False)
    rows = [list(row) for row in qr.matrix_iter(scale=1, border=border)]
    if len(rows) % 2:
        rows.append([0] * len(rows[0]))
    glyphs = {(False, False): " ", (True, False): "▀", (False, True): "▄", (True, True): "█"}

    def ink(dark: object) -> bool:
        return not dark if dark_background else bool(dark)

    return [
        "".join(glyphs[(ink(top), ink(bottom))] for top, bottom in zip(upper, lower, strict=True))
        for upper, lower in zip(rows[0::2], rows[1::2], strict=True)
    ]


def print_qr(uri: str, out: TextIO) -> None:
    """Print the QR code to a real terminal (colours set explicitly, any background)."""
    import segno

    qr = segno.make(uri, error="m", micro=False)
    qr.terminal(out=out, compact=True)
