"""Database engine, durability settings and the versioned schema path.

SQLite (the single-kiosk default) runs in WAL mode with ``synchronous=FULL`` so an
acknowledged record survives power loss. Every write transaction starts with
``BEGIN IMMEDIATE`` so two processes appending to one chain serialise instead of forking.
PostgreSQL is reached through the same schema; chain appends there take an advisory lock.

A database password is never part of a configured URL: the site adds it when it builds the
engine (:func:`with_password`), and every URL that is shown, printed or recorded goes through
:func:`redact_url` first.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

READ_ONLY = "hmi_read_only"


class DatabaseError(Exception):
    """The database could not be opened, migrated or written; the message says why."""


REDACTED = "***"
_SECRET_QUERY_KEY = re.compile(r"pass|pwd|secret|token", re.IGNORECASE)
_USERINFO_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]*:)[^@\s]*(?=@)")
_QUERY_SECRET = re.compile(
    r"(?P<head>[?&;][^=&;#\s]*(?:pass|pwd|secret|token)[^=&;#\s]*=)[^&;#\s]*", re.IGNORECASE
)
_SENTINEL = "hmi0redacted0"


def url_password_keys(url: str) -> list[str]:
    """Where a URL carries a password: ``"password"`` for the user part, and the name of each
    query parameter that looks like one (``password=``, ``sslpassword=``...); empty if none."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        found = ["password"] if _USERINFO_PASSWORD.search(url) else []
        return found + [m.group("head")[1:-1] for m in _QUERY_SECRET.finditer(url)]
    found = ["password"] if parsed.password else []
    return found + [key for key in parsed.query if _SECRET_QUERY_KEY.search(key)]


def redact_url(url: str | URL) -> str:
    """A database URL as it may be shown, printed, logged or recorded: any password (in the
    user part or in the query) replaced by ``***``. The one place URLs are redacted."""
    if isinstance(url, str):
        try:
            parsed = make_url(url)
        except ArgumentError:
            text_url = _USERINFO_PASSWORD.sub(rf"\g<head>{REDACTED}", url)
            return _QUERY_SECRET.sub(rf"\g<head>{REDACTED}", text_url)
    else:
        parsed = url
    secret_keys = [key for key in parsed.query if _SECRET_QUERY_KEY.search(key)]
    if secret_keys:
        parsed = parsed.update_query_dict(dict.fromkeys(secret_keys, _SENTINEL))
    shown = parsed.render_as_string(hide_password=True)
    return shown.replace(_SENTINEL, REDACTED)


def with_password(url: str, password: str | None) -> str | URL:
    """The URL the engine is built with: the configured one, with the password from the
    password file or the environment added (never written back anywhere)."""
    if not password:
        return url
    return make_url(url).set(password=password)


def make_engine(url: str | URL, *, busy_timeout_ms: int = 5000) -> Engine:
    """Build an engine with the product's durability settings (no connection is opened yet)."""
    if make_url(url).get_backend_name() == "sqlite":
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
