"""Consecutive failures lock the account, alert supervisors and admins; only an admin unlocks."""

from __future__ import annotations

import json

import pytest

from hmi.auth.accounts import UserStatus
from hmi.auth.alerts import AlertState
from hmi.auth.errors import (
    AccountStateError,
    AuthenticationFailed,
    FailureReason,
    InvalidUserInput,
    PermissionDenied,
)
from hmi.auth.roles import Role
from hmi.auth.services import build_auth_services

from .conftest import CHEAP_ARGON2, World

WRONG = "definitely not the password"


def fail_login(
    world: World, user_id: str, password: str = WRONG, totp: str | None = None
) -> AuthenticationFailed:
    with pytest.raises(AuthenticationFailed) as caught:
        world.auth.sessions.login(user_id, password, totp)
    return caught.value


def lock_out(world: World, user_id: str) -> None:
    for _ in range(5):
        fail_login(world, user_id)


def test_five_consecutive_failures_lock_the_account_and_raise_an_alert(cast: World) -> None:
    for attempt in range(1, 5):
        error = fail_login(cast, "olga")
        assert not error.locked_now
        assert cast.auth.store.load("olga").failed_count == attempt  # type: ignore[union-attr]
    error = fail_login(cast, "olga")
    assert error.locked_now and error.reason is FailureReason.WRONG_PASSWORD
    events = cast.trail.expect(
        *["auth.login.failed"] * 5, "auth.account.locked", "auth.alert.raised"
    )
    locked, alert = events[-2], events[-1]
    assert (locked["field"], locked["old_value"], locked["new_value"]) == (
        "status",
        "active",
        "locked",
    )
    details = json.loads(alert["details"])
    assert details["audience"] == ["supervisor", "admin"] and details["subject_user_id"] == "olga"
    user = cast.auth.store.load("olga")
    assert (
        user is not None and user.status is UserStatus.LOCKED and user.locked_at == cast.clock.now()
    )

    sam = cast.login("sam")
    (open_alert,) = cast.auth.alerts.alerts(sam)
    assert (
        open_alert.subject_user_id == "olga"
        and "5 consecutive failed attempts" in open_alert.message
    )
    acknowledged = cast.auth.alerts.acknowledge(sam, open_alert.alert_id)
    assert acknowledged.state is AlertState.ACKNOWLEDGED and acknowledged.acknowledged_by == "sam"
    cast.trail.expect("auth.login.succeeded", "auth.session.started", "auth.alert.acknowledged")
    with pytest.raises(AccountStateError, match="not open"):
        cast.auth.alerts.acknowledge(sam, open_alert.alert_id)
    cast.trail.expect("auth.alert.acknowledge_refused")
    assert cast.auth.alerts.alerts(sam) == []
    assert [a.alert_id for a in cast.auth.alerts.alerts(sam, states=[AlertState.ACKNOWLEDGED])] == [
        open_alert.alert_id
    ]


def test_operators_do_not_see_security_alerts(cast: World) -> None:
    lock_out(cast, "otto")
    olga = cast.login("olga")
    cast.trail.mark()
    with pytest.raises(PermissionDenied):
        cast.auth.alerts.alerts(olga)
    (denied,) = cast.trail.expect("auth.permission.denied")
    assert json.loads(denied["details"])["action"] == "security_alert.view"


def test_a_locked_account_refuses_even_the_right_password(cast: World) -> None:
    lock_out(cast, "olga")
    cast.trail.mark()
    error = fail_login(cast, "olga", cast.password("olga"))
    assert error.reason is FailureReason.ACCOUNT_LOCKED
    (event,) = cast.trail.expect("auth.login.failed")
    assert json.loads(event["details"])["failure"] == "account_locked"


def test_only_an_admin_unlocks_with_a_reason(cast: World) -> None:
    lock_out(cast, "olga")
    sam = cast.login("sam")
    cast.trail.mark()
    with pytest.raises(PermissionDenied):
        cast.auth.users.unlock(sam, "olga", reason="I know her")
    cast.trail.expect("auth.permission.denied")

    admin = cast.admin_session()
    cast.trail.mark()
    with pytest.raises(InvalidUserInput):
        cast.console.users.unlock(admin, "olga", reason="  ")
    cast.trail.expect("user.change.refused")
    user = cast.console.users.unlock(admin, "olga", reason="identity confirmed by phone")
    assert user.status is UserStatus.ACTIVE and user.failed_count == 0
    unlocked, resolved = cast.trail.expect("user.unlocked", "auth.alert.resolved")
    assert unlocked["actor_id"] == "ada" and unlocked["reason"] == "identity confirmed by phone"
    assert resolved["reason"] == "unlocked: identity confirmed by phone"
    with pytest.raises(AccountStateError):
        cast.console.users.unlock(admin, "olga", reason="again")
    cast.trail.expect("user.change.refused")
    assert cast.login("olga").is_active


def test_a_success_resets_the_count(cast: World) -> None:
    for _ in range(4):
        fail_login(cast, "olga")
    cast.auth.sessions.logout(cast.login("olga"))
    for _ in range(4):
        fail_login(cast, "olga")
    user = cast.auth.store.load("olga")
    assert user is not None and user.status is UserStatus.ACTIVE and user.failed_count == 4
    cast.trail.expect(
        *["auth.login.failed"] * 4,
        "auth.login.succeeded",
        "auth.session.started",
        "auth.session.ended",
        *["auth.login.failed"] * 4,
    )


def test_wrong_totp_codes_count_towards_the_lockout(cast: World) -> None:
    for _ in range(5):
        right = cast.code("sam")
        fail_login(cast, "sam", cast.password("sam"), f"{(int(right) + 7) % 1_000_000:06d}")
    user = cast.auth.store.load("sam")
    assert user is not None and user.status is UserStatus.LOCKED
    cast.trail.expect(*["auth.login.failed"] * 5, "auth.account.locked", "auth.alert.raised")


def test_unknown_ids_never_lock_anything(cast: World) -> None:
    for _ in range(7):
        fail_login(cast, "ghost")
    assert all(u.status is not UserStatus.LOCKED for u in cast.auth.store.all())
    cast.trail.expect(*["auth.login.failed"] * 7)


def test_the_threshold_is_configurable(cast: World) -> None:
    settings = cast.site.settings
    strict = settings.model_copy(
        update={"password": settings.password.model_copy(update={"lockout_threshold": 3})}
    )
    kiosk = build_auth_services(
        strict, cast.site.engine, cast.site.audit, cast.clock, argon2=CHEAP_ARGON2
    )
    for _ in range(3):
        with pytest.raises(AuthenticationFailed):
            kiosk.sessions.login("otto", WRONG)
    user = kiosk.store.load("otto")
    assert user is not None and user.status is UserStatus.LOCKED
    events = cast.trail.expect(
        *["auth.login.failed"] * 3, "auth.account.locked", "auth.alert.raised"
    )
    assert json.loads(events[3]["details"])["threshold"] == 3
    assert Role.OPERATOR in user.roles
