"""Electronic signatures: components across a continuous session, meanings by role, the
accountability statement, binding to the record's content (11.70), manifestation (11.50)."""

from __future__ import annotations

import json
from datetime import timedelta, timezone

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from hmi.audit.verify import Kind
from hmi.auth.errors import (
    AuthenticationFailed,
    FailureReason,
    PermissionDenied,
    SessionNotActive,
    SignatureRefusal,
    SignatureRefused,
)
from hmi.auth.roles import Meaning
from hmi.auth.sessions import EndCause, SessionState
from hmi.auth.signatures import ACCOUNTABILITY_STATEMENT, RecordRef, manifestation
from hmi.auth.tables import auth_signature_statement, esignature
from tests.helpers.audit import outside_engine, verify

from .conftest import World

STEP = {"batch": "B-2026-001", "step": 3, "weight_kg": "180.02", "lot": "GR-7781"}
RECORD = RecordRef.of("batch_step", "B-2026-001:3", STEP)


def test_first_signature_needs_id_and_password_later_ones_the_password(cast: World) -> None:
    olga = cast.login("olga")
    signatures = cast.auth.signatures
    assert signatures.components_needed(olga, "performed") == ("user_id", "password")
    cast.trail.mark()
    with pytest.raises(AuthenticationFailed) as caught:
        signatures.sign(
            olga, RECORD, "performed", password=cast.password("olga"), accept_statement=True
        )
    assert caught.value.reason is FailureReason.USER_ID_REQUIRED
    (refused,) = cast.trail.expect("esignature.refused")
    assert json.loads(refused["details"])["failure"] == "user_id_required"

    first = signatures.sign(
        olga,
        RECORD,
        Meaning.PERFORMED,
        password=cast.password("olga"),
        user_id="olga",
        accept_statement=True,
    )
    assert first.components == ("user_id", "password")
    assert olga.signing_id_confirmed
    assert signatures.components_needed(olga, "performed") == ("password",)
    accepted, signed = cast.trail.expect("esignature.statement.accepted", "esignature.signed")
    assert json.loads(accepted["details"])["statement"] == ACCOUNTABILITY_STATEMENT
    assert (signed["entity_type"], signed["entity_id"], signed["meaning"]) == (
        "batch_step",
        "B-2026-001:3",
        "performed",
    )
    assert signed["new_value"] == RECORD.sha256 and signed["actor_id"] == "olga"

    second_record = RecordRef.of("batch_step", "B-2026-001:4", {"step": 4})
    second = signatures.sign(olga, second_record, "performed", password=cast.password("olga"))
    assert second.components == ("password",)
    cast.trail.expect("esignature.signed")


def test_a_lock_starts_a_new_continuous_period_for_signing(cast: World) -> None:
    olga = cast.login("olga")
    signatures = cast.auth.signatures
    signatures.sign(
        olga,
        RECORD,
        "performed",
        password=cast.password("olga"),
        user_id="olga",
        accept_statement=True,
    )
    cast.clock.advance(timedelta(minutes=6))
    cast.auth.sessions.check_idle(olga)
    assert olga.state is SessionState.LOCKED and not olga.signing_id_confirmed
    cast.auth.sessions.unlock(olga, cast.password("olga"))
    cast.trail.mark()
    with pytest.raises(AuthenticationFailed) as caught:
        signatures.sign(olga, RECORD, "performed", password=cast.password("olga"))
    assert caught.value.reason is FailureReason.USER_ID_REQUIRED
    signature = signatures.sign(
        olga, RECORD, "performed", password=cast.password("olga"), user_id="olga"
    )
    assert signature.components == ("user_id", "password")
    cast.trail.expect("esignature.refused", "esignature.signed")
    cast.auth.sessions.lock(olga)
    cast.trail.mark()
    with pytest.raises(SessionNotActive):
        signatures.sign(olga, RECORD, "performed", password=cast.password("olga"), user_id="olga")
    (refused,) = cast.trail.expect("esignature.refused")
    assert json.loads(refused["details"])["failure"] == "session_locked"


