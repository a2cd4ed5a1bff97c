"""Audit trail review as a documented, signed activity (EU GMP Annex 11 §9).

Two kinds: QA signs "audit trail reviewed" over a batch (the batch engine's review, which
release depends on), and QA or a supervisor signs over a time range of the audit trail (a
periodic or shift review). A range review covers, per terminal, the exact events in the range
by their first and last hashes; it is refused if the range does not verify or changed since it
was shown. :meth:`AuditReviews.unreviewed` lists the batches and ranges nobody signed yet.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    Table,
    Text,
    func,
    insert,
    select,
)
from sqlalchemy.exc import OperationalError

from hmi.audit import canonical
from hmi.audit.chain import Actor, AuditLog
from hmi.audit.keys import PublicKey
from hmi.audit.tables import audit_event, audit_key
from hmi.audit.verify import ROW_FIELDS, verify_rows
from hmi.auth.errors import PermissionDenied
from hmi.auth.roles import Meaning, Role
from hmi.auth.signatures import RecordRef, Signature, SignatureService
from hmi.batch.engine import BatchEngine
from hmi.batch.model import BatchInfo, BatchStatus
from hmi.clock import Clock, to_utc_text
from hmi.db import DatabaseError, read_only
from hmi.ebr.assemble import EbrError

RANGE_RECORD = "audit_range"
KINDS: dict[str, tuple[Meaning, frozenset[Role]]] = {
    "shift": (Meaning.REVIEWED, frozenset({Role.SUPERVISOR, Role.QA})),
    "periodic": (Meaning.AUDIT_TRAIL_REVIEWED, frozenset({Role.QA})),
}

metadata = MetaData()
audit_review = Table(
    "audit_review",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("review_id", Text, nullable=False),
    Column("terminal_id", Text, nullable=False),
    Column("from_seq", Integer, nullable=False),
    Column("to_seq", Integer, nullable=False),
    Column("ts_from", Text, nullable=False),
    Column("ts_to", Text, nullable=False),
    Column("first_hash", Text, nullable=False),
    Column("last_hash", Text, nullable=False),
    Column("events", Integer, nullable=False),
    Column("kind", Text, nullable=False),
    Column("comment", Text),
    Column("reviewed_by", Text, nullable=False),
    Column("reviewed_role", Text, nullable=False),
    Column("reviewed_at", Text, nullable=False),
    Column("signature_id", Text, nullable=False),
    Column("record_sha256", Text, nullable=False),
)


class ReviewRefused(EbrError):
    """The review cannot be recorded (range changed or not intact, wrong signature...)."""


@dataclass(frozen=True)
class ChainRange:
    """The events of one terminal's chain inside a reviewed time range."""

    terminal_id: str
    from_seq: int
    to_seq: int
    first_hash: str
    last_hash: str
    events: int


@dataclass(frozen=True)
class RangeScope:
    """What a range review covers: the time range and the exact events in it, per chain."""

    ts_from: str
    ts_to: str
    chains: tuple[ChainRange, ...]

    def content(self) -> dict[str, Any]:
        return {
            "ts_from": self.ts_from,
            "ts_to": self.ts_to,
            "chains": [
                {
                    "terminal_id": c.terminal_id,
                    "from_seq": c.from_seq,
                    "to_seq": c.to_seq,
                    "first_hash": c.first_hash,
                    "last_hash": c.last_hash,
                    "events": c.events,
                }
                for c in self.chains
            ],
        }

    @property
    def ref(self) -> RecordRef:
        """What the reviewer signs."""
        digest = hashlib.sha256(canonical.canonical_bytes(self.content())).hexdigest()
        return RecordRef(RANGE_RECORD, f"{self.ts_from}/{self.ts_to}", digest)


@dataclass(frozen=True)
class UnreviewedBatch:
    batch_id: str
    status: str
    started_at: str
    completed_at: str | None
    reviewable: bool


@dataclass(frozen=True)
class UnreviewedRange:
    terminal_id: str
    from_seq: int
    to_seq: int
    ts_from: str
    ts_to: str

    @property
    def events(self) -> int:
        return self.to_seq - self.from_seq + 1


@dataclass(frozen=True)
class UnreviewedReport:
    batches: tuple[UnreviewedBatch, ...]
    ranges: tuple[UnreviewedRange, ...]

    @property
    def empty(self) -> bool:
        return not self.batches and not self.ranges


