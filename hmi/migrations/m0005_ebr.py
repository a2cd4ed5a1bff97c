"""Audit trail reviews of time ranges (EU GMP Annex 11 §9): who reviewed which stretch of
which terminal's chain, under which e-signature. Append-only: a review is never changed or
removed; a second look is a second row. (Batch reviews live on the batch row, m0004.)"""

from __future__ import annotations

from sqlalchemy import Connection

VERSION = 5
NAME = "audit trail reviews"

_TABLE = """
CREATE TABLE audit_review (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    review_id TEXT NOT NULL,
    terminal_id TEXT NOT NULL,
    from_seq INTEGER NOT NULL,
    to_seq INTEGER NOT NULL,
    ts_from TEXT NOT NULL,
    ts_to TEXT NOT NULL,
    first_hash TEXT NOT NULL,
    last_hash TEXT NOT NULL,
    events INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('shift', 'periodic')),
    comment TEXT,
    reviewed_by TEXT NOT NULL,
    reviewed_role TEXT NOT NULL,
    reviewed_at TEXT NOT NULL,
    signature_id TEXT NOT NULL,
    record_sha256 TEXT NOT NULL,
    CHECK (from_seq <= to_seq)
)
"""

_INDEX = "CREATE INDEX ix_audit_review_range ON audit_review (terminal_id, from_seq, to_seq)"

_SQLITE_TRIGGERS = (
    "CREATE TRIGGER audit_review_no_update BEFORE UPDATE ON audit_review "
    "BEGIN SELECT RAISE(ABORT, 'audit_review is append-only: UPDATE refused'); END",
    "CREATE TRIGGER audit_review_no_delete BEFORE DELETE ON audit_review "
    "BEGIN SELECT RAISE(ABORT, 'audit_review rows are never deleted: DELETE refused'); END",
)

_POSTGRES_TRIGGERS = (
    "CREATE TRIGGER audit_review_append_only BEFORE UPDATE OR DELETE ON audit_review "
    "FOR EACH ROW EXECUTE FUNCTION hmi_refuse_change()",
    "CREATE TRIGGER audit_review_no_truncate BEFORE TRUNCATE ON audit_review "
    "FOR EACH STATEMENT EXECUTE FUNCTION hmi_refuse_change()",
)


def upgrade(conn: Connection) -> None:
    postgres = conn.dialect.name == "postgresql"
    table = _TABLE.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY")
    conn.exec_driver_sql(table if postgres else _TABLE)
    conn.exec_driver_sql(_INDEX)
    for statement in _POSTGRES_TRIGGERS if postgres else _SQLITE_TRIGGERS:
        conn.exec_driver_sql(statement)
