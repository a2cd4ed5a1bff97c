"""Appending: atomic with the action, append-only at every level, refused when it cannot be
written, checkpoints witnessed after the commit."""

from __future__ import annotations

import json
import sqlite3

import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from hmi.audit.chain import SYSTEM, AuditLog, AuditWriteError
from hmi.audit.guards import AppendOnlyViolation, AuditEventRecord
from hmi.audit.tables import audit_event
from hmi.clock import ManualClock
from hmi.db import make_engine
from hmi.site import Site, build_audit
from tests.helpers.audit import OPERATOR, add_events, verify


def _widget_table(site: Site) -> None:
    with site.engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS widget (name TEXT)"))


def _widgets(site: Site) -> int:
    with site.engine.connect() as conn:
        return int(conn.execute(text("SELECT COUNT(*) FROM widget")).scalar() or 0)


def test_first_event_of_a_chain_carries_key_and_version(site: Site) -> None:
    with site.engine.connect() as conn:
        first = conn.execute(text("SELECT action, details FROM audit_event WHERE seq = 1")).one()
    details = json.loads(first.details)
    assert first.action == "audit.chain.started"
    assert details["key_id"] == site.signer.key_id
    assert details["public_key"] == site.signer.public.raw.hex()
    assert details["software_version"]


def test_state_change_and_event_commit_together(site: Site) -> None:
    _widget_table(site)
    with pytest.raises(RuntimeError), site.audit.transaction() as conn:
        conn.execute(text("INSERT INTO widget VALUES ('a')"))
        site.audit.record(conn, "widget.created", OPERATOR, entity=("widget", "a"))
        raise RuntimeError("the action failed half way")
    assert _widgets(site) == 0
    with site.engine.connect() as conn:
        assert (
            conn.execute(
                text("SELECT COUNT(*) FROM audit_event WHERE action='widget.created'")
            ).scalar()
            == 0
        )
    assert verify(site).ok


def test_event_fields_are_stored_as_given(site: Site) -> None:
    event = site.audit.record_now(
        "batch.parameter.changed", OPERATOR, entity=("batch", "B-7"), field="speed",
        old_value="12", new_value="13", reason="operator adjustment", meaning=None,
        details={"unit": "rpm"},
    )  # fmt: skip
    with site.engine.connect() as conn:
        stored = conn.execute(
            text("SELECT * FROM audit_event WHERE seq = :s"), {"s": event.seq}
        ).one()
    assert (stored.actor_id, stored.actor_role, stored.session_id) == ("op1", "operator", "sess-1")
    assert (stored.entity_type, stored.entity_id, stored.field) == ("batch", "B-7", "speed")
    assert (stored.old_value, stored.new_value, stored.reason) == (
        "12",
        "13",
        "operator adjustment",
    )
    assert stored.ts.endswith("Z") and len(stored.ts) == 27
    assert json.loads(stored.details) == {"unit": "rpm"}


def test_bad_action_names_and_floats_are_refused(site: Site) -> None:
    with pytest.raises(ValueError, match="dotted lowercase"):
        site.audit.record_now("Login", SYSTEM)
    with pytest.raises(ValueError, match="floats"):
        site.audit.record_now("test.float", SYSTEM, details={"weight": 1.5})


def test_core_orm_and_bulk_changes_are_refused(site: Site) -> None:
    with pytest.raises(AppendOnlyViolation), site.engine.begin() as conn:
        conn.execute(update(audit_event).values(reason="x"))
    with pytest.raises(AppendOnlyViolation), site.engine.begin() as conn:
        conn.execute(delete(audit_event))
    with pytest.raises((AppendOnlyViolation, DBAPIError)), site.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_event WHERE seq = 1"))
    with pytest.raises((AppendOnlyViolation, DBAPIError)), site.engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER audit_event_no_update")
    with Session(site.engine) as session:
        record = session.get(AuditEventRecord, 1)
        assert record is not None
        record.action = "forged"
        with pytest.raises(AppendOnlyViolation):
            session.flush()
        session.rollback()
        with pytest.raises(AppendOnlyViolation):
            session.execute(delete(AuditEventRecord).where(AuditEventRecord.seq == 1))
        session.rollback()
        obj = session.get(AuditEventRecord, 1)
        session.delete(obj)
        with pytest.raises(AppendOnlyViolation):
            session.flush()
    assert verify(site).ok


