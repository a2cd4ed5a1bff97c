"""Security alerts for supervisors and administrators (e.g. an account locked by failed logins).

An alert is raised inside the transaction that caused it, shown to the roles allowed to see
security alerts, acknowledged by one of them, and resolved when its cause is dealt with (an
administrator unlocking the account). Each step is an audit event.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, insert, select, update

from hmi.audit.chain import SYSTEM, Actor, AuditLog
from hmi.auth.errors import AccountStateError
from hmi.auth.roles import PERMISSIONS, Role, sorted_roles
from hmi.auth.tables import auth_alert
from hmi.clock import Clock, from_utc_text, to_utc_text
from hmi.db import read_only

if TYPE_CHECKING:
    from hmi.auth.sessions import Session, SessionService


HISTORY_LIMIT = 500
"""How many alerts :meth:`AlertService.history` returns at most (older ones stay in the
database and the audit trail)."""


class AlertKind(StrEnum):
    ACCOUNT_LOCKED = "account_locked"

    @property
    def label(self) -> str:
        """The kind as printed on screens."""
        return self.value.replace("_", " ").capitalize()


class AlertState(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


def alert_audience() -> tuple[Role, ...]:
    """The roles that see security alerts (from the permission matrix)."""
    return sorted_roles(PERMISSIONS["security_alert.view"])


@dataclass(frozen=True)
class SecurityAlert:
    alert_id: int
    kind: AlertKind
    subject_user_id: str | None
    raised_at: datetime
    terminal_id: str
    message: str
    audience: tuple[Role, ...]
    state: AlertState
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    resolved_by: str | None
    resolved_at: datetime | None
    resolution: str | None


def _alert(row: dict[str, object]) -> SecurityAlert:
    def when(value: object) -> datetime | None:
        return None if value is None else from_utc_text(str(value))

    def text(value: object) -> str | None:
        return None if value is None else str(value)

    return SecurityAlert(
        alert_id=int(str(row["alert_id"])),
        kind=AlertKind(str(row["kind"])),
        subject_user_id=text(row["subject_user_id"]),
        raised_at=from_utc_text(str(row["raised_at"])),
        terminal_id=str(row["terminal_id"]),
        message=str(row["message"]),
        audience=sorted_roles(Role(r) for r in str(row["audience"]).split(",") if r),
        state=AlertState(str(row["state"])),
        acknowledged_by=text(row["acknowledged_by"]),
        acknowledged_at=when(row["acknowledged_at"]),
        resolved_by=text(row["resolved_by"]),
        resolved_at=when(row["resolved_at"]),
        resolution=text(row["resolution"]),
    )


def raise_alert(
    conn: Connection,
    audit: AuditLog,
    now: datetime,
    *,
    kind: AlertKind,
    subject_user_id: str | None,
    message: str,
    details: dict[str, object] | None = None,
) -> int:
    """Raise an alert inside the caller's transaction (with its audit event)."""
    audience = alert_audience()
    result = conn.execute(
        insert(auth_alert),
        {
            "kind": kind.value,
            "subject_user_id": subject_user_id,
            "raised_at": to_utc_text(now),
            "terminal_id": audit.terminal_id,
            "message": message,
            "audience": ",".join(r.value for r in audience),
            "state": AlertState.OPEN.value,
        },
    )
    alert_id = int(result.inserted_primary_key[0])  # type: ignore[index]
    audit.record(
        conn,
        "auth.alert.raised",
        SYSTEM,
        entity=("security_alert", str(alert_id)),
        details={
            "kind": kind.value,
            "subject_user_id": subject_user_id,
            "message": message,
            "audience": [r.value for r in audience],
            **(details or {}),
        },
    )
    return alert_id


