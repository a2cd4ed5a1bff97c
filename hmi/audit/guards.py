"""Append-only guards at three levels: ORM mapper events, refused bulk/Core statements, and the
database triggers created by the migrations (the last line of defence against raw SQL)."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Delete, Engine, Update, event
from sqlalchemy.orm import ORMExecuteState, Session, registry

from hmi.audit.tables import APPEND_ONLY, audit_event


class AppendOnlyViolation(Exception):
    """Something tried to change or remove a record of the audit trail."""


_RAW = re.compile(
    r"^\s*(?:update|delete\s+from|replace\s+into|insert\s+or\s+replace\s+into|drop\s+table"
    r"|drop\s+trigger|alter\s+table|truncate)\s+(?:if\s+exists\s+)?[\"`\[]?(\w+)",
    re.IGNORECASE,
)
_TRIGGER_OWNER = re.compile(r"^(\w+?)_(?:no_update|no_delete|append_only|no_truncate)$")


def _guarded(name: str) -> bool:
    owner = _TRIGGER_OWNER.match(name)
    return name in APPEND_ONLY or bool(owner and owner.group(1) in APPEND_ONLY)


def _refuse_statement(_conn: Any, clause: Any, *_args: Any, **_kw: Any) -> None:
    if isinstance(clause, Update | Delete) and clause.table.name in APPEND_ONLY:  # type: ignore[union-attr]
        raise AppendOnlyViolation(f"{clause.table.name} is append-only")  # type: ignore[union-attr]


def _refuse_raw(
    _conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, _many: bool
) -> None:
    match = _RAW.match(statement)
    if match and _guarded(match.group(1)):
        raise AppendOnlyViolation(f"{match.group(1)} is append-only: statement refused")


class AuditEventRecord:
    """Read-only ORM view of an audit event (for code that prefers the ORM)."""

    id: int
    seq: int
    action: str


_mapper_registry = registry()
_mapper_registry.map_imperatively(AuditEventRecord, audit_event)


@event.listens_for(AuditEventRecord, "before_update")
def _no_orm_update(*_args: Any) -> None:
    raise AppendOnlyViolation("audit events cannot be updated")


@event.listens_for(AuditEventRecord, "before_delete")
def _no_orm_delete(*_args: Any) -> None:
    raise AppendOnlyViolation("audit events cannot be deleted")


@event.listens_for(Session, "do_orm_execute")
def _no_bulk(state: ORMExecuteState) -> None:
    if state.is_update or state.is_delete:
        table = getattr(state.statement, "table", None)
        if table is not None and getattr(table, "name", None) in APPEND_ONLY:
            raise AppendOnlyViolation(f"{table.name} is append-only: bulk change refused")


def install_guards(engine: Engine) -> None:
    """Refuse UPDATE/DELETE on the audit tables in every statement this engine runs."""
    if getattr(engine, "_hmi_guards", False):
        return
    event.listen(engine, "before_execute", _refuse_statement)
    event.listen(engine, "before_cursor_execute", _refuse_raw)
    engine._hmi_guards = True  # type: ignore[attr-defined]
