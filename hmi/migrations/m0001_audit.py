"""The audit trail: events (one chain per terminal), terminal registry and public keys."""

from __future__ import annotations

from sqlalchemy import Connection

VERSION = 1
NAME = "audit trail, terminals and keys"

APPEND_ONLY_TABLES = ("audit_event", "audit_key", "terminal")

_SQLITE = [
    """
    CREATE TABLE audit_event (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        terminal_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        ts TEXT NOT NULL,
        actor_id TEXT NOT NULL,
        actor_role TEXT NOT NULL,
        session_id TEXT,
        action TEXT NOT NULL,
        entity_type TEXT,
        entity_id TEXT,
        field TEXT,
        old_value TEXT,
        new_value TEXT,
        reason TEXT,
        meaning TEXT,
        details TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        row_hash TEXT NOT NULL,
        key_id TEXT NOT NULL,
        signature TEXT NOT NULL,
        CONSTRAINT uq_audit_event_terminal_seq UNIQUE (terminal_id, seq)
    )
    """,
    "CREATE INDEX ix_audit_event_ts ON audit_event (ts)",
    "CREATE INDEX ix_audit_event_entity ON audit_event (entity_type, entity_id)",
    """
    CREATE TABLE audit_key (
        key_id TEXT PRIMARY KEY,
        terminal_id TEXT NOT NULL,
        algorithm TEXT NOT NULL,
        public_key TEXT NOT NULL,
        created_at TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE terminal (
        terminal_id TEXT PRIMARY KEY,
        key_id TEXT NOT NULL REFERENCES audit_key (key_id),
        registered_at TEXT NOT NULL
    )
    """,
]


def _sqlite_guards(table: str) -> list[str]:
    return [
        f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
        f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: UPDATE refused'); END",
        f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
        f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: DELETE refused'); END",
    ]


def _postgres_guards(table: str) -> list[str]:
    return [
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION hmi_refuse_change()",
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION hmi_refuse_change()",
    ]


_POSTGRES_FUNCTION = """
CREATE OR REPLACE FUNCTION hmi_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP;
END;
$$ LANGUAGE plpgsql
"""


def upgrade(conn: Connection) -> None:
    postgres = conn.dialect.name == "postgresql"
    for statement in _SQLITE:
        if postgres:
            statement = statement.replace(
                "INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY"
            )
        conn.exec_driver_sql(statement)
    if postgres:
        conn.exec_driver_sql(_POSTGRES_FUNCTION)
    for table in APPEND_ONLY_TABLES:
        for statement in _postgres_guards(table) if postgres else _sqlite_guards(table):
            conn.exec_driver_sql(statement)
