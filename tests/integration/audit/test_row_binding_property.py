"""Property: random valid histories of business rows (inserted, changed, changed back, in one
or several transactions, before or after their event) always verify, and any single change
made to any business row behind the product's back (an edited column, a deleted row, an
inserted row) is caught, with the table and key. Against a real SQLite file and real keys.

Also: a site upgraded from a release that did not bind rows binds the rows it holds."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, insert, update

from hmi.alarms.tables import alarm
from hmi.audit import binding
from hmi.audit.chain import Actor
from hmi.auth.tables import auth_alert
from hmi.clock import ManualClock
from hmi.site import Site, open_site
from tests.helpers.audit import verify

ACTOR = Actor("op1", "operator", "s-1")

#: One step of a history: write a new row, change one, or change one back.
step = st.one_of(
    st.tuples(st.just("alarm"), st.text(min_size=1, max_size=12)),
    st.tuples(st.just("alert"), st.sampled_from(["open", "acknowledged"])),
    st.tuples(st.just("ack"), st.integers(min_value=0, max_value=50)),
    st.tuples(st.just("unack"), st.integers(min_value=0, max_value=50)),
)


def _apply(site: Site, clock: ManualClock, ops: list[tuple[str, Any]], event_first: bool) -> None:
    """Each transaction writes its rows and records one event (before or after the rows)."""
    for kind, value in ops:
        clock.advance(1)
        with site.audit.transaction() as conn:
            if event_first:
                site.audit.record(conn, f"test.{kind}", ACTOR, details={"value": str(value)})
            if kind == "alarm":
                conn.execute(
                    insert(alarm).values(
                        code=f"CODE-{len(value)}", source="hmi", severity=500, message=value,
                        terminal_id="KIOSK-01", raised_at="2026-03-02T07:30:00.000000Z", active=0,
                    )
                )  # fmt: skip
            elif kind == "alert":
                conn.execute(
                    insert(auth_alert).values(
                        kind="lockout", raised_at="2026-03-02T07:30:00.000000Z", state=value,
                        terminal_id="KIOSK-01", message="account locked", audience="supervisor",
                    )
                )  # fmt: skip
            else:
                ids = [
                    r[0] for r in conn.execute(alarm.select().with_only_columns(alarm.c.alarm_id))
                ]
                if ids:
                    target = ids[value % len(ids)]
                    by = "op1" if kind == "ack" else None
                    conn.execute(
                        update(alarm).where(alarm.c.alarm_id == target).values(acknowledged_by=by)
                    )
            if not event_first:
                site.audit.record(conn, f"test.{kind}", ACTOR, details={"value": str(value)})


def _problems(db: Path) -> list[binding.RowProblem]:
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            return binding.check_connection(conn)
    finally:
        engine.dispose()


def _mutate(db: Path, how: str, pick: int, text: str) -> tuple[str, str, str]:
    """One change behind the product's back; returns (kind expected, table, key)."""
    conn = sqlite3.connect(db, isolation_level=None)
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        conn.execute(f'DROP TRIGGER "{name}"')
    tables = ("alarm", "auth_alert") if pick % 2 == 0 else ("auth_alert", "alarm")
    for table in tables:
        key_column = binding.BOUND_TABLES[table]
        keys = [r[0] for r in conn.execute(f"SELECT {key_column} FROM {table} ORDER BY 1")]
        if keys:
            break
    else:  # no row yet: the change is a row nobody recorded
        conn.execute(
            "INSERT INTO alarm (code, source, severity, message, terminal_id, raised_at, active)"
            " VALUES ('X', 'hmi', 500, ?, 'KIOSK-01', '2026-03-02T07:30:00.000000Z', 0)",
            (text,),
        )
        conn.close()
        return "row_inserted", "alarm", "1"
    key = keys[pick % len(keys)]
    try:
        if how == "delete":
            conn.execute(f"DELETE FROM {table} WHERE {key_column} = ?", (key,))
            return "row_deleted", table, str(key)
        if how == "insert":
            new_key = max(int(k) for k in keys) + 1 + pick
            cur = conn.execute(f"SELECT * FROM {table} WHERE {key_column} = ?", (key,))
            names = [d[0] for d in cur.description]
            row = dict(zip(names, cur.fetchone(), strict=True))
            row[key_column] = new_key
            conn.execute(
                f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
                list(row.values()),
            )
            return "row_inserted", table, str(new_key)
        column = {
            "alarm": "message", "auth_alert": "message", "user_training": "status",
            "auth_user": "roles",
        }[table]  # fmt: skip
        old = conn.execute(
            f"SELECT {column} FROM {table} WHERE {key_column} = ?", (key,)
        ).fetchone()
        conn.execute(
            f"UPDATE {table} SET {column} = ? WHERE {key_column} = ?", (f"{old[0]}{text}", key)
        )
        return "row_edited", table, str(key)
    finally:
        conn.close()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    ops=st.lists(step, min_size=1, max_size=8),
    event_first=st.booleans(),
    how=st.sampled_from(["edit", "delete", "insert"]),
    pick=st.integers(min_value=0, max_value=1000),
    text=st.text(min_size=1, max_size=5),
)
def test_random_histories_verify_and_any_single_change_is_caught(
    site: Site, clock: ManualClock, tmp_path: Path, ops: list[tuple[str, Any]], event_first: bool,
    how: str, pick: int, text: str,
) -> None:  # fmt: skip
    _apply(site, clock, ops, event_first)
    assert verify(site).ok, verify(site).problems
    copy = tmp_path / "copy.db"
    copy.unlink(missing_ok=True)
    site.audit.close()
    shutil.copyfile(site.data_dir / "hmi.db", copy)
    assert _problems(copy) == []
    kind, table, key = _mutate(copy, how, pick, text)
    found = _problems(copy)
    assert [(p.kind, p.table, p.key) for p in found] == [(kind, table, key)], found


