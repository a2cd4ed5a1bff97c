"""Login: success and every failure path, each leaving its audit events on a verifying chain."""

from __future__ import annotations

import unicodedata
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from hmi.audit.tables import audit_event
from hmi.auth.errors import (
    AuthenticationFailed,
    FailureReason,
    PasswordChangeRequired,
    PasswordRejected,
    SessionNotActive,
)
from hmi.auth.roles import Role
from hmi.auth.services import build_auth_services
from hmi.auth.sessions import EndCause, SessionState
from hmi.auth.tables import auth_session, auth_user
from hmi.auth.totp import code_at

from .conftest import CHEAP_ARGON2, World


def failed(
    world: World, user_id: str, password: str, totp: str | None = None
) -> AuthenticationFailed:
    with pytest.raises(AuthenticationFailed) as caught:
        world.auth.sessions.login(user_id, password, totp)
    return caught.value


def failure_of(event: dict[str, object]) -> object:
    import json

    return json.loads(str(event["details"]))["failure"]


def test_operator_logs_in_with_id_and_password(cast: World) -> None:
    session = cast.login("olga")
    assert session.is_active and session.role is Role.OPERATOR
    assert session.login_components == ("user_id", "password")
    assert session.actor.session_id == session.session_id
    login, started = cast.trail.expect("auth.login.succeeded", "auth.session.started")
    assert login["actor_id"] == "olga" and login["session_id"] == session.session_id
    assert started["entity_id"] == session.session_id
    with cast.site.engine.connect() as conn:
        row = conn.execute(
            select(auth_session).where(auth_session.c.session_id == session.session_id)
        ).one()
        last_login = conn.execute(
            select(auth_user.c.last_login_at).where(auth_user.c.user_id == "olga")
        ).scalar()
    assert row.state == "active" and row.login_components == "user_id,password"
    assert last_login is not None
    assert cast.auth.sessions.current is session


def test_privileged_roles_also_need_a_totp_code(cast: World) -> None:
    assert cast.auth.sessions.totp_needed("sam") and not cast.auth.sessions.totp_needed("olga")
    session = cast.login("sam")
    assert session.login_components == ("user_id", "password", "totp")
    cast.trail.expect("auth.login.succeeded", "auth.session.started")
    user = cast.auth.store.load("sam")
    assert user is not None and user.totp is not None
    assert user.totp.last_used_at == cast.clock.now()  # last successful use is kept


def test_unknown_user_is_recorded_without_the_typed_secret(cast: World) -> None:
    error = failed(cast, "nobody.here", "secret typed by someone 123")
    assert error.reason is FailureReason.UNKNOWN_USER
    assert error.reason.message == FailureReason.WRONG_PASSWORD.message  # no user enumeration
    (event,) = cast.trail.expect("auth.login.failed")
    # not an account: the typed ID is kept only as a keyed digest and its length
    assert event["entity_id"] == cast.auth.store.audit_subject("nobody.here")
    assert event["entity_id"].startswith("uid-hmac:") and event["entity_id"].endswith(":len11")
    assert event["actor_id"] == "system"
    assert failure_of(event) == "unknown_user"
    with cast.site.engine.connect() as conn:
        dump = " ".join(str(v) for row in conn.execute(select(audit_event)) for v in row)
    assert "secret typed by someone" not in dump and "nobody.here" not in dump


def test_a_password_typed_as_the_user_id_is_never_stored_and_repeats_correlate(
    cast: World,
) -> None:
    typed = cast.password("olga").replace(" ", "-")  # looks like a user ID
    failed(cast, typed, "whatever it is")
    failed(cast, typed.upper(), "whatever it is")
    failed(cast, "olga", "granite penguin umbrella eight")
    first, second, known = cast.trail.expect(*["auth.login.failed"] * 3)
    assert first["entity_id"] == second["entity_id"] == cast.auth.store.audit_subject(typed)
    assert first["entity_id"].endswith(f":len{len(typed)}")
    assert known["entity_id"] == "olga"  # an account's ID is stored as it is
    with cast.site.engine.connect() as conn:
        dump = " ".join(str(v) for row in conn.execute(select(audit_event)) for v in row)
    assert typed not in dump.lower()


def test_wrong_password_is_counted(cast: World) -> None:
    error = failed(cast, "olga", "granite penguin umbrella eight")
    assert error.reason is FailureReason.WRONG_PASSWORD and not error.locked_now
    (event,) = cast.trail.expect("auth.login.failed")
    assert failure_of(event) == "wrong_password"
    assert '"consecutive_failures":1' in event["details"]
    user = cast.auth.store.load("olga")
    assert user is not None and user.failed_count == 1
    assert "granite penguin umbrella eight" not in str(event)


