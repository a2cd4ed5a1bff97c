"""The auth schema (append-only records, state tables never deleted) and the first admin."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import insert, inspect, select, text
from sqlalchemy.exc import DBAPIError

from hmi.audit.tables import audit_event
from hmi.audit.verify import Kind
from hmi.auth.errors import AccountStateError, TotpError
from hmi.auth.services import build_auth_services
from hmi.auth.tables import user_training
from hmi.auth.totp import code_at, new_secret
from hmi.clock import ManualClock
from hmi.site import Site
from tests.helpers.audit import outside_engine, verify

from .conftest import ADMIN_PASSWORD, CHEAP_ARGON2, IDENTITY, World, chain_verifies

AUTH_TABLES = {
    "auth_user",
    "auth_password_history",
    "auth_totp",
    "auth_session",
    "esignature",
    "auth_signature_statement",
    "auth_alert",
    "user_training",
}


def test_the_migration_creates_the_auth_tables(site: Site) -> None:
    assert set(inspect(site.engine).get_table_names()) >= AUTH_TABLES
    with site.engine.connect() as conn:
        versions = [r[0] for r in conn.execute(text("SELECT version FROM schema_migration"))]
    assert 2 in versions
    chain_verifies(site)


def test_the_first_admin_is_created_with_a_confirmed_authenticator(world: World) -> None:
    with world.site.engine.connect() as conn:
        events = [
            dict(r)
            for r in conn.execute(select(audit_event).order_by(audit_event.c.seq)).mappings()
        ]
    created, enrolled = events[-2:]
    assert (created["action"], enrolled["action"]) == ("user.created", "user.totp.enrolled")
    assert created["actor_id"] == "system" and json.loads(created["details"])["first_admin"] is True
    admin = world.auth.store.load("ada")
    assert admin is not None and admin.totp_active and not admin.must_change_password
    assert admin.identity_verified_by == IDENTITY.verified_by
    with pytest.raises(AccountStateError):
        secret = new_secret()
        world.auth.users.create_first_admin(
            user_id="eve",
            full_name="Eve Second",
            password="another admin 77 plum",
            identity=IDENTITY,
            totp_secret=secret,
            totp_code=code_at(secret, world.clock.now()),
        )
    assert world.auth.store.load("eve") is None
    world.trail.expect()


def test_a_wrong_code_creates_no_first_admin(site: Site, clock: ManualClock) -> None:
    auth = build_auth_services(site.settings, site.engine, site.audit, clock, argon2=CHEAP_ARGON2)
    secret = new_secret()
    right = code_at(secret, clock.now())
    with pytest.raises(TotpError):
        auth.users.create_first_admin(
            user_id="ada",
            full_name="Ada Admin",
            password=ADMIN_PASSWORD,
            identity=IDENTITY,
            totp_secret=secret,
            totp_code="000000" if right != "000000" else "111111",
        )
    assert not auth.users.has_users()
    with site.engine.connect() as conn:
        last = conn.execute(select(audit_event.c.action).order_by(audit_event.c.seq.desc())).first()
    assert last is not None and last[0] == "user.totp.enrolment_failed"
    chain_verifies(site)


def test_records_are_append_only_and_accounts_never_deleted(world: World) -> None:
    world.inserted_outside.add("user_training")
    engine = outside_engine(world.site)  # another program holding the file: only triggers
    with engine.begin() as conn:
        conn.execute(
            insert(user_training),
            {
                "user_id": "ada",
                "recipe_id": "PARA-500",
                "recipe_version": "3",
                "status": "trained",
                "trained_by": "ada",
                "ts": "2026-03-02T07:30:00.000000Z",
            },
        )
    refused = [
        "UPDATE user_training SET status = 'withdrawn'",
        "DELETE FROM user_training",
        "UPDATE auth_password_history SET password_hash = 'x'",
        "DELETE FROM auth_password_history",
        "DELETE FROM auth_user",
        "DELETE FROM auth_totp",
    ]
    for statement in refused:
        with engine.begin() as conn, pytest.raises(DBAPIError):
            conn.execute(text(statement))
    with engine.begin() as conn:  # state tables are updated in place (with audit events)
        conn.execute(text("UPDATE auth_user SET failed_count = 0 WHERE user_id = 'ada'"))
    assert world.trail.actions() == []
    # The training row inserted behind the product's back is named by verify; the account's
    # unchanged state is not a change.
    report = verify(world.site)
    assert [(p.kind, "user_training row" in p.message) for p in report.problems] == [
        (Kind.ROW_INSERTED, True)
    ]
