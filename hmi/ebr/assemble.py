"""Assemble a batch's electronic record from the database: the batch engine's record, the
alarms raised during the batch, the signatures with their manifestation and verdict, and the
audit events that concern the batch together with the chain segment that proves them.

The chain context (:class:`ChainContext`) is, for every terminal that wrote an event about the
batch, the complete contiguous segment of its chain from the first such event to the last one,
extended to the first witnessed checkpoint at or after it when there is one (so the segment's
end is itself witnessed). Every event inside the segment is included, related or not: a
verifier can then prove that no event about the batch was left out of the copy.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from hmi.audit import canonical
from hmi.audit.binding import DETAILS_KEY
from hmi.audit.checkpoint import Checkpoint, WitnessFile
from hmi.audit.keys import PublicKey
from hmi.audit.store import registered_keys
from hmi.audit.tables import audit_event
from hmi.audit.verify import ROW_FIELDS, Row, VerifyReport, verify_rows
from hmi.auth.signatures import Signature, manifestation
from hmi.batch.engine import BatchEngine
from hmi.batch.integrity import BATCH, STEP, RecordScope, record_rows, scope_of
from hmi.batch.model import BatchRecord, DeviationInfo, DeviationKind, RecordedValue
from hmi.clock import from_utc_text, to_utc_text
from hmi.db import read_only
from hmi.ebr.model import (
    Alarm,
    AuditEvent,
    Change,
    Deviation,
    EbrRecord,
    EventRef,
    Header,
    PlcCommand,
    RecipeContent,
    SignatureEntry,
    Step,
    Summary,
    Value,
    Verification,
)

_I = {name: index for index, name in enumerate(ROW_FIELDS)}

#: An entry made this long after the end of the step (or deviation) it belongs to is "late".
LATE_AFTER = timedelta(minutes=30)
#: The segment is extended to the next witnessed checkpoint only if it is this close.
CHECKPOINT_REACH = 5000


class EbrError(Exception):
    """The batch record cannot be assembled or copied (unknown batch, no events...)."""


@dataclass(frozen=True)
class ChainContext:
    """The chain segments, witnessed checkpoints and public keys that prove the record."""

    rows: tuple[Row, ...]
    checkpoints: tuple[Checkpoint, ...]
    keys: dict[str, PublicKey]
    related: frozenset[tuple[str, int]]

    @property
    def spans(self) -> dict[str, tuple[int, int]]:
        spans: dict[str, tuple[int, int]] = {}
        for row in self.rows:
            terminal, seq = str(row[0]), int(row[1])
            low, high = spans.get(terminal, (seq, seq))
            spans[terminal] = (min(low, seq), max(high, seq))
        return spans


@dataclass(frozen=True)
class Assembled:
    record: EbrRecord
    context: ChainContext
    #: the stored rows the record is built from, by table (checked against their events)
    rows: dict[str, list[dict[str, Any]]]


def _t(moment: datetime | None) -> str | None:
    return None if moment is None else to_utc_text(moment)


def _ref(event: tuple[str, int] | None) -> EventRef | None:
    return None if event is None else EventRef(terminal_id=event[0], seq=event[1])


# -- which events concern the batch ----------------------------------------------------


def _segment_rows(conn: Connection, terminal: str, low: int, high: int) -> list[Row]:
    columns = [audit_event.c[name] for name in ROW_FIELDS]
    query = (
        select(*columns)
        .where(
            audit_event.c.terminal_id == terminal,
            audit_event.c.seq >= low,
            audit_event.c.seq <= high,
        )
        .order_by(audit_event.c.seq, audit_event.c.id)
    )
    return [tuple(r) for r in conn.execute(query)]


def chain_context(
    conn: Connection,
    scope: RecordScope,
    witness: WitnessFile | None,
    extra_keys: Iterable[PublicKey] = (),
) -> ChainContext:
    """The segments of every chain holding events about the batch (see the module doc)."""
    t = audit_event.c
    related = [
        (str(a), int(b))
        for a, b in conn.execute(select(t.terminal_id, t.seq).where(scope.clause()))
    ]
    if not related:
        raise EbrError(f"the audit trail holds no event about batch {scope.batch_id}")
    spans: dict[str, tuple[int, int]] = {}
    for terminal, seq in related:
        low, high = spans.get(terminal, (seq, seq))
        spans[terminal] = (min(low, seq), max(high, seq))
    points: list[Checkpoint] = []
    if witness is not None:
        points, _unreadable = witness.read()
    for terminal, (low, high) in list(spans.items()):
        later = [p.seq for p in points if p.terminal == terminal and high <= p.seq]
        if later and min(later) - high <= CHECKPOINT_REACH:
            head = conn.execute(
                select(t.seq).where(t.terminal_id == terminal).order_by(t.seq.desc()).limit(1)
            ).scalar()
            if head is not None and int(head) >= min(later):
                spans[terminal] = (low, min(later))
    rows: list[Row] = []
    for terminal in sorted(spans):
        low, high = spans[terminal]
        rows.extend(_segment_rows(conn, terminal, low, high))
    checkpoints = tuple(
        p
        for p in points
        if p.terminal in spans and spans[p.terminal][0] <= p.seq <= spans[p.terminal][1]
    )
    key_ids = {str(r[_I["key_id"]]) for r in rows}
    keys = registered_keys(conn, key_ids)
    for key in extra_keys:
        keys[key.key_id] = key
    return ChainContext(tuple(rows), checkpoints, keys, frozenset(related))


# -- assembly ---------------------------------------------------------------------------


def _event(row: Row) -> AuditEvent:
    return AuditEvent(**{name: row[_I[name]] for name in AuditEvent.model_fields})


def _details(row: Row) -> dict[str, Any]:
    try:
        value = canonical.loads(str(row[_I["details"]]))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _value_events(
    rows: Sequence[Row], batch_id: str
) -> tuple[dict[int, tuple[str, int]], dict[tuple[str, str, str], tuple[str, int]]]:
    """Where each value was recorded in the audit trail.

    The event that wrote a value's row is the one whose row bindings (docs/audit-format.md)
    name that row as created: that is the answer for every value entered, written or
    corrected through the product. Rows older than the bindings are found by their content
    (step, name, value) in a step event's ``values`` instead."""
    created: dict[int, tuple[str, int]] = {}
    by_content: dict[tuple[str, str, str], tuple[str, int]] = {}
    for row in rows:
        if row[_I["entity_type"]] != BATCH or row[_I["entity_id"]] != batch_id:
            continue
        where = (str(row[0]), int(row[1]))
        details = _details(row)
        for item in details.get(DETAILS_KEY) or []:
            if (
                isinstance(item, list)
                and len(item) == 4
                and item[:1] == ["batch_value"]
                and item[2] is None
                and isinstance(item[1], str)
                and item[1].isdigit()
            ):
                created.setdefault(int(item[1]), where)
        if str(row[_I["action"]]).startswith("batch.step."):
            step_id = str(details.get("step_id"))
            for item in details.get("values") or []:
                if isinstance(item, dict):
                    key = (step_id, str(item.get("name")), str(item.get("value")))
                    by_content.setdefault(key, where)
            if "tare" in details:
                by_content.setdefault((step_id, "tare", str(details["tare"])), where)
    return created, by_content


