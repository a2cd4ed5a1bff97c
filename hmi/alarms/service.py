"""Alarm management (ISA-18.2): raise, clear, acknowledge, shelve, unshelve; persisted, audited.

An alarm occurrence is raised by the PLC (its alarm events) or by the HMI itself (communication
loss), is *active* until its condition clears, and *unacknowledged* until a person acknowledges
it. It stays in the active list while it is active or unacknowledged. Shelving hides it from the
list for a bounded time with a reason; when the time is up it comes back by itself (recorded as
``alarm.unshelved`` by the system). Every transition is a row change plus an audit event in one
transaction. Other services (the batch engine) learn of transitions through :meth:`subscribe`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, func, insert, or_, select, update

from hmi.alarms.tables import alarm
from hmi.audit.chain import SYSTEM, Actor, AuditLog
from hmi.clock import Clock, from_utc_text, to_utc_text
from hmi.db import read_only
from hmi.plc.types import (
    COMM_LOSS_ALARM,
    ConnectionState,
    ConnectionStateChanged,
    PlcAlarmEvent,
    TagValuesChanged,
)

log = logging.getLogger(__name__)

RECORD_TYPE = "alarm"
COMM_LOSS_SEVERITY = 800
COMM_LOSS_MESSAGE = "Communication with the PLC lost"


class AlarmError(Exception):
    """An alarm operation was refused; the message says why in one sentence."""


class AlarmNotFound(AlarmError):
    """No alarm with that number."""


class AlarmStateError(AlarmError):
    """The alarm is not in a state that allows this (already acknowledged, not shelved...)."""


class Authorizer(Protocol):
    """Checks that a session may act and records a refusal (``SessionService`` is one)."""

    def authorize(
        self,
        session: Any,
        action: str,
        *,
        entity: tuple[str, str] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> Actor: ...


class AlarmTransition(StrEnum):
    RAISED = "raised"
    CLEARED = "cleared"
    ACKNOWLEDGED = "acknowledged"
    SHELVED = "shelved"
    UNSHELVED = "unshelved"


@dataclass(frozen=True)
class AlarmRecord:
    """One alarm occurrence as stored (what the TUI lists)."""

    alarm_id: int
    code: str
    source: str
    severity: int
    message: str
    raised_at: datetime
    active: bool
    cleared_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    shelved_at: datetime | None
    shelved_by: str | None
    shelved_until: datetime | None
    shelve_reason: str | None
    unshelved_at: datetime | None
    batch_id: str | None
    step_index: int | None

    @property
    def acknowledged(self) -> bool:
        return self.acknowledged_at is not None

    @property
    def shelved(self) -> bool:
        return self.shelved_until is not None and self.unshelved_at is None

    @property
    def state_label(self) -> str:
        """ISA-18.2 state in words: ``active, unacknowledged`` / ``cleared, acknowledged``."""
        first = "active" if self.active else "cleared"
        second = "acknowledged" if self.acknowledged else "unacknowledged"
        shelved = ", shelved" if self.shelved else ""
        return f"{first}, {second}{shelved}"


@dataclass(frozen=True)
class AlarmChange:
    """A transition that just committed, for listeners."""

    transition: AlarmTransition
    alarm: AlarmRecord


Listener = Callable[[AlarmChange], None]
ContextProvider = Callable[[], tuple[str, int] | None]


def _dt(value: object) -> datetime | None:
    return None if value is None else from_utc_text(str(value))


def _record(row: Mapping[Any, Any]) -> AlarmRecord:
    raised = _dt(row["raised_at"])
    assert raised is not None
    return AlarmRecord(
        alarm_id=int(row["alarm_id"]),
        code=str(row["code"]),
        source=str(row["source"]),
        severity=int(row["severity"]),
        message=str(row["message"]),
        raised_at=raised,
        active=bool(row["active"]),
        cleared_at=_dt(row["cleared_at"]),
        acknowledged_at=_dt(row["acknowledged_at"]),
        acknowledged_by=row["acknowledged_by"],
        shelved_at=_dt(row["shelved_at"]),
        shelved_by=row["shelved_by"],
        shelved_until=_dt(row["shelved_until"]),
        shelve_reason=row["shelve_reason"],
        unshelved_at=_dt(row["unshelved_at"]),
        batch_id=row["batch_id"],
        step_index=None if row["step_index"] is None else int(row["step_index"]),
    )


def _clean_text(text: str | None, what: str, minimum: int = 3) -> str:
    value = " ".join((text or "").split())
    if len(value) < minimum:
        raise AlarmError(f"a {what} is required (at least {minimum} characters)")
    if len(value) > 500:
        raise AlarmError(f"the {what} is too long (at most 500 characters)")
    return value


class AlarmService:
    """The kiosk's alarm list: fed by PLC events, acted on by people, read by the TUI."""

    def __init__(
        self,
        *,
        engine: Engine,
        audit: AuditLog,
        clock: Clock,
        sessions: Authorizer,
        shelve_max: timedelta = timedelta(hours=8),
    ) -> None:
        self.engine = engine
        self.audit = audit
        self.clock = clock
        self.sessions = sessions
        self.shelve_max = shelve_max
        self.context_provider: ContextProvider | None = None
        self._listeners: list[Listener] = []

    # -- listeners ----------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` after every committed transition; returns the unsubscribe call."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(listener)

        return unsubscribe

    def _notify(self, changes: Iterable[AlarmChange]) -> None:
        for change in changes:
            for listener in list(self._listeners):
                try:
                    listener(change)
                except Exception:  # a listener's failure must not lose the alarm
                    log.exception("alarm listener failed on %s", change.transition)

    # -- from the PLC -------------------------------------------------------------------

    def handle(self, event: PlcAlarmEvent | ConnectionStateChanged) -> AlarmRecord | None:
        """Record what the PLC gateway reported: an alarm transition or a connection change."""
        if isinstance(event, ConnectionStateChanged):
            if event.state is ConnectionState.LOST:
                return self.raise_alarm(
                    COMM_LOSS_ALARM,
                    COMM_LOSS_MESSAGE,
                    COMM_LOSS_SEVERITY,
                    source="hmi",
                    details={"reason": event.reason},
                )
            if event.state is ConnectionState.CONNECTED:
                return self.clear_alarm(COMM_LOSS_ALARM)
            return None
        if event.active:
            return self.raise_alarm(
                event.code, event.message, event.severity, source=_source(event.source)
            )
        return self.clear_alarm(event.code)

    def raise_alarm(
        self,
        code: str,
        message: str,
        severity: int,
        *,
        source: str = "plc",
        details: Mapping[str, Any] | None = None,
    ) -> AlarmRecord:
        """Raise an alarm (a repeat while the same code is active changes nothing)."""
        context = self.context_provider() if self.context_provider else None
        now = to_utc_text(self.clock.now())
        with self.audit.transaction() as conn:
            existing = self._active_row(conn, code)
            if existing is not None:
                return _record(existing)
            result = conn.execute(
                insert(alarm).values(
                    code=code,
                    source=source,
                    severity=int(severity),
                    message=message,
                    terminal_id=self.audit.terminal_id,
                    raised_at=now,
                    active=1,
                    batch_id=context[0] if context else None,
                    step_index=context[1] if context else None,
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            alarm_id = int(key[0])
            self.audit.record(
                conn,
                "alarm.raised",
                SYSTEM,
                entity=(RECORD_TYPE, str(alarm_id)),
                field="state",
                new_value="active, unacknowledged",
                details={
                    **dict(details or {}),
                    "code": code,
                    "source": source,
                    "severity": int(severity),
                    "message": message,
                    "batch_id": context[0] if context else None,
                    "step_index": context[1] if context else None,
                },
            )
            record = _record(self._row(conn, alarm_id))
        self._notify([AlarmChange(AlarmTransition.RAISED, record)])
        return record

    def clear_alarm(self, code: str) -> AlarmRecord | None:
        """The condition behind an active alarm is gone (no-op if it is not active)."""
        now = to_utc_text(self.clock.now())
        with self.audit.transaction() as conn:
            row = self._active_row(conn, code)
            if row is None:
                return None
            conn.execute(
                update(alarm)
                .where(alarm.c.alarm_id == row["alarm_id"])
                .values(active=0, cleared_at=now)
            )
            self.audit.record(
                conn,
                "alarm.cleared",
                SYSTEM,
                entity=(RECORD_TYPE, str(row["alarm_id"])),
                field="state",
                old_value=_state_text(row),
                new_value=_state_text({**row, "active": 0}),
                details={"code": code},
            )
            record = _record(self._row(conn, int(row["alarm_id"])))
        self._notify([AlarmChange(AlarmTransition.CLEARED, record)])
        return record

    def reconcile(self, active_codes: Iterable[str]) -> list[AlarmRecord]:
        """Align the stored PLC alarms with the codes the PLC says are active now (start-up)."""
        wanted = set(active_codes)
        with read_only(self.engine) as conn:
            stored = {
                str(r["code"])
                for r in conn.execute(
                    select(alarm.c.code).where(
                        alarm.c.active == 1,
                        alarm.c.source == "plc",
                        alarm.c.terminal_id == self.audit.terminal_id,
                    )
                ).mappings()
            }
        changed: list[AlarmRecord] = []
        for code in sorted(stored - wanted):
            cleared = self.clear_alarm(code)
            if cleared is not None:
                changed.append(cleared)
        for code in sorted(wanted - stored):
            changed.append(self.raise_alarm(code, f"{code} (active at start-up)", 500))
        return changed

    # -- people -------------------------------------------------------------------------

    def acknowledge(self, session: Any, alarm_id: int, comment: str | None = None) -> AlarmRecord:
        """A person acknowledges an alarm (who and when are recorded)."""
        entity = (RECORD_TYPE, str(alarm_id))
        actor = self.sessions.authorize(session, "alarm.acknowledge", entity=entity)
        now = to_utc_text(self.clock.now())
        refusal: str | None = None
        with self.audit.transaction() as conn:
            row = self._find(conn, alarm_id)
            if row["acknowledged_at"] is not None:
                refusal = f"alarm {alarm_id} ({row['code']}) is already acknowledged"
                self.audit.record(
                    conn, "alarm.acknowledge.refused", actor, entity=entity, reason=refusal
                )
            else:
                conn.execute(
                    update(alarm)
                    .where(alarm.c.alarm_id == alarm_id)
                    .values(acknowledged_at=now, acknowledged_by=actor.user_id)
                )
                self.audit.record(
                    conn,
                    "alarm.acknowledged",
                    actor,
                    entity=entity,
                    field="state",
                    old_value=_state_text(row),
                    new_value=_state_text({**row, "acknowledged_at": now}),
                    reason=" ".join(comment.split()) if comment else None,
                    details={"code": row["code"]},
                )
                record = _record(self._row(conn, alarm_id))
        if refusal is not None:
            raise AlarmStateError(refusal)
        self._notify([AlarmChange(AlarmTransition.ACKNOWLEDGED, record)])
        return record

    def shelve(self, session: Any, alarm_id: int, duration: timedelta, reason: str) -> AlarmRecord:
        """Hide an alarm from the list for ``duration`` (bounded by the site's limit)."""
        entity = (RECORD_TYPE, str(alarm_id))
        actor = self.sessions.authorize(session, "alarm.shelve", entity=entity)
        why = _clean_text(reason, "reason for shelving")
        if duration <= timedelta(0) or duration > self.shelve_max:
            limit = int(self.shelve_max.total_seconds() // 60)
            self.audit.record_now(
                "alarm.shelve.refused",
                actor,
                entity=entity,
                reason="duration out of bounds",
                details={"seconds": int(duration.total_seconds()), "limit_minutes": limit},
            )
            raise AlarmError(f"an alarm can be shelved for 1 to {limit} minutes")
        now = self.clock.now()
        until = to_utc_text(now + duration)
        refusal: str | None = None
        with self.audit.transaction() as conn:
            row = self._find(conn, alarm_id)
            if _record(row).shelved:
                refusal = f"alarm {alarm_id} ({row['code']}) is already shelved"
            elif not row["active"] and row["acknowledged_at"] is not None:
                refusal = f"alarm {alarm_id} ({row['code']}) is cleared and acknowledged"
            if refusal is not None:
                self.audit.record(
                    conn, "alarm.shelve.refused", actor, entity=entity, reason=refusal
                )
            else:
                conn.execute(
                    update(alarm)
                    .where(alarm.c.alarm_id == alarm_id)
                    .values(
                        shelved_at=to_utc_text(now),
                        shelved_by=actor.user_id,
                        shelved_until=until,
                        shelve_reason=why,
                        unshelved_at=None,
                    )
                )
                self.audit.record(
                    conn,
                    "alarm.shelved",
                    actor,
                    entity=entity,
                    field="shelved_until",
                    new_value=until,
                    reason=why,
                    details={"code": row["code"], "minutes": int(duration.total_seconds() // 60)},
                )
                record = _record(self._row(conn, alarm_id))
        if refusal is not None:
            raise AlarmStateError(refusal)
        self._notify([AlarmChange(AlarmTransition.SHELVED, record)])
        return record

    def unshelve(self, session: Any, alarm_id: int, reason: str) -> AlarmRecord:
        """Bring a shelved alarm back before its time is up."""
        entity = (RECORD_TYPE, str(alarm_id))
        actor = self.sessions.authorize(session, "alarm.shelve", entity=entity)
        why = _clean_text(reason, "reason")
        with self.audit.transaction() as conn:
            row = self._find(conn, alarm_id)
            if not _record(row).shelved:
                self.audit.record(
                    conn, "alarm.unshelve.refused", actor, entity=entity, reason="not shelved"
                )
                refused = True
            else:
                refused = False
                record = self._unshelve(conn, row, actor, why)
        if refused:
            raise AlarmStateError(f"alarm {alarm_id} is not shelved")
        self._notify([AlarmChange(AlarmTransition.UNSHELVED, record)])
        return record

    def expire_shelving(self) -> list[AlarmRecord]:
        """Unshelve every alarm whose shelving time is up (called periodically)."""
        now = to_utc_text(self.clock.now())
        done: list[AlarmRecord] = []
        with self.audit.transaction() as conn:
            rows = (
                conn.execute(
                    select(alarm).where(
                        alarm.c.shelved_until.is_not(None),
                        alarm.c.unshelved_at.is_(None),
                        alarm.c.shelved_until <= now,
                        alarm.c.terminal_id == self.audit.terminal_id,
                    )
                )
                .mappings()
                .all()
            )
            for row in rows:
                done.append(self._unshelve(conn, row, SYSTEM, "shelving time is up"))
        self._notify(AlarmChange(AlarmTransition.UNSHELVED, r) for r in done)
        return done

    def _unshelve(
        self, conn: Connection, row: Mapping[Any, Any], actor: Actor, why: str
    ) -> AlarmRecord:
        now = to_utc_text(self.clock.now())
        alarm_id = int(row["alarm_id"])
        conn.execute(update(alarm).where(alarm.c.alarm_id == alarm_id).values(unshelved_at=now))
        self.audit.record(
            conn,
            "alarm.unshelved",
            actor,
            entity=(RECORD_TYPE, str(alarm_id)),
            field="shelved_until",
            old_value=row["shelved_until"],
            reason=why,
            details={"code": row["code"]},
        )
        return _record(self._row(conn, alarm_id))

    # -- queries for the TUI -------------------------------------------------------------

    def active(self, *, include_shelved: bool = False) -> list[AlarmRecord]:
        """Alarms that are active or not yet acknowledged, most severe and newest first."""
        query = select(alarm).where(
            alarm.c.terminal_id == self.audit.terminal_id,
            or_(alarm.c.active == 1, alarm.c.acknowledged_at.is_(None)),
        )
        with read_only(self.engine) as conn:
            rows = [_record(r) for r in conn.execute(query).mappings()]
        if not include_shelved:
            rows = [r for r in rows if not r.shelved]
        rows.sort(key=lambda r: (-r.severity, -r.raised_at.timestamp(), -r.alarm_id))
        return rows

    def unacknowledged_count(self) -> int:
        """Alarms waiting for acknowledgement (shelved ones excluded)."""
        return sum(1 for r in self.active() if not r.acknowledged)

    def history(
        self,
        *,
        since: datetime | None = None,
        batch_id: str | None = None,
        limit: int = 500,
    ) -> list[AlarmRecord]:
        """Alarm occurrences, newest first (optionally since a time or for one batch)."""
        query = select(alarm).order_by(alarm.c.alarm_id.desc()).limit(limit)
        if since is not None:
            query = query.where(alarm.c.raised_at >= to_utc_text(since))
        if batch_id is not None:
            query = query.where(alarm.c.batch_id == batch_id)
        with read_only(self.engine) as conn:
            return [_record(r) for r in conn.execute(query).mappings()]

    def get(self, alarm_id: int) -> AlarmRecord:
        with read_only(self.engine) as conn:
            return _record(self._find(conn, alarm_id))

    def active_codes(self) -> set[str]:
        with read_only(self.engine) as conn:
            return {
                str(c)
                for c in conn.execute(
                    select(alarm.c.code).where(
                        alarm.c.active == 1, alarm.c.terminal_id == self.audit.terminal_id
                    )
                ).scalars()
            }

    def count(self) -> int:
        with read_only(self.engine) as conn:
            return int(conn.execute(select(func.count()).select_from(alarm)).scalar() or 0)

    # -- the feed -----------------------------------------------------------------------

    async def run(self, gateway: Any, *, shelve_check_s: float = 1.0) -> None:
        """Consume a PLC gateway's events until cancelled: record alarms, expire shelving.

        The first time the PLC's list of active alarm codes arrives, stored alarms are
        reconciled with it (alarms that changed while the HMI was not running).
        """
        stream = gateway.events()
        reconciled = False
        loop = asyncio.get_running_loop()
        next_check = loop.time() + shelve_check_s
        try:
            while True:
                try:
                    # asyncio.timeout, not wait_for: in Python 3.11 wait_for swallows a
                    # cancellation that arrives as the event does, and this loop never ends
                    async with asyncio.timeout(max(0.01, next_check - loop.time())):
                        event = await stream.get()
                except TimeoutError:
                    event = None
                except StopAsyncIteration:
                    return
                if isinstance(event, PlcAlarmEvent | ConnectionStateChanged):
                    self.handle(event)
                elif isinstance(event, TagValuesChanged) and not reconciled:
                    codes = event.updates.get("active_alarms")
                    if codes is not None and codes.good and isinstance(codes.value, tuple):
                        self.reconcile(codes.value)
                        reconciled = True
                if loop.time() >= next_check:
                    self.expire_shelving()
                    next_check = loop.time() + shelve_check_s
        finally:
            stream.close()

    # -- helpers ------------------------------------------------------------------------

    def _active_row(self, conn: Connection, code: str) -> Mapping[Any, Any] | None:
        return (
            conn.execute(
                select(alarm).where(
                    alarm.c.code == code,
                    alarm.c.active == 1,
                    alarm.c.terminal_id == self.audit.terminal_id,
                )
            )
            .mappings()
            .first()
        )

    @staticmethod
    def _row(conn: Connection, alarm_id: int) -> Mapping[Any, Any]:
        row = conn.execute(select(alarm).where(alarm.c.alarm_id == alarm_id)).mappings().first()
        assert row is not None
        return row

    @staticmethod
    def _find(conn: Connection, alarm_id: int) -> Mapping[Any, Any]:
        row = conn.execute(select(alarm).where(alarm.c.alarm_id == alarm_id)).mappings().first()
        if row is None:
            raise AlarmNotFound(f"there is no alarm number {alarm_id}")
        return row


def _state_text(row: Mapping[Any, Any]) -> str:
    first = "active" if row["active"] else "cleared"
    second = "acknowledged" if row["acknowledged_at"] is not None else "unacknowledged"
    return f"{first}, {second}"


def _source(value: str) -> str:
    return "hmi" if value == "hmi" else "plc"
