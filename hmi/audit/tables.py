"""SQLAlchemy Core descriptions of the audit tables (the schema itself is created by migrations)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, MetaData, Table, Text

metadata = MetaData()

audit_event = Table(
    "audit_event",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("terminal_id", Text, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("ts", Text, nullable=False),
    Column("actor_id", Text, nullable=False),
    Column("actor_role", Text, nullable=False),
    Column("session_id", Text),
    Column("action", Text, nullable=False),
    Column("entity_type", Text),
    Column("entity_id", Text),
    Column("field", Text),
    Column("old_value", Text),
    Column("new_value", Text),
    Column("reason", Text),
    Column("meaning", Text),
    Column("details", Text, nullable=False),
    Column("prev_hash", Text, nullable=False),
    Column("row_hash", Text, nullable=False),
    Column("key_id", Text, nullable=False),
    Column("signature", Text, nullable=False),
)

audit_key = Table(
    "audit_key",
    metadata,
    Column("key_id", Text, primary_key=True),
    Column("terminal_id", Text, nullable=False),
    Column("algorithm", Text, nullable=False),
    Column("public_key", Text, nullable=False),
    Column("created_at", Text, nullable=False),
)

terminal = Table(
    "terminal",
    metadata,
    Column("terminal_id", Text, primary_key=True),
    Column("key_id", Text, nullable=False),
    Column("registered_at", Text, nullable=False),
)

APPEND_ONLY = frozenset({"audit_event", "audit_key", "terminal"})

#: Columns that make up an event's signed content (everything but storage and chain fields).
CONTENT_COLUMNS = (
    "ts",
    "actor_id",
    "actor_role",
    "session_id",
    "action",
    "entity_type",
    "entity_id",
    "field",
    "old_value",
    "new_value",
    "reason",
    "meaning",
    "details",
)
