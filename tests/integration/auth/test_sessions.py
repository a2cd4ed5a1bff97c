"""The continuous period of controlled access: idle lock, unlock, absolute limit, logout."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from hmi.auth.errors import AuthenticationFailed, FailureReason, PermissionDenied, SessionNotActive
from hmi.auth.roles import Role, UnknownAction
from hmi.auth.services import build_auth_services
from hmi.auth.sessions import EndCause, LockCause, SessionState

from .conftest import CHEAP_ARGON2, World


def test_inactivity_locks_the_kiosk(cast: World) -> None:
    session = cast.login("olga")
    cast.trail.mark()
    cast.clock.advance(timedelta(minutes=4, seconds=59))
    assert cast.auth.sessions.check_idle(session) is SessionState.ACTIVE
    assert cast.auth.sessions.seconds_until_idle_lock(session) == 1.0
    cast.clock.advance(1)
    assert cast.auth.sessions.check_idle(session) is SessionState.LOCKED
    assert cast.auth.sessions.seconds_until_idle_lock(session) == 0.0
    (locked,) = cast.trail.expect("auth.session.locked")
    assert json.loads(locked["details"])["cause"] == LockCause.IDLE.value
    with pytest.raises(SessionNotActive) as caught:
        cast.auth.sessions.authorize(session, "batch.start")
    assert caught.value.state == "locked"
    (denied,) = cast.trail.expect("auth.permission.denied")
    assert json.loads(denied["details"])["cause"] == "session_locked"


def test_activity_keeps_the_session_open(cast: World) -> None:
    session = cast.login("olga")
    cast.trail.mark()
    for _ in range(5):
        cast.clock.advance(timedelta(minutes=4))
        cast.auth.sessions.touch(session)
    assert cast.auth.sessions.check_idle(session) is SessionState.ACTIVE
    cast.clock.advance(timedelta(minutes=6))
    with pytest.raises(SessionNotActive):
        cast.auth.sessions.touch(session)  # a late touch does not revive an idle session
    cast.trail.expect("auth.session.locked")


def test_only_the_same_users_password_unlocks(cast: World) -> None:
    session = cast.login("olga")
    cast.auth.sessions.lock(session)
    cast.trail.mark()
    with pytest.raises(AuthenticationFailed) as caught:
        cast.auth.sessions.unlock(session, cast.password("otto"))
    assert caught.value.reason is FailureReason.WRONG_PASSWORD
    (failed,) = cast.trail.expect("auth.session.unlock_failed")
    assert failed["actor_id"] == "olga" and failed["session_id"] == session.session_id
    cast.auth.sessions.unlock(session, cast.password("olga"))
    assert session.is_active
    (unlocked,) = cast.trail.expect("auth.session.unlocked")
    assert json.loads(unlocked["details"])["components"] == ["password"]
    cast.auth.sessions.authorize(session, "batch.start")
    cast.trail.expect()


def test_failed_unlocks_lock_the_account_and_end_the_session(cast: World) -> None:
    session = cast.login("olga")
    cast.auth.sessions.lock(session)
    cast.trail.mark()
    for _ in range(5):
        with pytest.raises(AuthenticationFailed):
            cast.auth.sessions.unlock(session, "not her password at all")
    assert session.state is SessionState.ENDED and session.end_cause is EndCause.ACCOUNT_LOCKED
    cast.trail.expect(
        *["auth.session.unlock_failed"] * 5,
        "auth.account.locked",
        "auth.alert.raised",
        "auth.session.ended",
    )


def test_another_user_can_log_in_over_a_locked_kiosk(cast: World) -> None:
    first = cast.login("olga")
    cast.auth.sessions.lock(first)
    cast.trail.mark()
    second = cast.login("sam")
    assert first.state is SessionState.ENDED and first.end_cause is EndCause.SWITCHED_USER
    assert second.is_active
    ended, _, _ = cast.trail.expect(
        "auth.session.ended", "auth.login.succeeded", "auth.session.started"
    )
    assert ended["old_value"] == "locked"
    with pytest.raises(SessionNotActive):
        cast.auth.sessions.unlock(first, cast.password("olga"))


def test_the_absolute_limit_ends_the_session_whatever_the_activity(cast: World) -> None:
    session = cast.login("olga")
    cast.trail.mark()
    for _ in range(12 * 15 - 1):  # every 4 minutes for 11 h 56 min
        cast.clock.advance(timedelta(minutes=4))
        cast.auth.sessions.touch(session)
    assert session.is_active
    cast.clock.advance(timedelta(minutes=4))
    assert cast.auth.sessions.check_idle(session) is SessionState.ENDED
    assert session.end_cause is EndCause.ABSOLUTE_LIMIT
    (ended,) = cast.trail.expect("auth.session.ended")
    assert json.loads(ended["details"]) == {"cause": "absolute_limit", "duration_s": 12 * 3600}


def test_logout_ends_the_session(cast: World) -> None:
    session = cast.login("olga")
    cast.auth.sessions.logout(session)
    assert session.state is SessionState.ENDED and cast.auth.sessions.current is None
    cast.trail.expect("auth.login.succeeded", "auth.session.started", "auth.session.ended")
    with pytest.raises(SessionNotActive):
        cast.auth.sessions.authorize(session, "batch.start")
    cast.trail.expect("auth.permission.denied")
    cast.auth.sessions.logout(session)  # twice is harmless and records nothing
    cast.trail.expect()


def test_permission_is_checked_and_refusals_recorded(cast: World) -> None:
    session = cast.login("olga")
    cast.trail.mark()
    actor = cast.auth.sessions.authorize(session, "batch.step.complete")
    assert (actor.user_id, actor.role, actor.session_id) == ("olga", "operator", session.session_id)
    assert cast.auth.sessions.can(session, "batch.start")
    assert not cast.auth.sessions.can(session, "batch.release")
    with pytest.raises(PermissionDenied) as caught:
        cast.auth.sessions.authorize(session, "batch.release", entity=("batch", "B-7"))
    assert caught.value.role == "operator"
    (denied,) = cast.trail.expect("auth.permission.denied")
    assert (denied["entity_type"], denied["entity_id"]) == ("batch", "B-7")
    assert json.loads(denied["details"]) == {"action": "batch.release", "cause": "role"}
    with pytest.raises(UnknownAction):
        cast.auth.sessions.authorize(session, "batch.relase")
    cast.trail.expect()


def test_a_multi_role_account_switches_role_on_record(cast: World) -> None:
    cast.add_user("mia", roles=[Role.SUPERVISOR, Role.QA], password="harbour lantern 17 fig")
    cast.trail.mark()
    session = cast.login("mia", role=Role.QA)
    assert session.role is Role.QA and session.roles == (Role.SUPERVISOR, Role.QA)
    assert cast.auth.sessions.can(session, "batch.release")
    cast.auth.sessions.set_role(session, Role.SUPERVISOR)
    assert not cast.auth.sessions.can(session, "batch.release")
    _, _, changed = cast.trail.expect(
        "auth.login.succeeded", "auth.session.started", "auth.session.role_changed"
    )
    assert (changed["old_value"], changed["new_value"], changed["actor_role"]) == (
        "qa",
        "supervisor",
        "supervisor",
    )
    with pytest.raises(PermissionDenied):
        cast.auth.sessions.set_role(session, Role.ADMIN)
    cast.trail.expect("auth.permission.denied")


def test_a_restarted_kiosk_ends_the_sessions_it_left_open(cast: World) -> None:
    session = cast.login("olga")
    restarted = build_auth_services(
        cast.site.settings, cast.site.engine, cast.site.audit, cast.clock, argon2=CHEAP_ARGON2
    )
    cast.trail.mark()
    assert restarted.sessions.end_stale_sessions() == [session.session_id]
    (ended,) = cast.trail.expect("auth.session.ended")
    assert json.loads(ended["details"])["cause"] == "terminal_restart"
    with pytest.raises(SessionNotActive):  # the old object learns it at its next use
        cast.auth.sessions.authorize(session, "batch.start")
    assert session.end_cause is EndCause.ENDED_ELSEWHERE
    cast.trail.expect("auth.permission.denied")


def test_changing_ones_own_password(cast: World) -> None:
    session = cast.login("olga")
    cast.trail.mark()
    with pytest.raises(AuthenticationFailed):
        cast.auth.sessions.change_password(session, "wrong current one", "fresh orchard 21 pebble")
    cast.trail.expect("auth.password.change_failed")
    cast.auth.sessions.change_password(session, cast.password("olga"), "fresh orchard 21 pebble")
    cast.trail.expect("auth.password.changed")
    with pytest.raises(Exception, match="reuse"):
        cast.auth.sessions.change_password(
            session, "fresh orchard 21 pebble", cast.password("olga")
        )
    cast.trail.expect("auth.password.rejected")
