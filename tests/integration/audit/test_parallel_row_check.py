"""The business-row cross-check of a whole SQLite database verified in parallel (the chain
workers collect the row bindings as they read the events) reports exactly what the check of
one snapshot of the database reports, for untouched rows and for rows deleted, edited or
inserted behind the product's back, and falls back to that check when the trail grew while
it ran."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import insert

from hmi.alarms.tables import alarm
from hmi.audit.checkpoint import WitnessFile
from hmi.audit.store import (
    _PARALLEL_FROM,
    _CrossCheck,
    check_business_rows,
    trusted_keys,
    verify_database,
)
from hmi.audit.verify import Kind, VerifyReport
from hmi.db import make_engine
from hmi.site import Site, init_site
from tests.helpers.audit import OPERATOR, attacker

EVENTS = _PARALLEL_FROM + 400
ROW_KINDS = {Kind.ROW_EDITED, Kind.ROW_DELETED, Kind.ROW_INSERTED, Kind.ROW_UNLINKED}


@pytest.fixture(scope="module")
def bound_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site long enough for the parallel path, every other event writing an alarm row."""
    data = tmp_path_factory.mktemp("bound") / "site"
    site: Site = init_site(data)
    try:
        for start in range(0, EVENTS, 1000):
            with site.audit.transaction() as conn:
                for index in range(start, min(EVENTS, start + 1000)):
                    if index % 2 == 0:
                        conn.execute(
                            insert(alarm).values(
                                code=f"A{index}", source="plc", severity=500, message="test",
                                terminal_id="KIOSK-01", raised_at="2026-03-02T07:30:00.000000Z",
                                active=0,
                            )
                        )  # fmt: skip
                    site.audit.record(
                        conn, "test.event", OPERATOR, field="weight", new_value=str(index),
                        details={"index": index},
                    )  # fmt: skip
        site.audit.checkpoint("test")
    finally:
        site.close()
    return data


def _raw(data: Path) -> sqlite3.Connection:
    conn = attacker(data / "hmi.db")
    for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'alarm'"
    ).fetchall():
        conn.execute(f'DROP TRIGGER "{name}"')
    return conn


def _delete(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM alarm WHERE code = 'A4000'")


def _edit(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE alarm SET severity = 100 WHERE code = 'A7000'")


def _insert(conn: sqlite3.Connection) -> None:
    conn.execute(
        "INSERT INTO alarm (code, source, severity, message, terminal_id, raised_at, active)"
        " VALUES ('FAKE', 'plc', 500, 'x', 'KIOSK-01', '2026-03-02T07:31:00.000000Z', 0)"
    )


def _unreadable_binding(conn: sqlite3.Connection) -> None:
    """An event's binding list edited into another shape (its hash no longer holds either)."""
    seq, details = conn.execute(
        "SELECT seq, details FROM audit_event WHERE seq > 5000 AND details LIKE '%bound_rows%'"
        " ORDER BY seq LIMIT 1"
    ).fetchone()
    conn.execute(
        "UPDATE audit_event SET details = ? WHERE seq = ?",
        (details.replace('"bound_rows":[[', '"bound_rows":[["nope"],['), seq),
    )


def _reference(data: Path) -> list[dict[str, object]]:
    """The cross-check of one snapshot, as a reader without worker processes makes it."""
    engine = make_engine(f"sqlite:///{data / 'hmi.db'}")
    try:
        report = VerifyReport()
        check_business_rows(engine, report)
    finally:
        engine.dispose()
    return [p.to_json() for p in report.problems]


def _parallel(data: Path) -> VerifyReport:
    engine = make_engine(f"sqlite:///{data / 'hmi.db'}")
    try:
        return verify_database(
            engine,
            trusted=trusted_keys([data / "keys" / "terminal.ed25519.pub"]),
            witness=WitnessFile(data / "witness" / "checkpoints.jsonl"),
            workers=2,
        )
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("attack", "expected"),
    [
        (None, set()),
        (_delete, {Kind.ROW_DELETED}),
        (_edit, {Kind.ROW_EDITED}),
        (_insert, {Kind.ROW_INSERTED}),
        # the row it bound then reads as inserted outside the product too
        (_unreadable_binding, {Kind.ROW_UNLINKED, Kind.ROW_INSERTED}),
    ],
)
def test_parallel_cross_check_reports_what_one_snapshot_reports(
    bound_site: Path,
    tmp_path: Path,
    attack: Callable[[sqlite3.Connection], None] | None,
    expected: set[Kind],
) -> None:
    data = tmp_path / "site"
    shutil.copytree(bound_site, data)
    if attack is not None:
        conn = _raw(data)
        attack(conn)
        conn.close()
    report = _parallel(data)
    assert report.rows_checked > _PARALLEL_FROM
    rows = [p.to_json() for p in report.problems if p.kind in ROW_KINDS]
    assert rows == _reference(data)
    assert {p.kind for p in report.problems if p.kind in ROW_KINDS} == expected


def test_a_trail_that_grew_meanwhile_is_checked_again_as_one_snapshot(
    bound_site: Path, tmp_path: Path
) -> None:
    """The workers read the events up to the last id seen when verify started; if another
    event came since, the stored rows may be newer than those bindings, so both are read
    again together instead of being compared across two moments."""
    data = tmp_path / "site"
    shutil.copytree(bound_site, data)
    engine = make_engine(f"sqlite:///{data / 'hmi.db'}")
    try:
        with engine.connect() as conn:
            (last,) = conn.exec_driver_sql("SELECT max(id) FROM audit_event").one()
        # What the workers collected up to an earlier id, one event short: compared as is,
        # the alarm that event wrote would read as inserted outside the product.
        short = _CrossCheck(engine, int(last) - 1)
        short.read_stored()
        report = VerifyReport()
        short.finish(report, collected=True)
        assert report.problems == []
        assert short.stored is None and short.problems == []
        # Up to date: the stored rows are read once and compared with the bindings given.
        current = _CrossCheck(engine, int(last))
        current.read_stored()
        assert current.stored is not None and len(current.stored) == EVENTS // 2
        report = VerifyReport()
        current.finish(report, collected=True)
        assert {p.kind for p in report.problems} == {Kind.ROW_INSERTED}  # no bindings given
    finally:
        engine.dispose()


def test_shares_that_arrive_out_of_chain_order_are_indexed_as_one_ordered_read(
    bound_site: Path, tmp_path: Path
) -> None:
    """Two terminals' events interleave in storage order, so shares can hand over a later
    (terminal, seq) first; the index is then built again from all bindings in chain order,
    and reports what the one-snapshot check reports (here a deleted row)."""
    data = tmp_path / "site"
    shutil.copytree(bound_site, data)
    conn = _raw(data)
    _delete(conn)
    conn.close()
    engine = make_engine(f"sqlite:///{data / 'hmi.db'}")
    try:
        with engine.connect() as db:
            (last,) = db.exec_driver_sql("SELECT max(id) FROM audit_event").one()
            events = [
                (t, s, ts, details)
                for t, s, ts, details in db.exec_driver_sql(
                    "SELECT terminal_id, seq, ts, details FROM audit_event ORDER BY id"
                )
                if "bound_rows" in details
            ]
        cross = _CrossCheck(engine, int(last))
        half = len(events) // 2
        cross.take(events[half:])
        cross.take(events[:half])
        assert not cross.in_order
        cross.read_stored()
        report = VerifyReport()
        cross.finish(report, collected=True)
        assert [p.to_json() for p in report.problems] == _reference(data)
        assert {p.kind for p in report.problems} == {Kind.ROW_DELETED}
    finally:
        engine.dispose()