def _uncovered(head: int, covered: list[tuple[int, int]]) -> list[tuple[int, int]]:
    gaps: list[tuple[int, int]] = []
    position = 1
    for low, high in sorted(covered):
        if low > position:
            gaps.append((position, min(low - 1, head)))
        position = max(position, high + 1)
        if position > head:
            break
    if position <= head:
        gaps.append((position, head))
    return [g for g in gaps if g[0] <= g[1]]


class AuditReviews:
    """Record signed audit trail reviews and report what nobody reviewed yet."""

    def __init__(
        self,
        *,
        engine: Engine,
        audit: AuditLog,
        clock: Clock,
        sessions: Any,
        signatures: SignatureService,
        batches: BatchEngine | None = None,
    ) -> None:
        self.engine = engine
        self.audit = audit
        self.clock = clock
        self.sessions = sessions
        self.signatures = signatures
        self.batches = batches

    # -- batches ----------------------------------------------------------------------------

    def review_batch(self, session: Any, batch_id: str, signature: Signature) -> BatchInfo:
        """QA's signed review of a batch's audit trail (the batch engine records it)."""
        if self.batches is None:
            raise EbrError("batch reviews need the batch engine")
        return self.batches.review_audit_trail(session, batch_id, signature)

    # -- time ranges ------------------------------------------------------------------------

    def scope(self, ts_from: str, ts_to: str, conn: Connection | None = None) -> RangeScope:
        """The events of every chain between two UTC times (inclusive), as a review covers them."""
        if ts_from > ts_to:
            raise EbrError("the range ends before it starts")
        t = audit_event.c
        query = (
            select(
                t.terminal_id,
                func.min(t.seq),
                func.max(t.seq),
                func.count(),
            )
            .where(t.ts >= ts_from, t.ts <= ts_to)
            .group_by(t.terminal_id)
            .order_by(t.terminal_id)
        )

        def build(c: Connection) -> RangeScope:
            chains = []
            for terminal, low, high, count in c.execute(query):
                hashes = dict(
                    c.execute(
                        select(t.seq, t.row_hash).where(
                            t.terminal_id == terminal, t.seq.in_([int(low), int(high)])
                        )
                    ).all()
                )
                chains.append(
                    ChainRange(
                        str(terminal),
                        int(low),
                        int(high),
                        str(hashes[low]),
                        str(hashes[high]),
                        int(count),
                    )
                )
            return RangeScope(ts_from, ts_to, tuple(chains))

        if conn is not None:
            scope = build(conn)
        else:
            with read_only(self.engine) as reading:
                scope = build(reading)
        if not scope.chains:
            raise EbrError(f"no audit events between {ts_from} and {ts_to}")
        return scope

    def _refuse(self, actor: Actor, scope: RangeScope, why: str) -> None:
        self.audit.record_now(
            "audit.review.refused",
            actor,
            entity=(RANGE_RECORD, scope.ref.id),
            reason=why,
        )

    def _intact(self, conn: Connection, scope: RangeScope) -> list[str]:
        keys = {
            str(k): PublicKey.from_raw(bytes.fromhex(str(raw)))
            for k, raw in conn.execute(select(audit_key.c.key_id, audit_key.c.public_key))
        }
        columns = [audit_event.c[name] for name in ROW_FIELDS]
        rows = []
        for chain in scope.chains:
            rows += [
                tuple(r)
                for r in conn.execute(
                    select(*columns)
                    .where(
                        audit_event.c.terminal_id == chain.terminal_id,
                        audit_event.c.seq >= chain.from_seq,
                        audit_event.c.seq <= chain.to_seq,
                    )
                    .order_by(audit_event.c.seq)
                )
            ]
        report = verify_rows(rows, trusted=keys, partial=True, workers=1)
        return [f"{p.kind} {p.terminal}:{p.seq} {p.message}" for p in report.problems]

    def sign_range_review(
        self,
        session: Any,
        scope: RangeScope,
        signature: Signature,
        *,
        kind: str = "periodic",
        comment: str | None = None,
    ) -> str:
        """Record a signed review of ``scope``; return its review ID.

        ``kind`` "shift" (supervisor or QA, meaning "reviewed") or "periodic" (QA, meaning
        "audit trail reviewed"). Refused, and the refusal recorded, when the role may not,
        the signature is not the reviewer's valid signature over exactly this range, or the
        range's events changed or do not verify.
        """
        if kind not in KINDS:
            raise ValueError(f"review kind must be one of {sorted(KINDS)}")
        meaning, roles = KINDS[kind]
        ref = scope.ref
        actor = self.sessions.authorize(session, "audit.view", entity=(RANGE_RECORD, ref.id))
        if session.role not in roles:
            self._refuse(actor, scope, f"role {session.role} may not sign a {kind} review")
            raise PermissionDenied(
                f"sign a {kind} audit trail review",
                str(session.role),
                f"a {kind} review is signed by {' or '.join(sorted(r.value for r in roles))}",
            )
        problems: list[str] = []
        if signature.meaning is not meaning:
            problems.append(f"the signature's meaning must be '{meaning.value}'")
        if signature.signer_id != actor.user_id:
            problems.append("the review must be signed by the logged-in reviewer")
        check = self.signatures.check(signature, ref)
        problems += list(check.problems)
        with read_only(self.engine) as conn:
            now_scope = self.scope(scope.ts_from, scope.ts_to, conn)
            if now_scope != scope:
                problems.append("the range's events changed since it was shown; review again")
            else:
                problems += self._intact(conn, scope)
        if problems:
            why = "; ".join(problems)
            self._refuse(actor, scope, why)
            raise ReviewRefused(why)
        review_id = uuid.uuid4().hex
        now = to_utc_text(self.clock.now())
        with self.audit.transaction() as conn:
            for chain in scope.chains:
                conn.execute(
                    insert(audit_review).values(
                        review_id=review_id,
                        terminal_id=chain.terminal_id,
                        from_seq=chain.from_seq,
                        to_seq=chain.to_seq,
                        ts_from=scope.ts_from,
                        ts_to=scope.ts_to,
                        first_hash=chain.first_hash,
                        last_hash=chain.last_hash,
                        events=chain.events,
                        kind=kind,
                        comment=comment,
                        reviewed_by=actor.user_id,
                        reviewed_role=actor.role,
                        reviewed_at=now,
                        signature_id=signature.signature_id,
                        record_sha256=ref.sha256,
                    )
                )
            self.audit.record(
                conn,
                "audit.review.signed",
                actor,
                entity=(RANGE_RECORD, ref.id),
                meaning=meaning.value,
                new_value=ref.sha256,
                reason=comment,
                details={
                    "review_id": review_id,
                    "kind": kind,
                    **scope.content(),
                    "signature_id": signature.signature_id,
                },
            )
        return review_id

    # -- what is not reviewed yet -----------------------------------------------------------

    def unreviewed(self) -> UnreviewedReport:
        """Batches without a signed audit trail review, and stretches of every chain that no
        range review covers (the last review's end to the chain head, and any holes)."""
        from hmi.batch.tables import batch

        t = audit_event.c
        with read_only(self.engine) as conn:
            batches = [
                UnreviewedBatch(
                    str(r.batch_id),
                    str(r.status),
                    str(r.started_at),
                    r.completed_at,
                    r.status in (BatchStatus.AWAITING_REVIEW.value, BatchStatus.ABORTED.value),
                )
                for r in conn.execute(
                    select(
                        batch.c.batch_id, batch.c.status, batch.c.started_at, batch.c.completed_at
                    )
                    .where(batch.c.reviewed_at.is_(None))
                    .order_by(batch.c.started_at, batch.c.batch_id)
                )
            ]
            heads = dict(
                conn.execute(select(t.terminal_id, func.max(t.seq)).group_by(t.terminal_id)).all()
            )
            covered: dict[str, list[tuple[int, int]]] = {}
            try:
                reviewed = conn.execute(
                    select(
                        audit_review.c.terminal_id, audit_review.c.from_seq, audit_review.c.to_seq
                    )
                ).all()
            except OperationalError as exc:
                raise DatabaseError(
                    "this site database has no audit_review table yet (schema version 5):"
                    " start the HMI once, or open the site with upgrades, to apply it"
                ) from exc
            for terminal, low, high in reviewed:
                covered.setdefault(str(terminal), []).append((int(low), int(high)))
            ranges = []
            for terminal, head in sorted(heads.items()):
                for low, high in _uncovered(int(head), covered.get(str(terminal), [])):
                    times = dict(
                        conn.execute(
                            select(t.seq, t.ts).where(
                                t.terminal_id == terminal, t.seq.in_([low, high])
                            )
                        ).all()
                    )
                    ranges.append(
                        UnreviewedRange(
                            str(terminal),
                            low,
                            high,
                            str(times.get(low, "")),
                            str(times.get(high, "")),
                        )
                    )
        return UnreviewedReport(tuple(batches), tuple(ranges))
