"""Versioned schema path: numbered migration modules applied in order, recorded in the database.

Each module ``mNNNN_name.py`` defines ``VERSION`` (int), ``NAME`` (str) and
``upgrade(conn)``. Migrations only ever add: records written by an earlier release stay
readable and verifiable after an upgrade. Callers record the applied migrations in the audit
trail (``db.migrated``).
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from types import ModuleType

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from hmi.db import DatabaseError, describe_db_error


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    module: ModuleType


def available() -> list[Migration]:
    """Every migration shipped with this release, in version order."""
    found: list[Migration] = []
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("m") or not info.name[1:5].isdigit():
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        found.append(Migration(int(module.VERSION), str(module.NAME), module))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise DatabaseError(f"two migrations share a version number: {versions}")
    return found


def _ensure_table(conn: Connection) -> None:
    conn.execute(
        text(
            "CREATE TABLE IF NOT EXISTS schema_migration ("
            " version INTEGER PRIMARY KEY,"
            " name TEXT NOT NULL,"
            " applied_at TEXT NOT NULL)"
        )
    )


def current_version(conn: Connection) -> int:
    _ensure_table(conn)
    value = conn.execute(text("SELECT MAX(version) FROM schema_migration")).scalar()
    return int(value or 0)


def migrate(engine: Engine, applied_at: str) -> list[Migration]:
    """Apply every pending migration, each in its own transaction; return those applied."""
    done: list[Migration] = []
    try:
        for migration in available():
            with engine.begin() as conn:
                if migration.version <= current_version(conn):
                    continue
                migration.module.upgrade(conn)
                conn.execute(
                    text(
                        "INSERT INTO schema_migration (version, name, applied_at)"
                        " VALUES (:v, :n, :t)"
                    ),
                    {"v": migration.version, "n": migration.name, "t": applied_at},
                )
            done.append(migration)
    except DBAPIError as exc:
        raise DatabaseError(f"schema upgrade failed: {describe_db_error(exc)}") from exc
    return done


def pending(engine: Engine) -> list[Migration]:
    with engine.begin() as conn:
        version = current_version(conn)
    return [m for m in available() if m.version > version]
