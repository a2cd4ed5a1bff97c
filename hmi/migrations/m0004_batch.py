"""Batches and their records, deviations, PLC command intents and results, and alarms.

What a person entered or the PLC reported is never overwritten: ``batch_value`` and
``batch_signature`` are append-only (a corrected value is a new row pointing to the one it
replaces, with who, when and why). State rows (``batch``, ``batch_step``, ``deviation``,
``plc_command``, ``alarm``) move forward with an audit event for every change and are never
deleted; a completed step, a given reason and a QA disposition can no longer change.
"""

from __future__ import annotations

from sqlalchemy import Connection

VERSION = 4
NAME = "batches, deviations and alarms"

APPEND_ONLY_TABLES = ("batch_value", "batch_signature")
NEVER_DELETED_TABLES = ("batch", "batch_step", "deviation", "plc_command", "alarm")

_TABLES = [
    """
    CREATE TABLE batch (
        batch_id TEXT PRIMARY KEY,
        recipe_id TEXT NOT NULL,
        recipe_version INTEGER NOT NULL,
        recipe_sha256 TEXT NOT NULL,
        recipe_name TEXT NOT NULL,
        product TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN
            ('running', 'held', 'awaiting_review', 'released', 'rejected', 'aborted')),
        current_step INTEGER NOT NULL DEFAULT 0,
        step_count INTEGER NOT NULL,
        terminal_id TEXT NOT NULL,
        started_by TEXT NOT NULL,
        started_at TEXT NOT NULL,
        session_id TEXT,
        hold_reason TEXT,
        held_at TEXT,
        held_by TEXT,
        completed_at TEXT,
        aborted_at TEXT,
        aborted_by TEXT,
        reviewed_at TEXT,
        reviewed_by TEXT,
        review_signature_id TEXT,
        reviewed_sha256 TEXT,
        decided_at TEXT,
        decided_by TEXT,
        decision_signature_id TEXT,
        decision_reason TEXT
    )
    """,
    # One kiosk drives one blender: at most one batch in progress per terminal.
    "CREATE UNIQUE INDEX uq_batch_active_terminal ON batch (terminal_id)"
    " WHERE status IN ('running', 'held')",
    "CREATE INDEX ix_batch_status ON batch (status, started_at)",
    """
    CREATE TABLE batch_step (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        batch_id TEXT NOT NULL REFERENCES batch (batch_id),
        step_index INTEGER NOT NULL,
        step_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('running', 'completed', 'overridden', 'skipped')),
        started_at TEXT NOT NULL,
        started_by TEXT NOT NULL,
        completed_at TEXT,
        performed_by TEXT,
        performed_role TEXT,
        session_id TEXT,
        data_sha256 TEXT,
        deviation_id TEXT,
        CONSTRAINT uq_batch_step UNIQUE (batch_id, step_index)
    )
    """,
    """
    CREATE TABLE batch_value (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        batch_id TEXT NOT NULL REFERENCES batch (batch_id),
        step_index INTEGER NOT NULL,
        step_id TEXT NOT NULL,
        name TEXT NOT NULL,
        value TEXT NOT NULL,
        unit TEXT,
        source TEXT NOT NULL CHECK (source IN ('entered', 'plc', 'computed')),
        low TEXT,
        high TEXT,
        in_limits INTEGER,
        recorded_by TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        session_id TEXT,
        replaces_id INTEGER REFERENCES batch_value (id),
        reason TEXT,
        CHECK (replaces_id IS NULL OR (reason IS NOT NULL AND length(reason) > 0))
    )
    """,
    "CREATE INDEX ix_batch_value_batch ON batch_value (batch_id, step_index, id)",
    # A value is replaced at most once: corrections form a chain, never a fork.
    "CREATE UNIQUE INDEX uq_batch_value_replaces ON batch_value (replaces_id)"
    " WHERE replaces_id IS NOT NULL",
    """
    CREATE TABLE deviation (
        deviation_id TEXT PRIMARY KEY,
        batch_id TEXT NOT NULL REFERENCES batch (batch_id),
        seq INTEGER NOT NULL,
        step_index INTEGER,
        step_id TEXT,
        kind TEXT NOT NULL CHECK (kind IN ('out_of_tolerance', 'excursion', 'alarm',
            'override', 'skip', 'hold', 'abort', 'plc_lost', 'parameter_change',
            'plc_mismatch')),
        parameter TEXT,
        expected TEXT,
        actual TEXT,
        unit TEXT,
        critical INTEGER NOT NULL DEFAULT 0,
        description TEXT NOT NULL,
        opened_at TEXT NOT NULL,
        opened_by TEXT NOT NULL,
        ended_at TEXT,
        requires_cosign INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('open', 'awaiting_cosign', 'closed')),
        reason_code TEXT,
        reason_text TEXT,
        reason_by TEXT,
        reason_at TEXT,
        request_signature_id TEXT,
        cosign_signature_id TEXT,
        cosigned_by TEXT,
        cosigned_at TEXT,
        action TEXT,
        action_done INTEGER NOT NULL DEFAULT 0,
        alarm_id INTEGER,
        disposition TEXT CHECK (disposition IS NULL OR disposition IN ('accepted', 'rejected')),
        disposition_comment TEXT,
        disposition_by TEXT,
        disposition_at TEXT,
        CONSTRAINT uq_deviation_seq UNIQUE (batch_id, seq)
    )
    """,
    "CREATE INDEX ix_deviation_batch ON deviation (batch_id, status)",
    """
    CREATE TABLE batch_signature (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        batch_id TEXT NOT NULL REFERENCES batch (batch_id),
        step_index INTEGER,
        deviation_id TEXT,
        purpose TEXT NOT NULL,
        signature_id TEXT NOT NULL REFERENCES esignature (signature_id),
        meaning TEXT NOT NULL,
        signer_id TEXT NOT NULL,
        recorded_at TEXT NOT NULL
    )
    """,
    "CREATE INDEX ix_batch_signature_batch ON batch_signature (batch_id, id)",
    """
    CREATE TABLE plc_command (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        batch_id TEXT,
        step_index INTEGER,
        command TEXT NOT NULL,
        arguments TEXT NOT NULL,
        intent_at TEXT NOT NULL,
        intent_by TEXT NOT NULL,
        result TEXT CHECK (result IS NULL OR result IN ('ok', 'rejected', 'failed', 'unknown',
            'confirmed_on_recovery', 'not_executed')),
        result_detail TEXT,
        result_at TEXT
    )
    """,
    "CREATE INDEX ix_plc_command_open ON plc_command (batch_id, result)",
    """
    CREATE TABLE alarm (
        alarm_id INTEGER PRIMARY KEY AUTOINCREMENT,
        code TEXT NOT NULL,
        source TEXT NOT NULL CHECK (source IN ('plc', 'hmi')),
        severity INTEGER NOT NULL,
        message TEXT NOT NULL,
        terminal_id TEXT NOT NULL,
        raised_at TEXT NOT NULL,
        active INTEGER NOT NULL,
        cleared_at TEXT,
        acknowledged_at TEXT,
        acknowledged_by TEXT,
        shelved_at TEXT,
        shelved_by TEXT,
        shelved_until TEXT,
        shelve_reason TEXT,
        unshelved_at TEXT,
        batch_id TEXT,
        step_index INTEGER
    )
    """,
    # One live occurrence per alarm code and terminal: a repeat while active is the same alarm.
    "CREATE UNIQUE INDEX uq_alarm_active_code ON alarm (terminal_id, code) WHERE active = 1",
    "CREATE INDEX ix_alarm_state ON alarm (active, acknowledged_at, raised_at)",
]


