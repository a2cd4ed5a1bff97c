"""Database engine, durability settings and the versioned schema path.

SQLite (the single-kiosk default) runs in WAL mode with ``synchronous=FULL`` so an
acknowledged record survives power loss. Every write transaction starts with
``BEGIN IMMEDIATE`` so two processes appending to one chain serialise instead of forking.
PostgreSQL is reached through the same schema; chain appends there take an advisory lock.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

READ_ONLY = "hmi_read_only"


class DatabaseError(Exception):
    """The database could not be opened, migrated or written; the message says why."""


def make_engine(url: str, *, busy_timeout_ms: int = 5000) -> Engine:
    """Build an engine with the product's durability settings (no connection is opened yet)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": busy_timeout_ms / 1000})
        _configure_sqlite(engine, busy_timeout_ms)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            # A read-only database keeps its journal mode; its writes are refused later.
            with contextlib.suppress(sqlite3.OperationalError):
                cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = FULL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Straight to the driver: this runs once per unit of work, on the audit's hot path.
        raw = conn.connection.driver_connection
        if conn.get_execution_options().get(READ_ONLY):
            raw.execute("BEGIN DEFERRED")  # type: ignore[union-attr]
        else:
            raw.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]


def sqlite_file_of(url: str) -> Path | None:
    """The file behind a plain ``sqlite:///path`` URL (not for URI or in-memory databases)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or "?" in url:
        return None
    path = url[len(prefix) :]
    return None if not path or path == ":memory:" else Path(path)


def is_sqlite(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "sqlite"


@contextmanager
def read_only(engine: Engine) -> Iterator[Connection]:
    """A read transaction that never takes the write lock (queries, verify, exports)."""
    with engine.connect() as conn:
        conn = conn.execution_options(**{READ_ONLY: True})
        with conn.begin():
            yield conn


def describe_db_error(exc: BaseException) -> str:
    """Turn a driver error into a sentence a site administrator understands."""
    message = str(getattr(exc, "orig", exc)).lower()
    if "disk is full" in message or "database or disk is full" in message:
        return "the disk holding the database is full"
    if "readonly" in message or "read-only" in message:
        return "the database is read-only"
    if "locked" in message or "busy" in message:
        return "the database is locked by another program"
    if "unable to open" in message:
        return "the database file cannot be opened"
    if "no such table" in message:
        return "the database has no schema; was the site created with 'hmi init'?"
    return f"database error: {getattr(exc, 'orig', exc)}"


def ping(engine: Engine) -> None:
    """Check that the database answers; raise :class:`DatabaseError` with a clear reason."""
    try:
        with read_only(engine) as conn:
            conn.execute(text("SELECT 1"))
    except (DBAPIError, SQLAlchemyError) as exc:
        raise DatabaseError(describe_db_error(exc)) from exc
