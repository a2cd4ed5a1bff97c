"""SQLAlchemy Core description of the alarm table (created by migration m0004_batch)."""

from __future__ import annotations

from sqlalchemy import Column, Integer, MetaData, Table, Text

metadata = MetaData()

alarm = Table(
    "alarm",
    metadata,
    Column("alarm_id", Integer, primary_key=True, autoincrement=True),
    Column("code", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("severity", Integer, nullable=False),
    Column("message", Text, nullable=False),
    Column("terminal_id", Text, nullable=False),
    Column("raised_at", Text, nullable=False),
    Column("active", Integer, nullable=False),
    Column("cleared_at", Text),
    Column("acknowledged_at", Text),
    Column("acknowledged_by", Text),
    Column("shelved_at", Text),
    Column("shelved_by", Text),
    Column("shelved_until", Text),
    Column("shelve_reason", Text),
    Column("unshelved_at", Text),
    Column("batch_id", Text),
    Column("step_index", Integer),
)