def _sqlite_triggers() -> list[str]:
    out: list[str] = []
    for table in APPEND_ONLY_TABLES:
        out.append(
            f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: UPDATE refused'); END"
        )
    for table in APPEND_ONLY_TABLES + NEVER_DELETED_TABLES:
        out.append(
            f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} rows are never deleted: DELETE refused'); END"
        )
    out += [
        "CREATE TRIGGER batch_step_final BEFORE UPDATE ON batch_step WHEN OLD.status != 'running'"
        " BEGIN SELECT RAISE(ABORT, 'a completed batch step cannot change'); END",
        "CREATE TRIGGER batch_frozen BEFORE UPDATE ON batch"
        " WHEN OLD.status IN ('released', 'rejected')"
        " BEGIN SELECT RAISE(ABORT, 'a released or rejected batch cannot change'); END",
        "CREATE TRIGGER deviation_reason_final BEFORE UPDATE ON deviation"
        " WHEN OLD.reason_text IS NOT NULL AND (NEW.reason_text IS NOT OLD.reason_text"
        " OR NEW.reason_code IS NOT OLD.reason_code OR NEW.reason_by IS NOT OLD.reason_by)"
        " BEGIN SELECT RAISE(ABORT, 'a deviation reason cannot change once given'); END",
        "CREATE TRIGGER deviation_disposition_final BEFORE UPDATE ON deviation"
        " WHEN OLD.disposition IS NOT NULL AND (NEW.disposition IS NOT OLD.disposition"
        " OR NEW.disposition_comment IS NOT OLD.disposition_comment)"
        " BEGIN SELECT RAISE(ABORT, 'a QA disposition cannot change once given'); END",
        "CREATE TRIGGER plc_command_result_final BEFORE UPDATE ON plc_command"
        " WHEN OLD.result IS NOT NULL"
        " BEGIN SELECT RAISE(ABORT, 'a PLC command result cannot change once recorded'); END",
    ]
    return out


