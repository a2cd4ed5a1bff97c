"""Master recipe versions: the controlled copy of every imported recipe and its lifecycle.

A row's content (the TOML text, its canonical JSON and both hashes) never changes once
imported: triggers refuse it, and refuse deleting a row. Only the status moves, and only along
draft -> effective -> superseded/retired or draft -> retired; at most one version per recipe
is effective. Every change is also an audit event (``recipe.*``).
"""

from __future__ import annotations

from sqlalchemy import Connection

VERSION = 3
NAME = "master recipe versions"

_TABLE = """
CREATE TABLE recipe_version (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    recipe_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    product TEXT NOT NULL,
    format INTEGER NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('draft', 'effective', 'superseded', 'retired')),
    content TEXT NOT NULL,
    content_sha256 TEXT NOT NULL,
    canonical_json TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    source_path TEXT NOT NULL,
    imported_by TEXT NOT NULL,
    imported_at TEXT NOT NULL,
    approved_by TEXT,
    approved_at TEXT,
    approval_ref TEXT,
    superseded_at TEXT,
    superseded_by_version INTEGER,
    retired_by TEXT,
    retired_at TEXT,
    retire_reason TEXT,
    CONSTRAINT uq_recipe_version UNIQUE (recipe_id, version)
)
"""

_INDEXES = [
    # At most one effective version per recipe, enforced by the database itself.
    "CREATE UNIQUE INDEX uq_recipe_one_effective ON recipe_version (recipe_id)"
    " WHERE status = 'effective'",
    "CREATE INDEX ix_recipe_version_sha256 ON recipe_version (sha256)",
]

_FROZEN = (
    "recipe_id, version, name, product, format, content, content_sha256, canonical_json,"
    " sha256, source_path, imported_by, imported_at"
)

_TRANSITION_OK = (
    "(OLD.status = NEW.status)"
    " OR (OLD.status = 'draft' AND NEW.status IN ('effective', 'retired'))"
    " OR (OLD.status = 'effective' AND NEW.status IN ('superseded', 'retired'))"
)

_SQLITE_TRIGGERS = [
    f"CREATE TRIGGER recipe_version_content_frozen BEFORE UPDATE OF {_FROZEN} ON recipe_version"
    " BEGIN SELECT RAISE(ABORT, 'recipe_version content is immutable: UPDATE refused'); END",
    "CREATE TRIGGER recipe_version_no_delete BEFORE DELETE ON recipe_version"
    " BEGIN SELECT RAISE(ABORT, 'recipe_version rows are kept: DELETE refused'); END",
    "CREATE TRIGGER recipe_version_status_flow BEFORE UPDATE OF status ON recipe_version"
    f" WHEN NOT ({_TRANSITION_OK})"
    " BEGIN SELECT RAISE(ABORT, 'recipe_version status change not allowed'); END",
]

_POSTGRES_FUNCTION = f"""
CREATE OR REPLACE FUNCTION hmi_recipe_version_guard() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'recipe_version rows are kept: DELETE refused';
    END IF;
    IF (OLD.recipe_id, OLD.version, OLD.name, OLD.product, OLD.format, OLD.content,
        OLD.content_sha256, OLD.canonical_json, OLD.sha256, OLD.source_path, OLD.imported_by,
        OLD.imported_at)
       IS DISTINCT FROM
       (NEW.recipe_id, NEW.version, NEW.name, NEW.product, NEW.format, NEW.content,
        NEW.content_sha256, NEW.canonical_json, NEW.sha256, NEW.source_path, NEW.imported_by,
        NEW.imported_at) THEN
        RAISE EXCEPTION 'recipe_version content is immutable: UPDATE refused';
    END IF;
    IF NOT ({_TRANSITION_OK}) THEN
        RAISE EXCEPTION 'recipe_version status change not allowed';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql
"""

_POSTGRES_TRIGGERS = [
    "CREATE TRIGGER recipe_version_guard BEFORE UPDATE OR DELETE ON recipe_version"
    " FOR EACH ROW EXECUTE FUNCTION hmi_recipe_version_guard()",
    "CREATE TRIGGER recipe_version_no_truncate BEFORE TRUNCATE ON recipe_version"
    " FOR EACH STATEMENT EXECUTE FUNCTION hmi_refuse_change()",
]


def upgrade(conn: Connection) -> None:
    postgres = conn.dialect.name == "postgresql"
    table = _TABLE
    if postgres:
        table = table.replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY")
    conn.exec_driver_sql(table)
    for statement in _INDEXES:
        conn.exec_driver_sql(statement)
    if postgres:
        conn.exec_driver_sql(_POSTGRES_FUNCTION)
        for statement in _POSTGRES_TRIGGERS:
            conn.exec_driver_sql(statement)
    else:
        for statement in _SQLITE_TRIGGERS:
            conn.exec_driver_sql(statement)