def _is_late(at: str, ended: str | None) -> bool:
    if ended is None:
        return False
    return from_utc_text(at) - from_utc_text(ended) > LATE_AFTER


def _signature_entry(signature: Signature, problems: tuple[str, ...], tz: Any) -> SignatureEntry:
    return SignatureEntry(
        signature_id=signature.signature_id,
        record_type=signature.record.type,
        record_id=signature.record.id,
        record_sha256=signature.record.sha256,
        meaning=signature.meaning.value,
        meaning_label=signature.meaning.label,
        signer_id=signature.signer_id,
        signer_name=signature.signer_name,
        signer_role=signature.signer_role.value,
        signed_at=to_utc_text(signature.signed_at),
        session_id=signature.session_id,
        terminal_id=signature.terminal_id,
        components=tuple(signature.components),
        cosign_of=signature.cosign_of,
        binding_sha256=signature.binding_sha256,
        manifestation=manifestation(signature, tz=tz),
        valid=not problems,
        problems=problems,
        event=EventRef(terminal_id=signature.audit_terminal_id, seq=signature.audit_seq),
    )


def _deviation(item: DeviationInfo, event: tuple[str, int] | None) -> Deviation:
    return Deviation(
        deviation_id=item.deviation_id,
        seq=item.seq,
        step_index=item.step_index,
        step_id=item.step_id,
        kind=item.kind.value,
        kind_label=item.kind.label,
        parameter=item.parameter,
        expected=item.expected,
        actual=item.actual,
        unit=item.unit,
        critical=item.critical,
        description=item.description,
        opened_at=to_utc_text(item.opened_at),
        opened_by=item.opened_by,
        ended_at=_t(item.ended_at),
        requires_cosign=item.requires_cosign,
        status=item.status.value,
        reason_code=item.reason_code,
        reason_text=item.reason_text,
        reason_by=item.reason_by,
        reason_at=_t(item.reason_at),
        request_signature_id=item.request_signature_id,
        cosign_signature_id=item.cosign_signature_id,
        cosigned_by=item.cosigned_by,
        cosigned_at=_t(item.cosigned_at),
        disposition=item.disposition,
        disposition_comment=item.disposition_comment,
        disposition_by=item.disposition_by,
        disposition_at=_t(item.disposition_at),
        alarm_id=item.alarm_id,
        event=_ref(event),
    )