_POSTGRES_GUARD = """
CREATE OR REPLACE FUNCTION hmi_batch_guard() RETURNS trigger AS $$
BEGIN
    IF TG_TABLE_NAME = 'batch_step' AND OLD.status <> 'running' THEN
        RAISE EXCEPTION 'a completed batch step cannot change';
    ELSIF TG_TABLE_NAME = 'batch' AND OLD.status IN ('released', 'rejected') THEN
        RAISE EXCEPTION 'a released or rejected batch cannot change';
    ELSIF TG_TABLE_NAME = 'deviation' AND OLD.reason_text IS NOT NULL
        AND (NEW.reason_text, NEW.reason_code, NEW.reason_by)
            IS DISTINCT FROM (OLD.reason_text, OLD.reason_code, OLD.reason_by) THEN
        RAISE EXCEPTION 'a deviation reason cannot change once given';
    ELSIF TG_TABLE_NAME = 'deviation' AND OLD.disposition IS NOT NULL
        AND (NEW.disposition, NEW.disposition_comment)
            IS DISTINCT FROM (OLD.disposition, OLD.disposition_comment) THEN
        RAISE EXCEPTION 'a QA disposition cannot change once given';
    ELSIF TG_TABLE_NAME = 'plc_command' AND OLD.result IS NOT NULL THEN
        RAISE EXCEPTION 'a PLC command result cannot change once recorded';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql
"""


def _postgres_triggers() -> list[str]:
    out: list[str] = [_POSTGRES_GUARD]
    for table in ("batch_step", "batch", "deviation", "plc_command"):
        out.append(
            f"CREATE TRIGGER {table}_guard BEFORE UPDATE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION hmi_batch_guard()"
        )
    for table in APPEND_ONLY_TABLES:
        out.append(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION hmi_refuse_change()"
        )
    for table in NEVER_DELETED_TABLES:
        out.append(
            f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION hmi_refuse_change()"
        )
    for table in APPEND_ONLY_TABLES + NEVER_DELETED_TABLES:
        out.append(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION hmi_refuse_change()"
        )
    return out


def upgrade(conn: Connection) -> None:
    postgres = conn.dialect.name == "postgresql"
    for statement in _TABLES:
        if postgres:
            statement = statement.replace(
                "INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY"
            )
        conn.exec_driver_sql(statement)
    for statement in _postgres_triggers() if postgres else _sqlite_triggers():
        conn.exec_driver_sql(statement)