def test_an_upgraded_site_binds_the_rows_it_already_holds(site: Site, clock: ManualClock) -> None:
    _apply(site, clock, [("alarm", "before the upgrade"), ("alert", "open")], False)
    # As a site of an earlier release: rows with no binding, and the binding step not applied.
    db = site.data_dir / "hmi.db"
    site.close()
    raw = sqlite3.connect(db, isolation_level=None)
    raw.execute(
        "INSERT INTO alarm (code, source, severity, message, terminal_id, raised_at, active)"
        " VALUES ('OLD', 'hmi', 500, 'written by an earlier release', 'KIOSK-01',"
        " '2026-03-01T07:00:00.000000Z', 0)"
    )
    raw.execute("DELETE FROM schema_migration WHERE version = 6")
    raw.close()
    assert [p.kind for p in _problems(db)] == ["row_inserted"]
    upgraded = open_site(site.data_dir, clock=clock)
    try:
        assert verify(upgraded).ok, verify(upgraded).problems
        with upgraded.engine.connect() as conn:
            actions = [
                r[0]
                for r in conn.exec_driver_sql(
                    "SELECT action FROM audit_event ORDER BY seq DESC LIMIT 3"
                )
            ]
        assert "audit.rows.baselined" in actions
    finally:
        upgraded.close()
    # From the baseline on, a change to the old row is seen.
    raw = sqlite3.connect(db, isolation_level=None)
    raw.execute("DROP TRIGGER IF EXISTS alarm_no_delete")
    raw.execute("UPDATE alarm SET message = 'rewritten' WHERE code = 'OLD'")
    raw.close()
    assert [p.kind for p in _problems(db)] == ["row_edited"]


def test_a_write_outside_the_audit_log_is_refused(site: Site) -> None:
    engine = site.engine
    with pytest.raises(binding.UnboundWrite, match="auth_alert"), engine.begin() as conn:
        conn.execute(
            insert(auth_alert).values(
                kind="lockout", raised_at="2026-03-02T07:30:00.000000Z", state="open",
                terminal_id="KIOSK-01", message="account locked", audience="supervisor",
            )
        )  # fmt: skip
    with pytest.raises(binding.UnboundWrite, match="raw SQL"), engine.begin() as conn:
        conn.exec_driver_sql("UPDATE auth_user SET roles = 'admin'")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM auth_alert").scalar() == 0
