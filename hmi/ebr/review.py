"""Audit trail review as a documented, signed activity (EU GMP Annex 11 §9).

Two kinds: QA signs "audit trail reviewed" over a batch (the batch engine's review, which
release depends on), and QA or a supervisor signs over a time range of the audit trail (a
periodic or shift review). A range review covers, per terminal, the exact events in the range
by their first and last hashes; it is refused if the range does not verify or changed since it
was shown. :meth:`AuditReviews.unreviewed` lists the batches and ranges nobody signed yet.

Rules for a range, as QA expects them (:meth:`AuditReviews.prepare_range` says so before anyone
signs, :meth:`AuditReviews.sign_range_review` enforces them again and records every refusal):

- it includes its start and not its end, so consecutive ranges (shifts 06:00-14:00 and
  14:00-22:00) meet without covering an event twice or leaving one out;
- it starts before it ends, and ends no later than now: a review covers events that are
  already recorded, never a future stretch of the trail;
- it holds at least one audit event;
- it does not cover again events that a review of the same kind already covers (a second
  shift review of the same events is a duplicate record); a periodic QA review may cover
  events a supervisor's shift review covered, as the second line of review.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
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
from hmi.clock import Clock, from_utc_text, to_utc_text
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


class RangeInvalid(ReviewRefused):
    """The range itself is not acceptable: a time that is not a time, the end before the
    start, or an end in the future (the reviewer's input, not the trail, is wrong)."""


_OFFSET_AFTER_SPACE = re.compile(r"\s+([+-]\d{2}:?\d{2})$")


def parse_review_time(text: str, *, name: str, end: bool = False, tz: tzinfo | None = None) -> str:
    """A time a reviewer typed, as stored UTC text.

    Local time (``tz``, else the system's) unless it carries an offset (``+01:00``, ``Z``);
    the form the screens show (``2026-03-02 06:00:00 +01:00``) is accepted as it is. A date
    alone means the start of that day, or the start of the next day when it ends a range
    (whose end is not included, so the whole day is). Raises
    :class:`RangeInvalid` naming ``name`` (the field or the option) when it is not a time.
    """
    cleaned = _OFFSET_AFTER_SPACE.sub(r"\1", text.strip())
    cleaned = cleaned[:-1] + "+00:00" if cleaned.endswith(("Z", "z")) else cleaned
    try:
        moment = datetime.fromisoformat(cleaned)
    except ValueError:
        raise RangeInvalid(
            f"{name}: '{text.strip()}' is not a date or time; use e.g. 2026-03-02 06:00"
            " (local time) or 2026-03-02 06:00 +01:00"
        ) from None
    if end and len(cleaned) == 10:
        moment = moment + timedelta(days=1)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz) if tz is not None else moment.astimezone()
    return to_utc_text(moment)


