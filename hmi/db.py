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
import os
import re
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from sqlalchemy import URL, Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

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


def make_engine(
    url: str | URL, *, busy_timeout_ms: int = 5000, observe_only: bool = False
) -> Engine:
    """Build an engine with the product's durability settings (no connection is opened yet).

    ``observe_only`` builds an engine that cannot write: an SQLite file is opened read-only
    (``mode=ro``: neither the file nor its WAL is ever written, and no checkpoint of the WAL
    runs when it closes), every transaction is a plain read (no write lock is ever asked for),
    and a PostgreSQL session is read-only. The reading commands (list, show, verify) use it."""
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            if observe_only:
                parsed = _read_only_sqlite_url(parsed)
            engine = create_engine(parsed, connect_args={"timeout": busy_timeout_ms / 1000})
            _configure_sqlite(engine, busy_timeout_ms, observe_only=observe_only)
            return engine
        if observe_only:
            return create_engine(
                parsed, pool_pre_ping=True, execution_options={"postgresql_readonly": True}
            )
        return create_engine(parsed, pool_pre_ping=True)
    except ModuleNotFoundError as exc:
        raise DatabaseError(
            f"the database driver {exc.name!r} for {redact_url(url)} is not installed; install"
            " it in the environment that runs hmi, e.g. pip install psycopg[binary]"
        ) from None
    except (ArgumentError, NoSuchModuleError) as exc:
        raise DatabaseError(f"the database URL {redact_url(url)} cannot be used: {exc}") from None


def _read_only_sqlite_url(url: URL) -> URL:
    """The same SQLite file opened read-only (an SQLite URI filename with ``mode=ro``).

    On a read-only file system (a site copy on read-only media, a snapshot, a volume the
    system remounted read-only) SQLite cannot create the WAL's shared-memory file it needs to
    read, and nobody can change the file there: it is opened ``immutable``, which reads it
    exactly as it is. Unless a WAL beside it holds changes not yet in the file: an immutable
    open would skip them, so that is refused, saying why (see :func:`_unreadable_wal`)."""
    database = url.database
    if not database or database == ":memory:" or url.query.get("uri"):
        return url  # in memory, or already a URI filename: as configured
    file = Path(database).absolute()
    query = {**url.query, "mode": "ro", "uri": "true"}
    if on_read_only_file_system(file):
        _unreadable_wal(file)
        query["immutable"] = "1"
    return url.set(database=f"file:{quote(file.as_posix())}", query=query)


def on_read_only_file_system(file: Path) -> bool:
    """Whether the file system holding ``file``'s folder is mounted read-only."""
    try:
        return bool(os.statvfs(file.parent).f_flag & os.ST_RDONLY)
    except OSError:
        return False  # no such folder: the open says so


def _unreadable_wal(file: Path) -> None:
    wal = file.with_name(file.name + "-wal")
    try:
        pending = wal.stat().st_size > 0
    except OSError:
        return
    if pending:
        raise DatabaseError(
            f"the database is on a read-only file system and its write-ahead log {wal.name}"
            " holds changes not yet written into it, which SQLite cannot read there; nothing"
            " was read or written: copy the whole site folder to writable storage and read"
            " the copy"
        )


def _configure_sqlite(engine: Engine, busy_timeout_ms: int, *, observe_only: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            if observe_only:
                cursor.execute("PRAGMA query_only = ON")
            else:
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
        if observe_only or conn.get_execution_options().get(READ_ONLY):
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


def describe_read_error(exc: BaseException, *, busy_timeout_ms: int | None = None) -> str:
    """Why a database cannot be read, for a command that only reads (it never asks for the
    write lock, so only an exclusive lock or the file system stops it)."""
    message = str(getattr(exc, "orig", exc)).lower()
    if "locked" in message or "busy" in message:
        waited = "" if busy_timeout_ms is None else f" for more than {busy_timeout_ms} ms"
        return (
            f"the database is locked by another program{waited} ([database] busy_timeout_ms);"
            " nothing was read or written: try again when it is released"
        )
    if "readonly" in message or "read-only" in message:
        return (
            "the database cannot be read here: SQLite needs its shared-memory file (hmi.db-shm)"
            " beside the database to read it, and the folder or that file is read-only for this"
            " account; nothing was written: give this account write access to the folder, or"
            " read a copy of the site"
        )
    if "unable to open" in message:
        return (
            "the database file cannot be opened for reading: check that this account may read"
            " it and its folder"
        )
    return describe_db_error(exc)


def check_readable(engine: Engine, busy_timeout_ms: int | None = None) -> None:
    """Read the schema in a read transaction; raise :class:`DatabaseError` saying why the
    database cannot be read (see :func:`describe_read_error`)."""
    try:
        with read_only(engine) as conn:
            conn.execute(text("SELECT 1"))
            if is_sqlite(engine):
                conn.execute(text("SELECT count(*) FROM sqlite_master"))
    except (DBAPIError, SQLAlchemyError, sqlite3.Error) as exc:
        file = _sqlite_file_of_engine(engine)
        if file is not None and _no_space_left(file):
            raise DatabaseError(
                "the disk holding the database is full: SQLite cannot create the shared-memory"
                f" file ({file.name}-shm) it needs to read the database while no terminal has it"
                " open; nothing was read or written: free space on that disk"
            ) from None
        raise DatabaseError(describe_read_error(exc, busy_timeout_ms=busy_timeout_ms)) from None


def _sqlite_file_of_engine(engine: Engine) -> Path | None:
    """The file behind an SQLite engine (a plain path or an SQLite URI filename)."""
    if not is_sqlite(engine):
        return None
    database = engine.url.database
    if not database or database == ":memory:":
        return None
    return Path(unquote(database.removeprefix("file:")))


def _no_space_left(file: Path) -> bool:
    try:
        return os.statvfs(file.parent).f_bavail == 0
    except OSError:
        return False


def ping(engine: Engine) -> None:
    """Check that the database answers; raise :class:`DatabaseError` with a clear reason."""
    try:
        with read_only(engine) as conn:
            conn.execute(text("SELECT 1"))
    except (DBAPIError, SQLAlchemyError) as exc:
        raise DatabaseError(describe_db_error(exc)) from exc