def _values(
    record: BatchRecord,
    rows: Sequence[Row],
    step_end: dict[int, str | None],
) -> tuple[list[Value], list[Change]]:
    created, by_content = _value_events(rows, record.info.batch_id)
    by_id: dict[int, RecordedValue] = {v.value_id: v for v in record.values}
    values: list[Value] = []
    changes: list[Change] = []
    for item in record.values:
        at = to_utc_text(item.recorded_at)
        event = created.get(item.value_id)
        if event is None and item.replaces_id is None:
            event = by_content.get((item.step_id, item.name, item.value))
        values.append(
            Value(
                value_id=item.value_id,
                step_index=item.step_index,
                step_id=item.step_id,
                name=item.name,
                value=item.value,
                unit=item.unit,
                source=item.source,
                low=item.low,
                high=item.high,
                in_limits=item.in_limits,
                recorded_by=item.recorded_by,
                recorded_at=at,
                replaces_id=item.replaces_id,
                reason=item.reason,
                replaced_by=item.replaced_by,
                late=_is_late(at, step_end.get(item.step_index)),
                event=_ref(event),
            )
        )
        if item.replaces_id is not None:
            old = by_id.get(item.replaces_id)
            changes.append(
                Change(
                    value_id=item.value_id,
                    replaces_id=item.replaces_id,
                    step_id=item.step_id,
                    name=item.name,
                    old="?" if old is None else old.value,
                    new=item.value,
                    unit=item.unit,
                    changed_by=item.recorded_by,
                    changed_at=at,
                    reason=item.reason or "",
                )
            )
    return values, changes


def _alarms(rows: Sequence[dict[str, Any]]) -> list[Alarm]:
    return [
        Alarm(
            **{
                name: row[name]
                for name in Alarm.model_fields
                if name not in {"severity", "alarm_id"}
            },
            alarm_id=int(row["alarm_id"]),
            severity=int(row["severity"]),
        )
        for row in rows
    ]


def verify_context(context: ChainContext) -> VerifyReport:
    """Verify the chain segments as the bundle's reader will (partial chains, checkpoints)."""
    return verify_rows(
        context.rows,
        trusted=context.keys,
        checkpoints=context.checkpoints,
        partial=True,
        workers=1,
    )


def summarise(
    *,
    values: Sequence[Value],
    changes: Sequence[Change],
    deviations: Sequence[Deviation],
    signatures: Sequence[SignatureEntry],
    alarms: Sequence[Alarm],
    plc_commands: Sequence[PlcCommand],
    verification: Verification,
) -> Summary:
    """The review-by-exception counts of a record."""
    late = sum(1 for v in values if v.late)
    late += sum(1 for d in deviations if d.reason_at and _is_late(d.reason_at, d.ended_at))
    overrides = {DeviationKind.OVERRIDE.value, DeviationKind.SKIP.value}
    return Summary(
        deviations=len(deviations),
        critical_deviations=sum(1 for d in deviations if d.critical),
        open_deviations=sum(1 for d in deviations if d.status != "closed"),
        undispositioned_deviations=sum(1 for d in deviations if d.disposition is None),
        overrides=sum(1 for d in deviations if d.kind in overrides),
        alarms=len(alarms),
        late_entries=late,
        changed_values=len(changes),
        signatures=len(signatures),
        signatures_by_meaning=dict(sorted(Counter(s.meaning for s in signatures).items())),
        plc_commands_without_result=sum(1 for c in plc_commands if c.result is None),
        verification=verification,
    )