def test_privileged_meanings_also_need_totp(cast: World) -> None:
    sam = cast.login("sam")
    signatures = cast.auth.signatures
    signatures.accept_statement(sam, password=cast.password("sam"))
    assert signatures.components_needed(sam, "verified") == ("user_id", "password", "totp")
    cast.trail.mark()
    with pytest.raises(AuthenticationFailed) as caught:
        signatures.sign(sam, RECORD, "verified", password=cast.password("sam"), user_id="sam")
    assert caught.value.reason is FailureReason.TOTP_REQUIRED
    verified = signatures.sign(
        sam, RECORD, "verified", password=cast.password("sam"), user_id="sam", totp=cast.code("sam")
    )
    assert verified.components == ("user_id", "password", "totp")
    performed = signatures.sign(sam, RECORD, "performed", password=cast.password("sam"))
    assert performed.components == ("password",)  # not privileged: no TOTP needed
    cast.trail.expect("esignature.refused", "esignature.signed", "esignature.signed")


def test_admin_cannot_sign_production_records(cast: World) -> None:
    bob = cast.login("bob")
    cast.trail.mark()
    for meaning in Meaning:
        with pytest.raises(PermissionDenied):
            cast.auth.signatures.sign(
                bob,
                RECORD,
                meaning,
                password=cast.password("bob"),
                user_id="bob",
                totp=cast.code("bob"),
                accept_statement=True,
            )
    refusals = cast.trail.expect(*["esignature.refused"] * len(Meaning))
    assert {json.loads(r["details"])["failure"] for r in refusals} == {"role_not_permitted"}
    assert cast.auth.signatures.signatures_for(RECORD.type, RECORD.id) == []


def test_operators_cannot_sign_quality_meanings(cast: World) -> None:
    olga = cast.login("olga")
    cast.trail.mark()
    for meaning in ("verified", "approved", "released", "audit_trail_reviewed"):
        with pytest.raises(PermissionDenied):
            cast.auth.signatures.sign(
                olga, RECORD, meaning, password=cast.password("olga"), user_id="olga"
            )
    cast.trail.expect(*["esignature.refused"] * 4)


def test_the_accountability_statement_comes_first_and_is_recorded_once(cast: World) -> None:
    otto = cast.login("otto")
    signatures = cast.auth.signatures
    assert not signatures.statement_accepted("otto")
    cast.trail.mark()
    with pytest.raises(SignatureRefused) as caught:
        signatures.sign(otto, RECORD, "performed", password=cast.password("otto"), user_id="otto")
    assert caught.value.reason is SignatureRefusal.STATEMENT_NOT_ACCEPTED
    cast.trail.expect("esignature.refused")
    with pytest.raises(AuthenticationFailed):
        signatures.accept_statement(otto, password="not his password at all")
    cast.trail.expect("esignature.statement.refused")
    signatures.accept_statement(otto, password=cast.password("otto"))
    signatures.accept_statement(otto, password=cast.password("otto"))
    assert signatures.statement_accepted("otto")
    cast.trail.expect("esignature.statement.accepted")
    signatures.sign(
        otto,
        RECORD,
        "performed",
        password=cast.password("otto"),
        user_id="otto",
        accept_statement=True,
    )
    cast.trail.expect("esignature.signed")
    with cast.site.engine.connect() as conn:
        rows = conn.execute(
            select(auth_signature_statement).where(auth_signature_statement.c.user_id == "otto")
        ).all()
    assert len(rows) == 1


def test_what_a_signature_stores_and_how_it_is_manifested(cast: World) -> None:
    quinn = cast.login("quinn")
    signature = cast.auth.signatures.sign(
        quinn,
        RECORD,
        "approved",
        password=cast.password("quinn"),
        user_id="quinn",
        totp=cast.code("quinn"),
        accept_statement=True,
    )
    assert (signature.signer_id, signature.signer_name, signature.meaning) == (
        "quinn",
        "Quinn Quality",
        Meaning.APPROVED,
    )
    assert signature.signed_at == cast.clock.now() and signature.record == RECORD
    assert signature.session_id == quinn.session_id and signature.terminal_id == "KIOSK-01"
    (stored,) = cast.auth.signatures.signatures_for(RECORD.type, RECORD.id)
    assert stored == signature
    text_form = manifestation(signature, tz=timezone(timedelta(hours=1)))
    now = cast.clock.now()
    local = now + timedelta(hours=1)
    assert text_form == (
        f"Quinn Quality (quinn) - Approved - {local:%Y-%m-%d %H:%M:%S} +01:00"
        f" (UTC {now:%Y-%m-%d %H:%M:%S})"
    )
    _, _, _, signed = cast.trail.expect(
        "auth.login.succeeded",
        "auth.session.started",
        "esignature.statement.accepted",
        "esignature.signed",
    )
    assert signed["seq"] == signature.audit_seq
    assert json.loads(signed["details"])["binding_sha256"] == signature.binding_sha256