def resolve_alerts(
    conn: Connection,
    audit: AuditLog,
    now: datetime,
    actor: Actor,
    *,
    kind: AlertKind,
    subject_user_id: str,
    resolution: str,
) -> list[int]:
    """Resolve the open or acknowledged alerts of one kind about one user (caller's transaction)."""
    ids = [
        int(r[0])
        for r in conn.execute(
            select(auth_alert.c.alert_id).where(
                auth_alert.c.kind == kind.value,
                auth_alert.c.subject_user_id == subject_user_id,
                auth_alert.c.state != AlertState.RESOLVED.value,
            )
        )
    ]
    for alert_id in ids:
        conn.execute(
            update(auth_alert)
            .where(auth_alert.c.alert_id == alert_id)
            .values(
                state=AlertState.RESOLVED.value,
                resolved_by=actor.user_id,
                resolved_at=to_utc_text(now),
                resolution=resolution,
            )
        )
        audit.record(
            conn,
            "auth.alert.resolved",
            actor,
            entity=("security_alert", str(alert_id)),
            field="state",
            new_value=AlertState.RESOLVED.value,
            reason=resolution,
        )
    return ids


class AlertService:
    """What supervisors and administrators see and acknowledge."""

    def __init__(
        self, engine: Engine, audit: AuditLog, clock: Clock, sessions: SessionService
    ) -> None:
        self.engine = engine
        self.audit = audit
        self.clock = clock
        self.sessions = sessions

    def alerts(
        self, session: Session, *, states: Iterable[AlertState] = (AlertState.OPEN,)
    ) -> list[SecurityAlert]:
        """Alerts in the given states, newest first (needs ``security_alert.view``)."""
        self.sessions.authorize(session, "security_alert.view")
        wanted = [s.value for s in states]
        with read_only(self.engine) as conn:
            rows = conn.execute(
                select(auth_alert)
                .where(auth_alert.c.state.in_(wanted))
                .order_by(auth_alert.c.alert_id.desc())
            ).mappings()
            return [_alert(dict(r)) for r in rows]

    def history(self, session: Session, *, limit: int = HISTORY_LIMIT) -> list[SecurityAlert]:
        """The most recent alerts in every state, newest first (needs ``security_alert.view``):
        what the security alerts screen lists, so an administrator sees what was raised, who
        acknowledged it and how it was resolved."""
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        self.sessions.authorize(session, "security_alert.view")
        with read_only(self.engine) as conn:
            rows = conn.execute(
                select(auth_alert).order_by(auth_alert.c.alert_id.desc()).limit(limit)
            ).mappings()
            return [_alert(dict(r)) for r in rows]

    def acknowledge(self, session: Session, alert_id: int) -> SecurityAlert:
        """Record that a supervisor or administrator has seen the alert."""
        actor = self.sessions.authorize(
            session, "security_alert.acknowledge", entity=("security_alert", str(alert_id))
        )
        with read_only(self.engine) as conn:
            found = conn.execute(
                select(auth_alert.c.state).where(auth_alert.c.alert_id == alert_id)
            ).scalar()
        if found != AlertState.OPEN.value:
            problem = f"security alert {alert_id} is {found or 'unknown'}, not open"
            self.audit.record_now(
                "auth.alert.acknowledge_refused",
                actor,
                entity=("security_alert", str(alert_id)),
                details={"problem": problem},
            )
            raise AccountStateError(problem)
        now = self.clock.now()
        with self.audit.transaction() as conn:
            conn.execute(
                update(auth_alert)
                .where(auth_alert.c.alert_id == alert_id)
                .values(
                    state=AlertState.ACKNOWLEDGED.value,
                    acknowledged_by=actor.user_id,
                    acknowledged_at=to_utc_text(now),
                )
            )
            self.audit.record(
                conn,
                "auth.alert.acknowledged",
                actor,
                entity=("security_alert", str(alert_id)),
                field="state",
                old_value=AlertState.OPEN.value,
                new_value=AlertState.ACKNOWLEDGED.value,
            )
            updated = (
                conn.execute(select(auth_alert).where(auth_alert.c.alert_id == alert_id))
                .mappings()
                .one()
            )
            return _alert(dict(updated))