def test_disabled_account_cannot_log_in(cast: World) -> None:
    admin = cast.admin_session()
    cast.console.users.disable(admin, "otto", reason="left the company")
    cast.trail.mark()
    error = failed(cast, "otto", cast.password("otto"))
    assert error.reason is FailureReason.ACCOUNT_DISABLED
    (event,) = cast.trail.expect("auth.login.failed")
    assert failure_of(event) == "account_disabled"


def test_password_expiry_when_the_site_turns_ageing_on(cast: World) -> None:
    settings = cast.site.settings
    aged = settings.model_copy(
        update={"password": settings.password.model_copy(update={"max_age_days": 90})}
    )
    kiosk = build_auth_services(
        aged, cast.site.engine, cast.site.audit, cast.clock, argon2=CHEAP_ARGON2
    )
    kiosk.sessions.logout(kiosk.sessions.login("olga", cast.password("olga")))
    cast.clock.advance(timedelta(days=91))
    cast.trail.mark()
    with pytest.raises(PasswordChangeRequired) as caught:
        kiosk.sessions.login("olga", cast.password("olga"))
    assert caught.value.reason is FailureReason.PASSWORD_EXPIRED
    cast.trail.expect("auth.login.password_change_required")
    session = kiosk.sessions.complete_password_change(
        caught.value.token, "fresh meadow tunnel 88 kite"
    )
    assert session.is_active
    events = cast.trail.expect(
        "auth.password.changed", "auth.login.succeeded", "auth.session.started"
    )
    assert events[0]["actor_id"] == "olga"


def test_temporary_password_must_be_changed_at_first_login(cast: World) -> None:
    cast.add_user(
        "tess", roles=[Role.OPERATOR], password="temporary pumpkin 4 river", temporary=True
    )
    cast.trail.mark()
    with pytest.raises(PasswordChangeRequired) as caught:
        cast.auth.sessions.login("tess", "temporary pumpkin 4 river")
    token = caught.value.token
    assert caught.value.reason is FailureReason.PASSWORD_CHANGE_REQUIRED
    assert caught.value.expires_at == cast.clock.now() + timedelta(minutes=5)
    cast.trail.expect("auth.login.password_change_required")
    with pytest.raises(PasswordRejected):
        cast.auth.sessions.complete_password_change(token, "short one")
    with pytest.raises(PasswordRejected) as reused:
        cast.auth.sessions.complete_password_change(token, "temporary pumpkin 4 river")
    assert "reuse" in reused.value.problems[0]
    rejected = cast.trail.expect("auth.password.rejected", "auth.password.rejected")
    assert "short one" not in str(rejected) and "pumpkin" not in str(rejected)
    session = cast.auth.sessions.complete_password_change(token, "my own quiet violin 63")
    assert session.user_id == "tess"
    cast.trail.expect("auth.password.changed", "auth.login.succeeded", "auth.session.started")
    with pytest.raises(SessionNotActive):  # the token was single use
        cast.auth.sessions.complete_password_change(token, "another fine choice 99")
    cast.auth.sessions.logout(session)
    assert cast.auth.sessions.login("tess", "my own quiet violin 63").is_active


def test_password_change_token_expires(cast: World) -> None:
    cast.add_user(
        "tess", roles=[Role.OPERATOR], password="temporary pumpkin 4 river", temporary=True
    )
    with pytest.raises(PasswordChangeRequired) as caught:
        cast.auth.sessions.login("tess", "temporary pumpkin 4 river")
    cast.clock.advance(timedelta(minutes=5, seconds=1))
    cast.trail.mark()
    with pytest.raises(SessionNotActive):
        cast.auth.sessions.complete_password_change(caught.value.token, "my own quiet violin 63")
    cast.trail.expect()


def test_missing_totp_is_refused_without_counting(cast: World) -> None:
    error = failed(cast, "sam", cast.password("sam"))
    assert error.reason is FailureReason.TOTP_REQUIRED
    (event,) = cast.trail.expect("auth.login.failed")
    assert failure_of(event) == "totp_required"
    user = cast.auth.store.load("sam")
    assert user is not None and user.failed_count == 0