def test_verification_fails_when_the_record_changes(cast: World) -> None:
    olga = cast.login("olga")
    signature = cast.auth.signatures.sign(
        olga,
        RECORD,
        "performed",
        password=cast.password("olga"),
        user_id="olga",
        accept_statement=True,
    )
    (check,) = cast.auth.signatures.verify(RECORD)
    assert check.valid and check.signature == signature
    changed = RecordRef.of(RECORD.type, RECORD.id, {**STEP, "weight_kg": "181.02"})
    (check,) = cast.auth.signatures.verify(changed)
    assert not check.valid
    assert check.problems == ("the record's content has changed since it was signed",)
    cast.trail.expect(
        "auth.login.succeeded",
        "auth.session.started",
        "esignature.statement.accepted",
        "esignature.signed",
    )


def test_a_signature_copied_to_another_record_is_invalid(cast: World) -> None:
    olga = cast.login("olga")
    signature = cast.auth.signatures.sign(
        olga,
        RECORD,
        "performed",
        password=cast.password("olga"),
        user_id="olga",
        accept_statement=True,
    )
    other = RecordRef.of("batch_step", "B-2026-002:3", STEP)  # same content, another batch
    cast.inserted_outside.add("esignature")
    with outside_engine(cast.site).begin() as conn:
        conn.execute(
            text(
                "INSERT INTO esignature SELECT 'copy' || signature_id, record_type, 'B-2026-002:3',"
                " record_sha256, meaning, signer_id, signer_name, signer_role, signed_at,"
                " session_id,"
                " terminal_id, components, cosign_of, binding_sha256, audit_terminal_id, audit_seq"
                " FROM esignature WHERE signature_id = :s"
            ),
            {"s": signature.signature_id},
        )
    (copied,) = cast.auth.signatures.verify(other)
    assert not copied.valid
    assert any("copied" in p or "altered" in p for p in copied.problems)
    (original,) = cast.auth.signatures.verify(RECORD)
    assert original.valid
    assert cast.trail.actions() == [
        "auth.login.succeeded",
        "auth.session.started",
        "esignature.statement.accepted",
        "esignature.signed",
    ]
    # The copied row was written outside the product: verify names it.
    report = verify(cast.site)
    assert [(p.kind, p.message.split(" is in")[0]) for p in report.problems] == [
        (Kind.ROW_INSERTED, f"esignature row copy{signature.signature_id}")
    ]


def test_stored_signatures_cannot_be_edited_or_deleted(cast: World) -> None:
    olga = cast.login("olga")
    cast.auth.signatures.sign(
        olga,
        RECORD,
        "performed",
        password=cast.password("olga"),
        user_id="olga",
        accept_statement=True,
    )
    for statement in ("UPDATE esignature SET record_sha256 = 'x'", "DELETE FROM esignature"):
        with outside_engine(cast.site).begin() as conn, pytest.raises(DBAPIError):
            conn.execute(text(statement))
    with cast.site.engine.connect() as conn:
        assert conn.execute(select(esignature.c.record_sha256)).scalar() == RECORD.sha256
    cast.trail.expect(
        "auth.login.succeeded",
        "auth.session.started",
        "esignature.statement.accepted",
        "esignature.signed",
    )


def test_signing_in_someone_elses_session_is_refused(cast: World) -> None:
    olga = cast.login("olga")
    cast.trail.mark()
    with pytest.raises(AuthenticationFailed) as caught:
        cast.auth.signatures.sign(
            olga,
            RECORD,
            "performed",
            password=cast.password("otto"),
            user_id="otto",
            accept_statement=True,
        )
    assert caught.value.reason is FailureReason.WRONG_USER
    (refused,) = cast.trail.expect("esignature.refused")
    assert refused["entity_id"] == "otto" and refused["actor_id"] == "olga"


def test_wrong_passwords_when_signing_count_and_lock_the_account(cast: World) -> None:
    olga = cast.login("olga")
    cast.trail.mark()
    for _ in range(5):
        with pytest.raises(AuthenticationFailed):
            cast.auth.signatures.sign(
                olga,
                RECORD,
                "performed",
                password="not my password really",
                user_id="olga",
                accept_statement=True,
            )
    assert olga.state is SessionState.ENDED and olga.end_cause is EndCause.ACCOUNT_LOCKED
    cast.trail.expect(
        *["esignature.refused"] * 5,
        "auth.account.locked",
        "auth.alert.raised",
        "auth.session.ended",
    )
