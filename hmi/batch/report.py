"""The batch record as text for people: terminal (``hmi batch show``) and printable copies.

Every signature is shown with its manifestation (printed name, user ID, meaning, local time with
UTC offset and UTC, 21 CFR 11.50); every value changed after its first entry is flagged with
the original value and who changed it, when and why (EU GMP Annex 11 §8).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import tzinfo

from hmi.auth.signatures import manifestation
from hmi.batch.model import BatchInfo, BatchRecord, DeviationInfo, RecordedValue
from hmi.batch.rows import shown_value, step_places
from hmi.clock import to_local_text


def _when(moment: object) -> str:
    from datetime import datetime

    return to_local_text(moment) if isinstance(moment, datetime) else "-"


def batch_line(info: BatchInfo) -> str:
    """One line of ``hmi batch list``."""
    return (
        f"{info.batch_id:<16} {info.recipe_id} v{info.recipe_version:<4} "
        f"{info.status.label:<16} step {min(info.current_step + 1, info.step_count)}"
        f"/{info.step_count}  started {_when(info.started_at)} by {info.started_by}"
    )


PRECISION_NOTE = (
    "readings are printed with the recipe's precision; typed values as typed; the electronic"
    " copy holds every value as recorded"
)


def _value_text(
    value: RecordedValue, by_id: dict[int, RecordedValue], places: dict[tuple[int, str | None], int]
) -> str:
    unit = f" {value.unit}" if value.unit else ""
    limits = f"  [{value.low}..{value.high}]" if value.low is not None else ""
    verdict = "" if value.in_limits is None else ("  ok" if value.in_limits else "  OUT OF LIMITS")
    shown = shown_value(
        value.value, value.source, value.low, value.high, places.get((value.step_index, value.unit))
    )
    text = (
        f"{value.name} = {shown}{unit}{limits}{verdict}  ({value.source},"
        f" {value.recorded_by}, {_when(value.recorded_at)})"
    )
    if value.replaces_id is not None:
        original = by_id.get(value.replaces_id)
        was = original.value if original is not None else "?"
        text += f"\n        CHANGED AFTER FIRST ENTRY: was {was}; reason: {value.reason}"
    return text


def _deviation_lines(item: DeviationInfo) -> Iterable[str]:
    yield (
        f"  {item.deviation_id}  {item.kind.label}  [{item.status.value.replace('_', ' ')}]"
        + ("  CRITICAL" if item.critical else "")
    )
    yield f"      step {item.step_id or '-'}: {item.description}"
    if item.expected is not None or item.actual is not None:
        unit = f" {item.unit}" if item.unit else ""
        yield f"      expected {item.expected}{unit}, actual {item.actual}{unit}"
    ended = f", ended {_when(item.ended_at)}" if item.ended_at else ""
    yield f"      opened {_when(item.opened_at)} by {item.opened_by}{ended}"
    if item.reason_text:
        yield (
            f"      reason {item.reason_code}: {item.reason_text} ({item.reason_by},"
            f" {_when(item.reason_at)})"
        )
    elif item.blocking:
        yield "      REASON MISSING"
    if item.requires_cosign:
        yield (
            f"      co-signed by {item.cosigned_by} {_when(item.cosigned_at)}"
            if item.cosigned_by
            else "      CO-SIGNATURE MISSING"
        )
    if item.disposition:
        yield (
            f"      QA disposition: {item.disposition} - {item.disposition_comment}"
            f" ({item.disposition_by}, {_when(item.disposition_at)})"
        )


def render_record(record: BatchRecord, *, tz: tzinfo | None = None) -> list[str]:
    """The electronic batch record as lines of text."""
    info = record.info
    lines = [
        f"Batch {info.batch_id} - {info.recipe_name} ({info.product})",
        f"Recipe {info.recipe_id} v{info.recipe_version}, sha256 {info.recipe_sha256}",
        f"Status: {info.status.label}; terminal {info.terminal_id}",
        f"Started {_when(info.started_at)} by {info.started_by}"
        + (f"; completed {_when(info.completed_at)}" if info.completed_at else "")
        + (f"; aborted {_when(info.aborted_at)} by {info.aborted_by}" if info.aborted_at else ""),
    ]
    if info.hold_reason:
        lines.append(f"ON HOLD: {info.hold_reason}")
    if info.reviewed_at:
        lines.append(f"Audit trail reviewed {_when(info.reviewed_at)} by {info.reviewed_by}")
    if info.decided_at:
        reason = f" ({info.decision_reason})" if info.decision_reason else ""
        lines.append(f"{info.status.label.capitalize()} {_when(info.decided_at)} by"
                     f" {info.decided_by}{reason}")  # fmt: skip
    by_id = {v.value_id: v for v in record.values}
    places = step_places(record.values)
    lines += ["", "Steps", f"  ({PRECISION_NOTE})"]
    for step in record.steps:
        who = f" by {step.performed_by} {_when(step.completed_at)}" if step.performed_by else ""
        flag = f" (deviation {step.deviation_id})" if step.deviation_id else ""
        lines.append(f"  {step.index + 1:>2}. {step.title} [{step.status.value}]{who}{flag}")
        for value in record.values:
            if value.step_index == step.index:
                lines.append("      " + _value_text(value, by_id, places))
    lines += ["", f"Deviations ({len(record.deviations)})"]
    for item in record.deviations:
        lines.extend(_deviation_lines(item))
    if not record.deviations:
        lines.append("  none")
    lines += ["", f"Electronic signatures ({len(record.signatures)})"]
    for signature in record.signatures:
        lines.append(f"  {signature.record.type} {signature.record.id}:")
        lines.append(f"      {manifestation(signature, tz=tz)}")
    lines += ["", f"PLC commands ({len(record.plc_commands)})"]
    for command in record.plc_commands:
        args = ", ".join(f"{k}={v}" for k, v in sorted(command.arguments.items()))
        lines.append(
            f"  {_when(command.intent_at)} {command.command}({args}) by {command.intent_by}:"
            f" {command.result or 'NO RESULT RECORDED'}"
            + (f" - {command.result_detail}" if command.result_detail else "")
        )
    return lines
