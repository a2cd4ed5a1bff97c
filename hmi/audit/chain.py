"""Appending to the signed, hash-chained audit trail inside the caller's transaction.

A service that changes state opens ``with audit.transaction() as conn:``, writes its rows and
calls :meth:`AuditLog.record` on the same connection: the state change and its audit event
commit together or not at all. If the event cannot be written the caller gets an
:class:`AuditWriteError` and nothing is committed.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from hmi import __version__
from hmi.audit import binding, canonical
from hmi.audit.checkpoint import Checkpoint, WitnessError, WitnessFile, make_checkpoint
from hmi.audit.guards import install_guards
from hmi.audit.hashing import GENESIS_PREV_HASH, content_bytes, row_hash
from hmi.audit.keys import Signer
from hmi.audit.tables import CONTENT_COLUMNS, audit_event, audit_key, terminal
from hmi.clock import Clock, to_utc_text
from hmi.db import describe_db_error

log = logging.getLogger(__name__)

ACTION_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
CHAIN_STARTED = "audit.chain.started"


_INSERT_COLUMNS = tuple(c.name for c in audit_event.columns if c.name != "id")
_INSERT_SQL = (
    f"INSERT INTO audit_event ({', '.join(_INSERT_COLUMNS)})"
    f" VALUES ({', '.join('?' for _ in _INSERT_COLUMNS)})"
)
_TERMINAL_SQL = "SELECT key_id FROM terminal WHERE terminal_id = ?"
_HEAD_SQL = "SELECT seq, row_hash FROM audit_event WHERE terminal_id = ? ORDER BY seq DESC LIMIT 1"


class AuditWriteError(Exception):
    """The audit event could not be written, so the action it records did not happen."""


@dataclass(frozen=True)
class Actor:
    """Who did it: a user in a role and session, or the system itself."""

    user_id: str
    role: str
    session_id: str | None = None


SYSTEM = Actor("system", "system")


@dataclass(frozen=True)
class RecordedEvent:
    """What the caller gets back once an event is part of the (uncommitted) transaction."""

    terminal_id: str
    seq: int
    ts: str
    row_hash: str
    action: str


@dataclass(frozen=True)
class Entity:
    """The thing an event concerns (``batch``/``B-2026-001``, ``user``/``alice``...)."""

    type: str
    id: str


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return (
        canonical.dumps(value)
        if isinstance(value, dict | list)
        else str(canonical.normalise(value))
    )


def seal_event(
    signer: Signer, terminal_id: str, seq: int, prev_hash: str, fields: Mapping[str, Any]
) -> dict[str, Any]:
    """Complete an event row: hash its content into the chain and sign the hash.

    ``fields`` holds the content columns; missing optional ones are stored as null.
    """
    row: dict[str, Any] = {
        "entity_type": None,
        "entity_id": None,
        "field": None,
        "old_value": None,
        "new_value": None,
        "reason": None,
        "meaning": None,
        "session_id": None,
        "details": "{}",
        **fields,
    }
    details = row["details"]
    details_value = canonical.loads(details) if isinstance(details, str) else details
    row["details"] = canonical.encode_plain(canonical.normalise(details_value, "$.details")).decode(
        "utf-8"
    )
    for name in CONTENT_COLUMNS:
        value = row[name]
        if value is not None and type(value) is not str:
            raise canonical.CanonicalEncodingError(
                f"{name} must be text, got {type(value).__name__}"
            )
    content = content_bytes(row, row["details"])
    digest = row_hash(terminal_id, seq, prev_hash, content)
    row.update(
        terminal_id=terminal_id,
        seq=seq,
        prev_hash=prev_hash,
        row_hash=digest.hex(),
        key_id=signer.key_id,
        signature=signer.sign(digest).hex(),
    )
    return row


class AuditLog:
    """The terminal's chain: append, checkpoint, and the transaction boundary for services."""

    def __init__(
        self,
        engine: Engine,
        *,
        terminal_id: str,
        signer: Signer,
        clock: Clock,
        witness: WitnessFile | None,
        checkpoint_every_events: int = 1000,
        checkpoint_every: timedelta = timedelta(minutes=15),
        software_version: str = __version__,
    ) -> None:
        self.engine = engine
        self.terminal_id = terminal_id
        self.signer = signer
        self.clock = clock
        self.witness = witness
        self.checkpoint_every_events = checkpoint_every_events
        self.checkpoint_every = checkpoint_every
        self.software_version = software_version
        self.checkpoint_error: str | None = None
        self._registered = False
        self._since_checkpoint = 0
        self._last_checkpoint_at = clock.now()
        self._postgres = engine.dialect.name == "postgresql"
        self._sqlite = engine.dialect.name == "sqlite"
        self._local = threading.local()
        self._connections: list[Connection] = []
        install_guards(engine)
        binding.install_capture(engine)

    # -- transactions -------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One unit of work: state rows and audit events commit together, then checkpoint if due."""
        try:
            conn = self._connection()
            with conn.begin():
                binding.discard(conn)
                yield conn
                self._bind_remaining(conn)
                info = conn.info
                last: RecordedEvent | None = info.pop("hmi_audit_last", None)
                info.pop("hmi_audit_last_by", None)
                count: int = info.pop("hmi_audit_count", 0)
        except (DBAPIError, sqlite3.Error) as exc:
            self._drop_connection()
            raise AuditWriteError(
                f"the action was not recorded and did not happen: {describe_db_error(exc)}"
            ) from exc
        if count:
            self._since_checkpoint += count
            self._maybe_checkpoint(last)

    def _connection(self) -> Connection:
        """This thread's connection, kept open between transactions (no pool round trip)."""
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.invalidated:
            conn = self.engine.connect()
            self._local.conn = conn
            self._connections.append(conn)
        return conn

    def _drop_connection(self) -> None:
        """Give up this thread's connection after a failed unit of work (the next one opens
        a fresh connection), closing it so that repeated faults do not pile connections up."""
        conn: Connection | None = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with contextlib.suppress(DBAPIError, sqlite3.Error):
                conn.close()
            with contextlib.suppress(ValueError):
                self._connections.remove(conn)

    def close(self) -> None:
        """Release the connections this log holds (at shutdown)."""
        for conn in self._connections:
            conn.close()
        self._connections.clear()
        self._local = threading.local()

    def record_now(self, action: str, actor: Actor, **fields: Any) -> RecordedEvent:
        """Record a single event in its own transaction (for events with no state change).

        On SQLite the transaction is driven on the driver connection directly: with no state
        rows to write there is nothing for SQLAlchemy's unit of work to do, and these events
        (logins, navigation, PLC writes, alarms) are the most frequent."""
        conn = self._connection() if self._sqlite else None
        if conn is None or conn.in_transaction():
            with self.transaction() as unit:
                return self.record(unit, action, actor, **fields)
        raw = conn.connection.driver_connection
        try:
            raw.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
            try:
                event = self._record(None, raw, action, actor, **fields)
                raw.commit()  # type: ignore[union-attr]
            except BaseException:
                raw.rollback()  # type: ignore[union-attr]
                raise
        except sqlite3.Error as exc:
            self._drop_connection()
            raise AuditWriteError(
                f"the action was not recorded and did not happen: {describe_db_error(exc)}"
            ) from exc
        self._since_checkpoint += 1
        self._maybe_checkpoint(event)
        return event

    # -- appending ----------------------------------------------------------------------

    def record(
        self,
        conn: Connection,
        action: str,
        actor: Actor,
        *,
        entity: Entity | tuple[str, str] | None = None,
        field: str | None = None,
        old_value: Any = None,
        new_value: Any = None,
        reason: str | None = None,
        meaning: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> RecordedEvent:
        """Append one event to this terminal's chain inside the caller's transaction."""
        if not conn.in_transaction():
            raise AuditWriteError("audit events are only written inside a transaction")
        bound = binding.take_bindings(conn)
        if bound:
            details = {**(details or {}), binding.DETAILS_KEY: bound}
        raw = conn.connection.driver_connection if self._sqlite else None
        event = self._record(
            conn, raw, action, actor, entity=entity, field=field, old_value=old_value,
            new_value=new_value, reason=reason, meaning=meaning, details=details,
        )  # fmt: skip
        info = conn.info
        info["hmi_audit_last"] = event
        info["hmi_audit_last_by"] = (actor, entity)
        info["hmi_audit_count"] = info.get("hmi_audit_count", 0) + 1
        return event

    def next_position(self, conn: Connection) -> tuple[str, int]:
        """Where the next event recorded in this transaction will stand in the chain, for a
        row that names its own event (an e-signature): written before the event, the row is
        then bound by it. The head is locked, so the position cannot be taken meanwhile."""
        if not conn.in_transaction():
            raise AuditWriteError("audit events are only written inside a transaction")
        raw = conn.connection.driver_connection if self._sqlite else None
        try:
            self._check_terminal(conn, raw)
            head = self._lock_head(None if raw is not None else conn, raw)
        except (DBAPIError, sqlite3.Error) as exc:
            raise AuditWriteError(
                f"the action was not recorded and did not happen: {describe_db_error(exc)}"
            ) from exc
        return self.terminal_id, 2 if head is None else head[0] + 1

    def _bind_remaining(self, conn: Connection) -> None:
        """Rows written after the transaction's last event are bound by a closing event of the
        same actor about the same thing, so no business row commits without its binding."""
        if not binding.pending_of(conn).rows:
            return
        actor, entity = conn.info.get("hmi_audit_last_by", (SYSTEM, None))
        self.record(conn, binding.CLOSING_ACTION, actor, entity=entity)

    def _record(
        self,
        conn: Connection | None,
        raw: Any,
        action: str,
        actor: Actor,
        *,
        entity: Entity | tuple[str, str] | None = None,
        field: str | None = None,
        old_value: Any = None,
        new_value: Any = None,
        reason: str | None = None,
        meaning: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> RecordedEvent:
        """Append inside an open transaction: ``raw`` is the SQLite driver connection (the
        hot path talks to it directly), ``conn`` the SQLAlchemy one (None on the raw path)."""
        if not ACTION_PATTERN.match(action):
            raise ValueError(f"action names are dotted lowercase words, got {action!r}")
        if isinstance(entity, tuple):
            entity = Entity(*entity)
        try:
            details_map = dict(details or {})
            self._check_terminal(conn, raw)
            head = self._lock_head(conn, raw)
            if head is None:
                genesis = self._append(
                    conn,
                    raw,
                    None,
                    CHAIN_STARTED,
                    SYSTEM,
                    entity_type="terminal",
                    entity_id=self.terminal_id,
                    details=canonical.dumps(
                        {
                            "algorithm": "ed25519",
                            "key_id": self.signer.key_id,
                            "public_key": self.signer.public.raw.hex(),
                            "software_version": self.software_version,
                            "terminal_id": self.terminal_id,
                        }
                    ),
                )
                head = (genesis.seq, genesis.row_hash)
            return self._append(
                conn,
                raw,
                head,
                action,
                actor,
                entity_type=entity.type if entity else None,
                entity_id=entity.id if entity else None,
                field=field,
                old_value=_text(old_value),
                new_value=_text(new_value),
                reason=reason,
                meaning=meaning,
                details=details_map,
            )
        except (DBAPIError, sqlite3.Error) as exc:
            raise AuditWriteError(
                f"the action was not recorded and did not happen: {describe_db_error(exc)}"
            ) from exc

    def _check_terminal(self, conn: Connection | None, raw: Any) -> None:
        if self._registered:
            return
        if raw is not None:
            found = raw.execute(_TERMINAL_SQL, (self.terminal_id,)).fetchone()
            registered = None if found is None else found[0]
        else:
            assert conn is not None
            registered = conn.execute(
                select(terminal.c.key_id).where(terminal.c.terminal_id == self.terminal_id)
            ).scalar()
        if registered is None:
            raise AuditWriteError(
                f"terminal {self.terminal_id} is not registered in this site database"
            )
        if registered != self.signer.key_id:
            raise AuditWriteError(
                f"terminal {self.terminal_id} is registered with key {registered},"
                f" not this terminal's key {self.signer.key_id}"
            )
        self._registered = True

    def _lock_head(self, conn: Connection | None, raw: Any) -> tuple[int, str] | None:
        if raw is not None:
            # SQLite: BEGIN IMMEDIATE already holds the write lock; straight to the driver.
            found = raw.execute(_HEAD_SQL, (self.terminal_id,)).fetchone()
            return None if found is None else (int(found[0]), str(found[1]))
        assert conn is not None
        if self._postgres:
            conn.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:t))"), {"t": self.terminal_id}
            )
        row = conn.execute(
            select(audit_event.c.seq, audit_event.c.row_hash)
            .where(audit_event.c.terminal_id == self.terminal_id)
            .order_by(audit_event.c.seq.desc())
            .limit(1)
        ).first()
        return None if row is None else (int(row[0]), str(row[1]))

    def _append(
        self,
        conn: Connection | None,
        raw: Any,
        head: tuple[int, str] | None,
        action: str,
        actor: Actor,
        **fields: Any,
    ) -> RecordedEvent:
        seq = 1 if head is None else head[0] + 1
        prev = GENESIS_PREV_HASH if head is None else head[1]
        row: dict[str, Any] = {
            "ts": to_utc_text(self.clock.now()),
            "actor_id": actor.user_id,
            "actor_role": actor.role,
            "session_id": actor.session_id,
            "action": action,
            **fields,
        }
        row = seal_event(self.signer, self.terminal_id, seq, prev, row)
        if raw is not None:
            raw.execute(_INSERT_SQL, [row[name] for name in _INSERT_COLUMNS])
        else:
            assert conn is not None
            conn.execute(insert(audit_event), row)
        return RecordedEvent(self.terminal_id, seq, row["ts"], row["row_hash"], action)

    # -- checkpoints --------------------------------------------------------------------

    def _maybe_checkpoint(self, last: RecordedEvent | None) -> None:
        due_by_count = self._since_checkpoint >= self.checkpoint_every_events
        due_by_time = self.clock.now() - self._last_checkpoint_at >= self.checkpoint_every
        if last is not None and (due_by_count or due_by_time):
            self._write_checkpoint(last.seq, last.row_hash, "count" if due_by_count else "interval")

    def checkpoint(self, reason: str) -> Checkpoint | None:
        """Sign and witness the current chain head (start-up, shutdown, on demand)."""
        try:
            with self.engine.connect() as conn:
                head = conn.execute(
                    select(audit_event.c.seq, audit_event.c.row_hash)
                    .where(audit_event.c.terminal_id == self.terminal_id)
                    .order_by(audit_event.c.seq.desc())
                    .limit(1)
                ).first()
        except SQLAlchemyError as exc:
            self.checkpoint_error = describe_db_error(exc)
            return None
        if head is None:
            return None
        return self._write_checkpoint(int(head[0]), str(head[1]), reason)

    def _write_checkpoint(self, seq: int, digest: str, reason: str) -> Checkpoint | None:
        if self.witness is None:
            return None
        point = make_checkpoint(
            self.signer, self.terminal_id, seq, digest, to_utc_text(self.clock.now()), reason
        )
        try:
            self.witness.append(point)
        except WitnessError as exc:
            first_failure = self.checkpoint_error is None
            self.checkpoint_error = str(exc)
            log.error("checkpoint not witnessed: %s", exc)
            if first_failure:  # an incident (Annex 11 §13): recorded once per failure streak
                with contextlib.suppress(AuditWriteError):
                    self.record_now(
                        "audit.witness.failed", SYSTEM, entity=("terminal", self.terminal_id),
                        reason=str(exc), details={"seq": seq, "checkpoint_reason": reason},
                    )  # fmt: skip
            return None
        if self.checkpoint_error is not None:
            failed, self.checkpoint_error = self.checkpoint_error, None
            with contextlib.suppress(AuditWriteError):
                self.record_now(
                    "audit.witness.recovered", SYSTEM, entity=("terminal", self.terminal_id),
                    details={"seq": seq, "previous_error": failed},
                )  # fmt: skip
        self.checkpoint_error = None
        self._since_checkpoint = 0
        self._last_checkpoint_at = self.clock.now()
        return point

    # -- registration -------------------------------------------------------------------

    def register_terminal(self, conn: Connection) -> None:
        """Register this terminal and its public key in the site database (once, at set-up)."""
        now = to_utc_text(self.clock.now())
        known = conn.execute(
            select(audit_key.c.key_id).where(audit_key.c.key_id == self.signer.key_id)
        ).scalar()
        if known is None:
            conn.execute(
                insert(audit_key),
                {
                    "key_id": self.signer.key_id,
                    "terminal_id": self.terminal_id,
                    "algorithm": "ed25519",
                    "public_key": self.signer.public.raw.hex(),
                    "created_at": now,
                },
            )
        conn.execute(
            insert(terminal),
            {"terminal_id": self.terminal_id, "key_id": self.signer.key_id, "registered_at": now},
        )
