"""Account administration: identity at creation, IDs unique forever, segregation of duties,
password resets and history, disabling, and the access review."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from hmi.auth.accounts import UserStatus
from hmi.auth.errors import (
    AccountStateError,
    AuthenticationFailed,
    FailureReason,
    InvalidUserInput,
    PasswordChangeRequired,
    PasswordRejected,
    PermissionDenied,
    SessionNotActive,
    UnknownUser,
    UserIdUnavailable,
)
from hmi.auth.roles import Role
from hmi.auth.sessions import EndCause
from hmi.auth.users import IdentityVerification
from tests.helpers.audit import outside_engine

from .conftest import IDENTITY, World


def create(world: World, user_id: str, **overrides: object) -> None:
    fields: dict[str, object] = dict(
        user_id=user_id,
        full_name="Nina New",
        roles=["operator"],
        password="sapphire tugboat 39 thistle",
        identity=IDENTITY,
        reason="new starter",
    )
    fields.update(overrides)
    world.console.users.create_user(world.admin_session(), **fields)  # type: ignore[arg-type]


def test_creation_records_who_verified_the_identity_and_how(cast: World) -> None:
    create(cast, "Nina")
    user = cast.auth.store.load("nina")
    assert user is not None and user.user_id == "nina" and user.must_change_password
    assert (user.identity_verified_by, user.identity_method) == (
        IDENTITY.verified_by,
        IDENTITY.method,
    )
    assert user.created_by == "ada"
    _, _, created = cast.trail.expect(
        "auth.login.succeeded", "auth.session.started", "user.created"
    )
    details = json.loads(created["details"])
    assert details["identity_verified_by"] == IDENTITY.verified_by
    assert details["identity_method"] == IDENTITY.method and details["temporary_password"] is True
    assert created["reason"] == "new starter" and created["actor_id"] == "ada"
    assert "sapphire" not in str(created)


def test_identity_verification_is_required(cast: World) -> None:
    cast.admin_session()
    cast.trail.mark()
    with pytest.raises(InvalidUserInput, match="verified"):
        create(cast, "nina", identity=IdentityVerification("", "passport"))
    with pytest.raises(InvalidUserInput):
        create(cast, "nina", identity=IdentityVerification("HR", " "))
    cast.trail.expect("user.change.refused", "user.change.refused")
    assert cast.auth.store.load("nina") is None


def test_a_user_id_is_unique_forever(cast: World) -> None:
    admin = cast.admin_session()
    cast.console.users.disable(admin, "otto", reason="left the company")
    cast.trail.mark()
    for again in ("otto", "OTTO", " Otto "):
        with pytest.raises(UserIdUnavailable):
            create(cast, again)
    refused = cast.trail.expect(*["user.change.refused"] * 3)
    assert json.loads(refused[0]["details"])["error"] == "UserIdUnavailable"
    with (
        outside_engine(cast.site).begin() as conn,
        pytest.raises(DBAPIError, match="never deleted"),
    ):
        conn.execute(text("DELETE FROM auth_user WHERE user_id = 'otto'"))
    with (
        outside_engine(cast.site).begin() as conn,
        pytest.raises(DBAPIError, match="never be changed"),
    ):
        conn.execute(text("UPDATE auth_user SET user_id = 'otto2' WHERE user_id = 'otto'"))
    user = cast.auth.store.load("otto")
    assert user is not None and user.status is UserStatus.DISABLED


def test_the_password_policy_applies_at_creation(cast: World) -> None:
    cast.admin_session()
    cast.trail.mark()
    with pytest.raises(PasswordRejected) as caught:
        create(cast, "nina", password="Nina New 2026")
    assert any("at least 15" in p for p in caught.value.problems)
    with pytest.raises(PasswordRejected):
        create(cast, "nina", password="password123456789")
    (first, _) = cast.trail.expect("user.change.refused", "user.change.refused")
    assert "Nina New 2026" not in first["details"]
    create(cast, "sven", roles=["supervisor"], password="Kw9#pLm2")  # 8 is enough with TOTP
    cast.trail.expect("user.created")


def test_segregation_of_duties_in_role_assignment(cast: World) -> None:
    admin = cast.admin_session()
    cast.trail.mark()
    with pytest.raises(InvalidUserInput, match="segregation of duties"):
        create(cast, "nina", roles=["admin", "qa"])
    with pytest.raises(InvalidUserInput, match="segregation of duties"):
        cast.console.users.set_roles(admin, "bob", ["admin", "operator"], reason="more hands")
    with pytest.raises(AccountStateError, match="your own roles"):
        cast.console.users.set_roles(admin, "ada", ["viewer"], reason="testing")
    cast.trail.expect(*["user.change.refused"] * 3)


def test_non_admins_cannot_manage_accounts(cast: World) -> None:
    quinn = cast.login("quinn")
    cast.trail.mark()
    with pytest.raises(PermissionDenied):
        cast.auth.users.create_user(
            quinn,
            user_id="nina",
            full_name="Nina New",
            roles=["qa"],
            password="sapphire tugboat 39 thistle",
            identity=IDENTITY,
            reason="helping out",
        )
    with pytest.raises(PermissionDenied):
        cast.auth.users.set_roles(quinn, "olga", ["qa"], reason="promotion")
    denied = cast.trail.expect("auth.permission.denied", "auth.permission.denied")
    assert {json.loads(d["details"])["operation"] for d in denied} == {"create", "set_roles"}


def test_roles_change_on_record_and_end_open_sessions(cast: World) -> None:
    olga = cast.login("olga")
    admin = cast.admin_session()
    cast.trail.mark()
    user = cast.console.users.set_roles(
        admin, "olga", ["operator", "viewer"], reason="also reads audit"
    )
    assert user.roles == (Role.OPERATOR, Role.VIEWER)
    changed, ended = cast.trail.expect("user.roles.changed", "auth.session.ended")
    assert (changed["old_value"], changed["new_value"]) == ("operator", "operator,viewer")
    assert json.loads(ended["details"])["cause"] == EndCause.ROLES_CHANGED.value
    with pytest.raises(SessionNotActive):
        cast.auth.sessions.authorize(olga, "batch.start")
    cast.trail.expect("auth.permission.denied")


def test_disabling_ends_the_users_sessions(cast: World) -> None:
    olga = cast.login("olga")
    admin = cast.admin_session()
    cast.trail.mark()
    with pytest.raises(AccountStateError):
        cast.console.users.disable(admin, "ada", reason="oops")
    cast.trail.expect("user.change.refused")
    user = cast.console.users.disable(admin, "olga", reason="left the company")
    assert user.status is UserStatus.DISABLED and user.disabled_by == "ada"
    disabled, ended = cast.trail.expect("user.disabled", "auth.session.ended")
    assert disabled["reason"] == "left the company" and ended["entity_id"] == olga.session_id
    with pytest.raises(SessionNotActive):
        cast.auth.sessions.authorize(olga, "batch.start")
    cast.trail.expect("auth.permission.denied")
    with pytest.raises(AccountStateError):
        cast.console.users.disable(admin, "olga", reason="again")
    with pytest.raises(UnknownUser):
        cast.console.users.disable(admin, "nobody", reason="typo")
    cast.trail.expect("user.change.refused", "user.change.refused")


def test_reset_sets_a_temporary_password_and_history_blocks_reuse(cast: World) -> None:
    admin = cast.admin_session()
    passwords = [
        "first fine river 11 ok",
        "second fine river 22 ok",
        "third fine river 33 ok",
        "fourth fine river 44 ok",
    ]
    session = cast.login("olga")
    current = cast.password("olga")
    for new in passwords:
        cast.auth.sessions.change_password(session, current, new)
        current = new
    cast.trail.mark()
    # the last five: the original and the four changes
    with pytest.raises(PasswordRejected, match="reuse"):
        cast.console.users.reset_password(admin, "olga", cast.password("olga"), reason="forgot it")
    cast.trail.expect("user.change.refused")
    cast.console.users.reset_password(
        admin, "olga", "temporary walnut 71 ridge", reason="forgot it"
    )
    (reset,) = cast.trail.expect("user.password.reset")
    with pytest.raises(PasswordChangeRequired):
        cast.auth.sessions.login("olga", "temporary walnut 71 ridge")
    with pytest.raises(AuthenticationFailed) as caught:
        cast.auth.sessions.login("olga", current)
    assert caught.value.reason is FailureReason.WRONG_PASSWORD
    cast.trail.expect("auth.login.password_change_required", "auth.login.failed")
    with pytest.raises(AccountStateError):
        cast.console.users.reset_password(admin, "ada", "temporary walnut 71 ridge", reason="mine")
    cast.trail.expect("user.change.refused")
    assert reset["reason"] == "forgot it"


def test_a_password_only_good_enough_with_totp_must_change_without_it(cast: World) -> None:
    admin = cast.admin_session()
    cast.add_user("sven", roles=[Role.SUPERVISOR], password="Kw9#pLm2")
    cast.console.users.set_roles(admin, "sven", ["operator"], reason="moved to the line")
    cast.console.users.revoke_totp(admin, "sven", reason="no longer needed")
    cast.trail.mark()
    with pytest.raises(PasswordChangeRequired):
        cast.auth.sessions.login("sven", "Kw9#pLm2")
    cast.trail.expect("auth.login.password_change_required")


def test_access_review_lists_everyone_with_status_and_is_recorded(cast: World) -> None:
    cast.login("olga")
    for _ in range(5):
        with pytest.raises(AuthenticationFailed):
            cast.auth.sessions.login("otto", "wrong wrong wrong wrong")
    admin = cast.admin_session()
    cast.console.users.disable(admin, "vera", reason="contract ended")
    cast.add_user("nora", roles=[Role.SUPERVISOR], totp=False, password="north wind 55 cedar")
    cast.trail.mark()
    rows = {r.user_id: r for r in cast.console.users.access_review(admin)}
    assert set(rows) == {"ada", "olga", "otto", "sam", "quinn", "max", "vera", "bob", "nora"}
    assert rows["olga"].last_login_at is not None and rows["otto"].locked
    assert rows["otto"].status == "locked" and rows["vera"].status == "disabled"
    assert rows["sam"].totp.value == "active" and rows["nora"].totp.value == "none"
    assert rows["ada"].roles == (Role.ADMIN,) and rows["ada"].password_age_days == 0
    (event,) = cast.trail.expect("user.access_review.generated")
    details = json.loads(event["details"])
    assert details["users"] == 9 and details["locked"] == 1 and details["disabled"] == 1
    assert details["without_totp_where_required"] == ["nora"]
    quinn = cast.login("quinn")  # QA may run the review too (user.review)
    assert len(cast.auth.users.access_review(quinn)) == 9
    olga = cast.login("olga")
    cast.trail.mark()
    with pytest.raises(PermissionDenied):
        cast.auth.users.access_review(olga)
    cast.trail.expect("auth.permission.denied")
