"""TOTP secrets at rest, code checks (RFC 6238: 30 s, +/-1 step, no reuse) and QR output."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from hmi.auth.errors import SiteKeyError, TotpError
from hmi.auth.totp import (
    TotpCipher,
    TotpOutcome,
    check_code,
    code_at,
    grouped_secret,
    load_site_key,
    new_secret,
    normalise_secret,
    provisioning_uri,
    qr_lines,
    step_at,
)

NOW = datetime(2026, 3, 2, 7, 30, 10, tzinfo=UTC)


def test_secrets_have_160_bits_and_differ() -> None:
    first, second = new_secret(), new_secret()
    assert first != second
    assert len(base64.b32decode(first)) * 8 == 160
    assert normalise_secret(grouped_secret(first).lower()) == first
    with pytest.raises(TotpError, match="160 bits"):
        normalise_secret("JBSWY3DPEHPK3PXP")  # 80 bits
    with pytest.raises(TotpError, match="base32"):
        normalise_secret("not base32 at all!")


def test_secrets_are_encrypted_and_bound_to_user_and_enrolment() -> None:
    key = os.urandom(32)
    cipher = TotpCipher(key)
    secret = new_secret()
    stored = cipher.encrypt(secret, user_id="sam", enrolment="3")
    assert stored.startswith("v1:") and secret not in stored
    assert cipher.decrypt(stored, user_id="sam", enrolment="3") == secret
    assert cipher.encrypt(secret, user_id="sam", enrolment="3") != stored  # fresh nonce
    with pytest.raises(SiteKeyError):
        cipher.decrypt(stored, user_id="quinn", enrolment="3")
    with pytest.raises(SiteKeyError):
        cipher.decrypt(stored, user_id="sam", enrolment="4")
    with pytest.raises(SiteKeyError):
        TotpCipher(os.urandom(32)).decrypt(stored, user_id="sam", enrolment="3")
    tampered = stored[:-4] + ("AAAA" if not stored.endswith("AAAA") else "BBBB")
    with pytest.raises(SiteKeyError):
        cipher.decrypt(tampered, user_id="sam", enrolment="3")
    with pytest.raises(SiteKeyError):
        TotpCipher(b"short")


def test_site_key_file_must_be_private_and_32_bytes(tmp_path: Path) -> None:
    path = tmp_path / "site.key"
    with pytest.raises(SiteKeyError, match="missing"):
        load_site_key(path)
    path.write_bytes(os.urandom(32))
    path.chmod(0o644)
    with pytest.raises(SiteKeyError, match="readable by others"):
        load_site_key(path)
    path.chmod(0o600)
    assert len(load_site_key(path)) == 32
    path.write_bytes(b"x" * 16)
    with pytest.raises(SiteKeyError, match="32 bytes"):
        load_site_key(path)


def test_codes_within_one_step_are_accepted() -> None:
    secret = new_secret()
    for offset in (-30, 0, 30):
        code = code_at(secret, NOW + timedelta(seconds=offset))
        match = check_code(secret, code, at=NOW, last_used_step=None)
        assert match.outcome is TotpOutcome.ACCEPTED
        assert match.step == step_at(NOW) + offset // 30
    spaced = code_at(secret, NOW)
    spaced = f"{spaced[:3]} {spaced[3:]}"  # as some authenticators display it
    assert check_code(secret, spaced, at=NOW, last_used_step=None).outcome is TotpOutcome.ACCEPTED


def test_old_codes_are_expired_and_future_ones_wrong() -> None:
    secret = new_secret()
    old = code_at(secret, NOW - timedelta(seconds=90))
    assert check_code(secret, old, at=NOW, last_used_step=None).outcome is TotpOutcome.EXPIRED
    future = code_at(secret, NOW + timedelta(seconds=90))
    current = code_at(secret, NOW)
    if future not in {current, code_at(secret, NOW + timedelta(seconds=30))}:
        assert check_code(secret, future, at=NOW, last_used_step=None).outcome is TotpOutcome.WRONG


def test_a_code_is_never_accepted_twice_nor_an_older_one() -> None:
    secret = new_secret()
    code = code_at(secret, NOW)
    step = step_at(NOW)
    assert check_code(secret, code, at=NOW, last_used_step=step).outcome is TotpOutcome.REPLAYED
    earlier = code_at(secret, NOW - timedelta(seconds=30))
    assert check_code(secret, earlier, at=NOW, last_used_step=step).outcome is TotpOutcome.REPLAYED
    later = code_at(secret, NOW + timedelta(seconds=30))
    assert check_code(secret, later, at=NOW, last_used_step=step).outcome is TotpOutcome.ACCEPTED


@pytest.mark.parametrize("bad", ["", "12345", "1234567", "abcdef", "１２３４５６", "12-456"])
def test_malformed_codes_are_wrong(bad: str) -> None:
    assert check_code(new_secret(), bad, at=NOW, last_used_step=None).outcome is TotpOutcome.WRONG


def test_provisioning_uri_carries_issuer_account_and_rfc_parameters() -> None:
    secret = new_secret()
    uri = provisioning_uri(secret, user_id="sam", issuer="Line HMI Plant A")
    parsed = urlparse(uri)
    query = parse_qs(parsed.query)
    assert parsed.scheme == "otpauth" and parsed.netloc == "totp"
    assert "sam" in parsed.path and query["secret"] == [secret]
    assert query["issuer"] == ["Line HMI Plant A"]
    assert query.get("period", ["30"]) == ["30"] and query.get("digits", ["6"]) == ["6"]


def test_qr_code_as_plain_text_lines() -> None:
    uri = provisioning_uri(new_secret(), user_id="sam", issuer="Line HMI")
    lines = qr_lines(uri)
    assert len({len(line) for line in lines}) == 1  # a rectangle
    assert len(lines[0]) >= 25 + 4  # version >= 2 plus the quiet zone
    assert all(set(line) <= {" ", "▀", "▄", "█"} for line in lines)
    assert "\x1b" not in "".join(lines)
    assert set(lines[0]) == {"█"}  # dark terminal: the light quiet zone is drawn
    inverted = qr_lines(uri, dark_background=False)
    assert inverted != lines and inverted[0].strip(" ") == ""  # light terminal: left blank
