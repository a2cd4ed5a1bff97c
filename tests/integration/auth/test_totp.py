"""Authenticator enrolment (QR + key, completes only with a valid code), revocation at once,
re-enrolment on record, secrets encrypted at rest, last use kept."""

from __future__ import annotations

import json
import os
from datetime import timedelta

import pytest
from sqlalchemy import select

from hmi.auth.errors import (
    AccountStateError,
    AuthenticationFailed,
    FailureReason,
    SiteKeyError,
    TotpError,
)
from hmi.auth.roles import Role
from hmi.auth.tables import auth_totp
from hmi.auth.totp import TotpCipher, code_at

from .conftest import World


def test_enrolment_shows_qr_and_key_and_completes_only_with_a_valid_code(cast: World) -> None:
    cast.add_user("nora", roles=[Role.SUPERVISOR], totp=False, password="north wind 55 cedar")
    admin = cast.admin_session()
    cast.trail.mark()
    pending = cast.console.users.begin_totp_enrolment(admin, "nora", reason="first device")
    assert pending.uri.startswith("otpauth://totp/") and "nora" in pending.uri
    assert pending.key_text.replace(" ", "") == pending.secret and len(pending.secret) == 32
    assert pending.qr_lines() and "secret" not in repr(pending)
    user = cast.auth.store.load("nora")
    assert user is not None and not user.totp_active  # pending is not enrolled
    with pytest.raises(TotpError):
        cast.console.users.confirm_totp_enrolment(
            admin,
            pending.enrolment_id,
            "000000" if code_at(pending.secret, cast.clock.now()) != "000000" else "111111",
        )
    started, failed = cast.trail.expect("user.totp.enrolment_started", "user.totp.enrolment_failed")
    assert started["reason"] == "first device" and pending.secret not in str(started)
    cast.console.users.confirm_totp_enrolment(
        admin, pending.enrolment_id, code_at(pending.secret, cast.clock.now())
    )
    (enrolled,) = cast.trail.expect("user.totp.enrolled")
    assert json.loads(enrolled["details"])["re_enrolment"] is False
    user = cast.auth.store.load("nora")
    assert user is not None and user.totp_active and user.totp is not None
    assert user.totp.last_used_at == cast.clock.now()
    assert json.loads(failed["details"])["outcome"] == "wrong"


def test_secrets_are_encrypted_at_rest_with_the_site_key(cast: World) -> None:
    with cast.site.engine.connect() as conn:
        stored = conn.execute(
            select(auth_totp.c.secret_enc).where(auth_totp.c.user_id == "sam")
        ).scalar()
    assert stored is not None and stored.startswith("v1:")
    raw_db = (cast.site.data_dir / "hmi.db").read_bytes()
    for path in cast.site.data_dir.glob("hmi.db*"):
        raw_db += path.read_bytes()
    for secret in cast.secrets.values():
        assert secret.encode() not in raw_db
    with pytest.raises(SiteKeyError):
        TotpCipher(os.urandom(32)).decrypt(stored, user_id="sam", enrolment="2")
    cast.trail.expect()


def test_revocation_takes_effect_immediately(cast: World) -> None:
    sam = cast.login("sam")
    admin = cast.admin_session()
    cast.trail.mark()
    cast.console.users.revoke_totp(admin, "sam", reason="phone lost")
    revoked, ended = cast.trail.expect("user.totp.revoked", "auth.session.ended")
    assert revoked["reason"] == "phone lost" and ended["entity_id"] == sam.session_id
    with pytest.raises(AuthenticationFailed) as caught:
        cast.auth.sessions.login("sam", cast.password("sam"), cast.code("sam"))
    assert caught.value.reason is FailureReason.TOTP_NOT_ENROLLED
    cast.trail.expect("auth.login.failed")
    with pytest.raises(TotpError):
        cast.console.users.revoke_totp(admin, "sam", reason="again")
    cast.trail.expect("user.change.refused")


def test_re_enrolment_replaces_the_old_device_on_record(cast: World) -> None:
    admin = cast.admin_session()
    old_secret = cast.secrets["sam"]
    cast.trail.mark()
    pending = cast.console.users.begin_totp_enrolment(admin, "sam", reason="new phone")
    cast.console.users.confirm_totp_enrolment(
        admin, pending.enrolment_id, code_at(pending.secret, cast.clock.now())
    )
    started, enrolled = cast.trail.expect("user.totp.enrolment_started", "user.totp.enrolled")
    assert json.loads(started["details"])["re_enrolment"] is True
    details = json.loads(enrolled["details"])
    assert details["re_enrolment"] is True and details["previous_enrolment_id"] is not None
    cast.clock.advance(30)
    with pytest.raises(AuthenticationFailed) as caught:
        cast.auth.sessions.login("sam", cast.password("sam"), code_at(old_secret, cast.clock.now()))
    assert caught.value.reason is FailureReason.WRONG_TOTP
    cast.secrets["sam"] = pending.secret
    assert cast.login("sam").is_active
    cast.trail.expect("auth.login.failed", "auth.login.succeeded", "auth.session.started")


def test_an_enrolment_must_be_confirmed_in_time_and_not_by_oneself(cast: World) -> None:
    admin = cast.admin_session()
    pending = cast.console.users.begin_totp_enrolment(admin, "max", reason="new phone")
    cast.clock.advance(timedelta(minutes=10, seconds=1))
    admin = cast.admin_session()  # the first one locked meanwhile
    cast.trail.mark()
    with pytest.raises(TotpError, match="too long ago"):
        cast.console.users.confirm_totp_enrolment(
            admin, pending.enrolment_id, code_at(pending.secret, cast.clock.now())
        )
    with pytest.raises(AccountStateError, match="another administrator"):
        cast.console.users.begin_totp_enrolment(admin, "ada", reason="mine")
    cast.trail.expect("user.change.refused", "user.change.refused")