def local_text(utc_text: str, tz: tzinfo | None = None) -> str:
    """A stored UTC time for people: local time (``tz``, else the system's) with its offset."""
    moment = from_utc_text(utc_text)
    local = moment.astimezone(tz) if tz is not None else moment.astimezone()
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M:%S} {offset[:3]}:{offset[3:]}"


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

    @property
    def events(self) -> int:
        return sum(c.events for c in self.chains)

    def describe(self, tz: tzinfo | None = None) -> str:
        """What the reviewer is about to sign, in words (local times with their offset)."""
        chains = ", ".join(
            f"{c.terminal_id} seq {c.from_seq}-{c.to_seq} ({c.events} events)" for c in self.chains
        )
        return (
            f"Audit trail from {local_text(self.ts_from, tz)} (included) to"
            f" {local_text(self.ts_to, tz)} (not included): {chains}"
        )

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
        tz: tzinfo | None = None,
    ) -> None:
        self.engine = engine
        self.audit = audit
        self.clock = clock
        self.sessions = sessions
        self.signatures = signatures
        self.batches = batches
        self.tz = tz

    # -- batches ----------------------------------------------------------------------------

    def review_batch(self, session: Any, batch_id: str, signature: Signature) -> BatchInfo:
        """QA's signed review of a batch's audit trail (the batch engine records it)."""
        if self.batches is None:
            raise EbrError("batch reviews need the batch engine")
        return self.batches.review_audit_trail(session, batch_id, signature)

    # -- time ranges ------------------------------------------------------------------------

    @classmethod
    def for_site(
        cls,
        site: Any,
        auth: Any,
        *,
        batches: BatchEngine | None = None,
        tz: tzinfo | None = None,
    ) -> AuditReviews:
        """The reviews of an opened site, signed through its authentication services."""
        return cls(
            engine=site.engine,
            audit=site.audit,
            clock=site.clock,
            sessions=auth.sessions,
            signatures=auth.signatures,
            batches=batches,
            tz=tz,
        )

    @staticmethod
    def kinds_for(role: Role | str) -> tuple[str, ...]:
        """The kinds of range review ``role`` may sign (periodic first: QA's usual one)."""
        return tuple(k for k in ("periodic", "shift") if Role(role) in KINDS[k][1])

    @staticmethod
    def kind_of(kind: str) -> tuple[Meaning, frozenset[Role]]:
        """The meaning a review kind is signed with and the roles that may sign it."""
        try:
            return KINDS[kind.strip().lower()]
        except KeyError:
            raise RangeInvalid(f"a review is 'shift' or 'periodic', not '{kind.strip()}'") from None

    def _local(self, utc_text: str) -> str:
        return local_text(utc_text, self.tz)

    def now_end(self) -> str:
        """Now, to the whole second: the end of a range that ends now (the next range can
        start at exactly this time as it is shown, and no event falls between the two)."""
        return to_utc_text(self.clock.now().replace(microsecond=0))

    def check_times(self, ts_from: str, ts_to: str) -> None:
        """The range starts before it ends, and ends no later than now."""
        now = to_utc_text(self.clock.now())
        if ts_from > now:
            raise RangeInvalid(
                f"the range starts in the future ({self._local(ts_from)}; it is now"
                f" {self._local(now)}): a review covers events already recorded"
            )
        self._ordered(ts_from, ts_to)
        if ts_to > now:
            raise RangeInvalid(
                f"the range ends in the future ({self._local(ts_to)}; it is now"
                f" {self._local(now)}): a review covers events already recorded, so end it now"
                " or earlier"
            )

    def authorize_reviewer(self, session: Any, kind: str, *, entity_id: str = "") -> Actor:
        """Check that the session may sign a ``kind`` review; record and raise a refusal.

        The role is checked first, so that an operator hears which roles sign which review
        rather than the name of a permission."""
        _meaning, roles = self.kind_of(kind)
        kind = kind.strip().lower()
        entity = (RANGE_RECORD, entity_id or kind)
        if session.role not in roles:
            self.audit.record_now(
                "audit.review.refused",
                session.actor,
                entity=entity,
                reason=f"role {session.role} may not sign a {kind} review",
            )
            raise PermissionDenied(
                f"sign a {kind} audit trail review",
                str(session.role),
                f"a {kind} review of the audit trail is signed by"
                f" {' or '.join(sorted(r.value for r in roles))}, not by the role"
                f" '{session.role}'",
            )
        actor: Actor = self.sessions.authorize(session, "audit.view", entity=entity)
        return actor

    def _ordered(self, ts_from: str, ts_to: str) -> None:
        if ts_from == ts_to:
            raise RangeInvalid(
                f"the range is empty: it starts and ends at {self._local(ts_from)} (its end is"
                " not included)"
            )
        if ts_from > ts_to:
            raise RangeInvalid(
                f"the range ends before it starts (from {self._local(ts_from)},"
                f" to {self._local(ts_to)})"
            )

    def scope(self, ts_from: str, ts_to: str, conn: Connection | None = None) -> RangeScope:
        """The events of every chain from ``ts_from`` (included) to ``ts_to`` (not included),
        UTC, as a review covers them."""
        self._ordered(ts_from, ts_to)
        t = audit_event.c
        query = (
            select(
                t.terminal_id,
                func.min(t.seq),
                func.max(t.seq),
                func.count(),
            )
            .where(t.ts >= ts_from, t.ts < ts_to)
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
            raise ReviewRefused(
                f"no audit events between {self._local(ts_from)} and {self._local(ts_to)};"
                " there is nothing to review"
            )
        return scope

    def _overlaps(self, conn: Connection, scope: RangeScope, kind: str) -> list[str]:
        """Events of ``scope`` that a signed review of the same kind already covers."""
        r = audit_review.c
        found: list[str] = []
        for chain in scope.chains:
            rows = conn.execute(
                select(r.from_seq, r.to_seq, r.ts_to, r.reviewed_by, r.reviewed_at)
                .where(
                    r.kind == kind,
                    r.terminal_id == chain.terminal_id,
                    r.from_seq <= chain.to_seq,
                    r.to_seq >= chain.from_seq,
                )
                .order_by(r.to_seq.desc())
            ).all()
            if rows:
                low, high, ts_to, by, at = rows[0]
                found.append(
                    f"{chain.terminal_id} seq {max(chain.from_seq, int(low))}-"
                    f"{min(chain.to_seq, int(high))} is already covered by the {kind} review"
                    f" signed by {by} at {self._local(str(at))} (seq {low}-{high}); start the"
                    f" range at {self._local(str(ts_to))} or later"
                )
        return found

    def prepare_range(self, ts_from: str, ts_to: str, *, kind: str = "periodic") -> RangeScope:
        """The range a reviewer is about to sign, refused before anyone signs when it breaks a
        rule (see the module's docstring): what :meth:`sign_range_review` will accept."""
        kind = kind.strip().lower()
        self.kind_of(kind)
        self.check_times(ts_from, ts_to)
        with read_only(self.engine) as conn:
            scope = self.scope(ts_from, ts_to, conn)
            overlaps = self._overlaps(conn, scope, kind)
        if overlaps:
            raise ReviewRefused("; ".join(overlaps))
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
        the range breaks a rule (ends in the future, covers events a review of the same kind
        covers), the signature is not the reviewer's valid signature over exactly this range,
        or the range's events changed or do not verify.
        """
        kind = kind.strip().lower()
        meaning, _roles = self.kind_of(kind)
        ref = scope.ref
        actor = self.authorize_reviewer(session, kind, entity_id=ref.id)
        try:
            self.check_times(scope.ts_from, scope.ts_to)
        except RangeInvalid as exc:
            self._refuse(actor, scope, str(exc))
            raise
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
        overlaps: list[str] = []
        with self.audit.transaction() as conn:
            # Checked again where the review is written, so two reviewers signing at the
            # same time cannot both cover the same events with the same kind of review.
            overlaps = self._overlaps(conn, scope, kind)
            if not overlaps:
                self._insert(conn, review_id, scope, kind, comment, actor, now, signature)
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
        if overlaps:
            why = "; ".join(overlaps)
            self._refuse(actor, scope, why)
            raise ReviewRefused(why)
        return review_id

    @staticmethod
    def _insert(
        conn: Connection,
        review_id: str,
        scope: RangeScope,
        kind: str,
        comment: str | None,
        actor: Actor,
        now: str,
        signature: Signature,
    ) -> None:
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
                    record_sha256=scope.ref.sha256,
                )
            )

    # -- what is not reviewed yet -----------------------------------------------------------

    def unreviewed(self, kind: str | None = None) -> UnreviewedReport:
        """Batches without a signed audit trail review, and stretches of every chain that no
        range review covers (the last review's end to the chain head, and any holes).

        With ``kind``, only reviews of that kind count as cover: where a supervisor's next
        shift review starts, whatever QA's periodic reviews cover (and the other way round).
        """
        if kind is not None:
            self.kind_of(kind)
            kind = kind.strip().lower()
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
                covering = select(
                    audit_review.c.terminal_id, audit_review.c.from_seq, audit_review.c.to_seq
                )
                if kind is not None:
                    covering = covering.where(audit_review.c.kind == kind)
                reviewed = conn.execute(covering).all()
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