def assemble(
    batches: BatchEngine,
    batch_id: str,
    *,
    site: str,
    line: str,
    generated_by: str,
    witness: WitnessFile | None,
    extra_keys: Iterable[PublicKey] = (),
    tz: Any = None,
) -> Assembled:
    """The record of ``batch_id`` with its chain context, checked as it is assembled."""
    record = batches.record(batch_id)
    info = record.info
    stored = batches.recipes.get(info.recipe_id, info.recipe_version)
    recipe = stored.recipe
    with read_only(batches.engine) as conn:
        stored_rows = record_rows(conn, batch_id)
        alarms = _alarms(stored_rows.get("alarm", []))
        context = chain_context(
            conn,
            scope_of(conn, stored_rows),
            witness,
            extra_keys,
        )
    rows = context.rows
    events = [_event(r) for r in rows if (str(r[0]), int(r[1])) in context.related]
    started = next(
        (
            (str(r[0]), int(r[1]))
            for r in rows
            if r[_I["action"]] == "batch.started" and r[_I["entity_id"]] == info.batch_id
        ),
        None,
    )
    opened = {
        str(r[_I["entity_id"]]): (str(r[0]), int(r[1]))
        for r in rows
        if r[_I["action"]] == "deviation.opened"
    }
    step_end = {s.index: _t(s.completed_at) for s in record.steps}
    values, changes = _values(record, rows, step_end)
    linked: dict[int, list[str]] = {}
    for signature in record.signatures:
        if signature.record.type == STEP:
            step_id = signature.record.id.split("/", 1)[-1]
            index = next((s.index for s in record.steps if s.step_id == step_id), None)
            if index is not None:
                linked.setdefault(index, []).append(signature.signature_id)
    steps = [
        Step(
            index=s.index,
            step_id=s.step_id,
            title=s.title,
            kind=s.kind,
            status=s.status.value,
            instruction=(recipe.steps[s.index].instructions or None)
            if s.index < len(recipe.steps)
            else None,
            started_at=_t(s.started_at),
            started_by=s.started_by,
            completed_at=_t(s.completed_at),
            performed_by=s.performed_by,
            deviation_id=s.deviation_id,
            signature_ids=tuple(linked.get(s.index, [])),
        )
        for s in record.steps
    ]
    deviations = [_deviation(d, opened.get(d.deviation_id)) for d in record.deviations]
    signatures = []
    for signature in record.signatures:
        check = batches.signatures.check(signature, signature.record, trusted=context.keys)
        signatures.append(_signature_entry(signature, check.problems, tz))
    commands = [
        PlcCommand(
            command_id=c.command_id,
            step_index=c.step_index,
            command=c.command,
            arguments=canonical.dumps(dict(c.arguments)),
            intent_at=to_utc_text(c.intent_at),
            intent_by=c.intent_by,
            result=c.result,
            result_detail=c.result_detail,
            result_at=_t(c.result_at),
        )
        for c in record.plc_commands
    ]
    report = verify_context(context)
    verification = Verification(
        chain_ok=report.ok,
        chain_problems=tuple(f"{p.kind} {p.terminal}:{p.seq} {p.message}" for p in report.problems),
        events_checked=report.rows_checked,
        signatures_valid=sum(1 for s in signatures if s.valid),
        signatures_invalid=sum(1 for s in signatures if not s.valid),
    )
    header = Header(
        site=site,
        line=line,
        terminal_id=info.terminal_id,
        batch_id=info.batch_id,
        product=info.product,
        recipe_id=info.recipe_id,
        recipe_name=info.recipe_name,
        recipe_version=info.recipe_version,
        recipe_sha256=info.recipe_sha256,
        status=info.status.value,
        step_count=info.step_count,
        current_step=info.current_step,
        started_by=info.started_by,
        started_at=to_utc_text(info.started_at),
        completed_at=_t(info.completed_at),
        aborted_by=info.aborted_by,
        aborted_at=_t(info.aborted_at),
        hold_reason=info.hold_reason,
        reviewed_by=info.reviewed_by,
        reviewed_at=_t(info.reviewed_at),
        reviewed_sha256=info.reviewed_sha256,
        decided_by=info.decided_by,
        decided_at=_t(info.decided_at),
        decision_reason=info.decision_reason,
        started_event=_ref(started),
    )
    summary = summarise(
        values=values,
        changes=changes,
        deviations=deviations,
        signatures=signatures,
        alarms=alarms,
        plc_commands=commands,
        verification=verification,
    )
    ebr = EbrRecord(
        header=header,
        recipe=RecipeContent(
            recipe_id=info.recipe_id,
            version=info.recipe_version,
            sha256=stored.info.sha256,
            text=stored.content,
            canonical_json=stored.canonical_json,
        ),
        steps=tuple(steps),
        values=tuple(values),
        changes=tuple(changes),
        deviations=tuple(deviations),
        signatures=tuple(signatures),
        alarms=tuple(alarms),
        plc_commands=tuple(commands),
        events=tuple(events),
        summary=summary,
        assembled_at=to_utc_text(batches.clock.now()),
        assembled_by=generated_by,
    )
    return Assembled(ebr, context, stored_rows)