def test_full_disk_refuses_the_action(site: Site) -> None:
    _widget_table(site)
    add_events(site, 2)
    with site.engine.connect() as conn:
        pages = int(conn.exec_driver_sql("PRAGMA page_count").scalar() or 0)
    engine = make_engine(site.settings.database_url)

    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _cap(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

    audit = build_audit(site.settings, engine, site.signer, site.clock)
    with pytest.raises(AuditWriteError, match="disk holding the database is full"):
        for index in range(500):
            with audit.transaction() as conn:
                conn.execute(text("INSERT INTO widget VALUES (:n)"), {"n": f"w{index}"})
                audit.record(conn, "widget.created", OPERATOR, details={"pad": "x" * 3000})
    created = _widgets(site)
    with site.engine.connect() as conn:
        events = conn.execute(
            text("SELECT COUNT(*) FROM audit_event WHERE action='widget.created'")
        ).scalar()
    assert created == events  # no widget without its event, no event without its widget
    engine.dispose()
    assert verify(site).ok


def test_read_only_database_refuses_the_action(site: Site) -> None:
    db_file = site.data_dir / "hmi.db"
    engine = make_engine(f"sqlite:///file:{db_file}?mode=ro&uri=true")
    audit = build_audit(site.settings, engine, site.signer, site.clock)
    with pytest.raises(AuditWriteError, match="read-only"):
        audit.record_now("test.readonly", OPERATOR)
    engine.dispose()


def test_locked_database_refuses_after_the_busy_timeout(site: Site) -> None:
    blocker = sqlite3.connect(site.data_dir / "hmi.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    engine = make_engine(site.settings.database_url, busy_timeout_ms=150)
    audit = build_audit(site.settings, engine, site.signer, site.clock)
    try:
        with pytest.raises(AuditWriteError, match="locked"):
            audit.record_now("test.locked", OPERATOR)
        blocker.execute("ROLLBACK")
        # Once the other program lets go, the same log appends again, right after the head.
        before = _head_seq(site)
        event = audit.record_now("test.unlocked", OPERATOR)
        assert event.seq == before + 1
    finally:
        if blocker.in_transaction:
            blocker.execute("ROLLBACK")
        engine.dispose()
    assert verify(site).ok


def test_full_disk_refuses_a_standalone_event_and_keeps_the_chain(site: Site) -> None:
    add_events(site, 2)
    with site.engine.connect() as conn:
        pages = int(conn.exec_driver_sql("PRAGMA page_count").scalar() or 0)
    engine = make_engine(site.settings.database_url)

    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _cap(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages}")

    audit = build_audit(site.settings, engine, site.signer, site.clock)
    acknowledged = []
    with pytest.raises(AuditWriteError, match="disk holding the database is full"):
        for _ in range(500):
            acknowledged.append(
                audit.record_now("test.padded", OPERATOR, details={"pad": "x" * 3000})
            )
    engine.dispose()
    with site.engine.connect() as conn:
        stored = (
            conn.execute(
                text("SELECT seq FROM audit_event WHERE action='test.padded' ORDER BY seq")
            )
            .scalars()
            .all()
        )
    assert stored == [e.seq for e in acknowledged]  # every acknowledged event, nothing else
    assert verify(site).ok


def _head_seq(site: Site) -> int:
    with site.engine.connect() as conn:
        return int(conn.execute(text("SELECT MAX(seq) FROM audit_event")).scalar() or 0)


def test_unregistered_terminal_cannot_write(site: Site) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from hmi.audit.keys import Signer

    other = AuditLog(
        site.engine, terminal_id="KIOSK-99", signer=Signer(Ed25519PrivateKey.generate()),
        clock=site.clock, witness=None,
    )  # fmt: skip
    with pytest.raises(AuditWriteError, match="KIOSK-99 is not registered"):
        other.record_now("test.rogue", SYSTEM)
    impostor = AuditLog(
        site.engine, terminal_id="KIOSK-01", signer=Signer(Ed25519PrivateKey.generate()),
        clock=site.clock, witness=None,
    )  # fmt: skip
    with pytest.raises(AuditWriteError, match="registered with key"):
        impostor.record_now("test.rogue", SYSTEM)


def test_checkpoints_by_count_and_time(site: Site, clock: ManualClock) -> None:
    from datetime import timedelta

    from hmi.audit.checkpoint import WitnessFile

    witness = WitnessFile(site.settings.witness_path)
    before = len(witness.read()[0])
    site.audit.checkpoint_every_events = 5
    add_events(site, 12)
    after_count = witness.read()[0]
    assert len(after_count) - before == 2
    assert [p.reason for p in after_count[-2:]] == ["count", "count"]
    site.audit.checkpoint_every_events = 10_000
    clock.advance(timedelta(minutes=16))
    add_events(site, 1)
    latest = witness.read()[0][-1]
    assert latest.reason == "interval"
    assert latest.seq == verify(site).chains["KIOSK-01"].last_seq


def test_unwritable_witness_does_not_lose_the_event(site: Site, tmp_path: object) -> None:
    from hmi.audit.checkpoint import WitnessFile

    site.audit.witness = WitnessFile(site.data_dir / "hmi.toml" / "not-a-dir" / "w.jsonl")
    site.audit.checkpoint_every_events = 1
    event = site.audit.record_now("test.event", OPERATOR)
    assert site.audit.checkpoint_error is not None and "witness" in site.audit.checkpoint_error
    with site.engine.connect() as conn:
        assert (
            conn.execute(
                text("SELECT COUNT(*) FROM audit_event WHERE seq = :s"), {"s": event.seq}
            ).scalar()
            == 1
        )


def test_start_up_and_shutdown_are_witnessed(site: Site) -> None:
    from hmi.audit.checkpoint import WitnessFile
    from hmi.site import open_site

    witness = WitnessFile(site.settings.witness_path)
    add_events(site, 3)
    before = len(witness.read()[0])
    site.close()
    site.close()  # closing twice witnesses once
    points = witness.read()[0]
    assert [p.reason for p in points[before:]] == ["shutdown"]
    reopened = open_site(site.data_dir, clock=site.clock)
    latest = witness.read()[0][-1]
    assert latest.reason == "startup"
    assert latest.seq == verify(reopened).chains["KIOSK-01"].last_seq
    reopened.close()


def test_witness_failure_and_recovery_are_recorded_once(site: Site) -> None:
    from hmi.audit.checkpoint import WitnessFile

    good = site.audit.witness
    site.audit.witness = WitnessFile(site.data_dir / "hmi.toml" / "w.jsonl")
    site.audit.checkpoint_every_events = 1
    add_events(site, 3)
    site.audit.witness = good
    add_events(site, 1)
    with site.engine.connect() as conn:
        actions = (
            conn.execute(
                text(
                    "SELECT action FROM audit_event"
                    " WHERE action LIKE 'audit.witness.%' ORDER BY seq"
                )
            )
            .scalars()
            .all()
        )
    assert actions == ["audit.witness.failed", "audit.witness.recovered"]
    assert site.audit.checkpoint_error is None
    assert verify(site).ok


def test_missing_database_file_is_reported_not_recreated(site: Site) -> None:
    from hmi.db import DatabaseError
    from hmi.site import open_site

    site.close()
    for path in site.data_dir.glob("hmi.db*"):
        path.unlink()
    with pytest.raises(DatabaseError, match="does not exist"):
        open_site(site.data_dir)
    assert not (site.data_dir / "hmi.db").exists()
