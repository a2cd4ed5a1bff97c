"""Accounts, password history, TOTP enrolments, sessions, e-signatures, the signature
accountability statement, security alerts and training records.

Records are append-only (database triggers): password history, e-signatures, statement
acceptances and training records. State tables (accounts, TOTP enrolments, sessions, alerts) are
updated in place, every change with its audit event, but never deleted; a user ID can never be
changed or reused.
"""

from __future__ import annotations

from sqlalchemy import Connection

VERSION = 2
NAME = "accounts, sessions and electronic signatures"

APPEND_ONLY_TABLES = (
    "auth_password_history",
    "esignature",
    "auth_signature_statement",
    "user_training",
)
NEVER_DELETED_TABLES = ("auth_user", "auth_totp", "auth_session", "auth_alert")

_TABLES = [
    """
    CREATE TABLE auth_user (
        user_id TEXT PRIMARY KEY,
        full_name TEXT NOT NULL,
        roles TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('active', 'locked', 'disabled')),
        password_hash TEXT NOT NULL,
        password_changed_at TEXT NOT NULL,
        password_set_with_totp INTEGER NOT NULL DEFAULT 0,
        must_change_password INTEGER NOT NULL DEFAULT 0,
        failed_count INTEGER NOT NULL DEFAULT 0,
        locked_at TEXT,
        identity_verified_by TEXT NOT NULL CHECK (length(identity_verified_by) > 0),
        identity_method TEXT NOT NULL CHECK (length(identity_method) > 0),
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL,
        disabled_at TEXT,
        disabled_by TEXT,
        last_login_at TEXT
    )
    """,
    """
    CREATE TABLE auth_password_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id TEXT NOT NULL REFERENCES auth_user (user_id),
        password_hash TEXT NOT NULL,
        set_at TEXT NOT NULL,
        set_by TEXT NOT NULL
    )
    """,
    "CREATE INDEX ix_auth_password_history_user ON auth_password_history (user_id, id)",
    """
    CREATE TABLE auth_totp (
        enrolment_id INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id TEXT NOT NULL REFERENCES auth_user (user_id),
        secret_enc TEXT NOT NULL,
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL,
        confirmed_at TEXT,
        revoked_at TEXT,
        revoked_by TEXT,
        last_used_step BIGINT,
        last_used_at TEXT
    )
    """,
    "CREATE INDEX ix_auth_totp_user ON auth_totp (user_id, enrolment_id)",
    """
    CREATE TABLE auth_session (
        session_id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES auth_user (user_id),
        role TEXT NOT NULL,
        roles TEXT NOT NULL,
        terminal_id TEXT NOT NULL,
        started_at TEXT NOT NULL,
        last_activity_at TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('active', 'locked', 'ended')),
        locked_at TEXT,
        ended_at TEXT,
        end_cause TEXT,
        login_components TEXT NOT NULL
    )
    """,
    "CREATE INDEX ix_auth_session_user ON auth_session (user_id, started_at)",
    "CREATE INDEX ix_auth_session_terminal ON auth_session (terminal_id, state)",
    """
    CREATE TABLE esignature (
        signature_id TEXT PRIMARY KEY,
        record_type TEXT NOT NULL,
        record_id TEXT NOT NULL,
        record_sha256 TEXT NOT NULL,
        meaning TEXT NOT NULL,
        signer_id TEXT NOT NULL REFERENCES auth_user (user_id),
        signer_name TEXT NOT NULL,
        signer_role TEXT NOT NULL,
        signed_at TEXT NOT NULL,
        session_id TEXT,
        terminal_id TEXT NOT NULL,
        components TEXT NOT NULL,
        cosign_of TEXT REFERENCES esignature (signature_id),
        binding_sha256 TEXT NOT NULL,
        audit_terminal_id TEXT NOT NULL,
        audit_seq BIGINT NOT NULL
    )
    """,
    "CREATE INDEX ix_esignature_record ON esignature (record_type, record_id)",
    "CREATE INDEX ix_esignature_signer ON esignature (signer_id)",
    """
    CREATE TABLE auth_signature_statement (
        user_id TEXT PRIMARY KEY REFERENCES auth_user (user_id),
        statement_version TEXT NOT NULL,
        statement_sha256 TEXT NOT NULL,
        accepted_at TEXT NOT NULL,
        session_id TEXT,
        terminal_id TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE auth_alert (
        alert_id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        subject_user_id TEXT,
        raised_at TEXT NOT NULL,
        terminal_id TEXT NOT NULL,
        message TEXT NOT NULL,
        audience TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
        acknowledged_by TEXT,
        acknowledged_at TEXT,
        resolved_by TEXT,
        resolved_at TEXT,
        resolution TEXT
    )
    """,
    "CREATE INDEX ix_auth_alert_state ON auth_alert (state, raised_at)",
    """
    CREATE TABLE user_training (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id TEXT NOT NULL REFERENCES auth_user (user_id),
        recipe_id TEXT NOT NULL,
        recipe_version TEXT,
        status TEXT NOT NULL DEFAULT 'trained' CHECK (status IN ('trained', 'withdrawn')),
        trained_by TEXT NOT NULL,
        ts TEXT NOT NULL,
        evidence TEXT,
        session_id TEXT,
        terminal_id TEXT
    )
    """,
    "CREATE INDEX ix_user_training_user_recipe ON user_training (user_id, recipe_id, id)",
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
    out.append(
        "CREATE TRIGGER auth_user_id_fixed BEFORE UPDATE OF user_id ON auth_user "
        "WHEN NEW.user_id IS NOT OLD.user_id "
        "BEGIN SELECT RAISE(ABORT, 'a user ID can never be changed'); END"
    )
    return out


def _postgres_triggers() -> list[str]:
    out: list[str] = []
    for table in APPEND_ONLY_TABLES:
        out.append(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION hmi_refuse_change()"
        )
    for table in APPEND_ONLY_TABLES + NEVER_DELETED_TABLES:
        out.append(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION hmi_refuse_change()"
        )
    for table in NEVER_DELETED_TABLES:
        out.append(
            f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION hmi_refuse_change()"
        )
    out.append(
        "CREATE TRIGGER auth_user_id_fixed BEFORE UPDATE OF user_id ON auth_user "
        "FOR EACH ROW WHEN (NEW.user_id IS DISTINCT FROM OLD.user_id) "
        "EXECUTE FUNCTION hmi_refuse_change()"
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