def test_wrong_totp_is_counted(cast: World) -> None:
    right = cast.code("sam")
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    error = failed(cast, "sam", cast.password("sam"), wrong)
    assert error.reason is FailureReason.WRONG_TOTP
    (event,) = cast.trail.expect("auth.login.failed")
    assert wrong not in event["details"]
    user = cast.auth.store.load("sam")
    assert user is not None and user.failed_count == 1


def test_replayed_totp_is_refused(cast: World) -> None:
    code = cast.code("sam")
    session = cast.auth.sessions.login("sam", cast.password("sam"), code)
    cast.auth.sessions.logout(session)
    cast.trail.mark()
    error = failed(cast, "sam", cast.password("sam"), code)
    assert error.reason is FailureReason.TOTP_REPLAYED
    (event,) = cast.trail.expect("auth.login.failed")
    assert failure_of(event) == "totp_replayed"


def test_expired_totp_is_refused(cast: World) -> None:
    cast.clock.advance(300)
    stale = code_at(cast.secrets["sam"], cast.clock.now() - timedelta(seconds=120))
    error = failed(cast, "sam", cast.password("sam"), stale)
    assert error.reason is FailureReason.TOTP_EXPIRED
    cast.trail.expect("auth.login.failed")


def test_totp_role_without_an_enrolled_authenticator_cannot_log_in(cast: World) -> None:
    cast.add_user("nora", roles=[Role.SUPERVISOR], totp=False, password="north wind 55 cedar")
    cast.trail.mark()
    error = failed(cast, "nora", "north wind 55 cedar", "123456")
    assert error.reason is FailureReason.TOTP_NOT_ENROLLED
    cast.trail.expect("auth.login.failed")


def test_unicode_passwords_and_ids_are_normalised(cast: World) -> None:
    composed = "Ångström façade déjà vu 2026"
    cast.add_user("uma", roles=[Role.OPERATOR], password=composed)
    cast.trail.mark()
    session = cast.auth.sessions.login("ＵＭＡ", unicodedata.normalize("NFD", composed))
    assert session.user_id == "uma"
    cast.trail.expect("auth.login.succeeded", "auth.session.started")


def test_over_long_input_is_refused_without_hashing_and_counted(cast: World) -> None:
    error = failed(cast, "olga", "x" * 100_000)
    assert error.reason is FailureReason.INVALID_INPUT
    error = failed(cast, "o" * 5000, "whatever")
    assert error.reason is FailureReason.INVALID_INPUT
    first, second = cast.trail.expect("auth.login.failed", "auth.login.failed")
    assert first["entity_id"] == "olga" and '"consecutive_failures":1' in first["details"]
    assert second["entity_id"] == cast.auth.store.audit_subject("o" * 5000)
    assert second["entity_id"].endswith(":len5000") and "ooo" not in second["entity_id"]
    assert len(second["details"]) < 400


def test_malformed_user_id_is_recorded_as_such(cast: World) -> None:
    error = failed(cast, "olga; DROP TABLE auth_user", "whatever")
    assert error.reason is FailureReason.INVALID_INPUT
    (event,) = cast.trail.expect("auth.login.failed")
    assert event["entity_id"].startswith("uid-hmac:") and "DROP" not in event["entity_id"]


def test_role_must_be_one_the_user_holds(cast: World) -> None:
    with pytest.raises(AuthenticationFailed) as caught:
        cast.auth.sessions.login("olga", cast.password("olga"), role=Role.QA)
    assert caught.value.reason is FailureReason.ROLE_NOT_ASSIGNED
    cast.trail.expect("auth.login.failed")


def test_another_users_login_ends_the_first_session(cast: World) -> None:
    first = cast.login("olga")
    cast.trail.mark()
    second = cast.login("otto")
    assert first.state is SessionState.ENDED and first.end_cause is EndCause.SWITCHED_USER
    assert second.is_active and cast.auth.sessions.current is second
    ended, _, _ = cast.trail.expect(
        "auth.session.ended", "auth.login.succeeded", "auth.session.started"
    )
    assert ended["entity_id"] == first.session_id and '"cause":"switched_user"' in ended["details"]


def test_sessions_are_stored_for_reference(cast: World) -> None:
    session = cast.login("quinn")
    cast.auth.sessions.logout(session)
    with cast.site.engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT user_id, role, state, end_cause, terminal_id FROM auth_session"
                " WHERE session_id = :s"
            ),
            {"s": session.session_id},
        ).one()
    assert tuple(row) == ("quinn", "qa", "ended", "logout", "KIOSK-01")
    cast.trail.expect("auth.login.succeeded", "auth.session.started", "auth.session.ended")
