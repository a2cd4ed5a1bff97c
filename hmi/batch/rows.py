"""Row mapping and value helpers of the batch engine: database rows to frozen facts, values
to canonical text, and what signatures over batch records cover."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from hmi.audit import canonical
from hmi.auth.signatures import RecordRef
from hmi.batch.errors import StepDataInvalid, StepOutOfOrder
from hmi.batch.model import (
    BatchInfo,
    BatchStatus,
    DeviationInfo,
    DeviationKind,
    DeviationStatus,
    PlcCommandRecord,
)
from hmi.clock import from_utc_text
from hmi.plc.types import TagValue
from hmi.recipe.model import Parameter, Recipe
from hmi.recipe.tags import PLC_TAGS
from hmi.recipe.units import convert

DEVIATION_RECORD = "batch_deviation"


def utc_or_none(value: object) -> datetime | None:
    return None if value is None else from_utc_text(str(value))


def plain(value: Any) -> Any:
    """Data as canonical JSON accepts it: floats become decimal text."""
    if isinstance(value, float):
        return str(Decimal(repr(value)))
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    return value


def decimal_of(value: TagValue | Decimal | str | None, what: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise StepDataInvalid(f"{what}: expected a number, got {value!r}")
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())
    except InvalidOperation:
        raise StepDataInvalid(f"{what}: expected a number, got {value!r}") from None
    if not number.is_finite():
        raise StepDataInvalid(f"{what}: expected a finite number, got {value!r}")
    return number


#: What a person may type for a number: digits with at most one decimal point or comma.
_ENTERED = re.compile(r"-?(?:[0-9]+(?:[.,][0-9]*)?|[.,][0-9]+)")
#: More significant digits than any scale or assay gives: a paste or a scanner error.
MAX_ENTERED_DIGITS = 15


def entered_number(value: object, what: str, *, negative: bool = False) -> Decimal:
    """A number a person entered: the one rule the batch screen checks as it is typed and the
    engine accepts. Digits with at most one decimal point or comma (``99.8`` or ``99,8``); no
    exponent (``1e2``), no thousands separator, no ``+``, no sign at all unless ``negative``
    (a setpoint may be below zero; a weight, a quantity or a result never)."""
    if isinstance(value, Decimal):
        value = format(value, "f") if value.is_finite() else str(value)
    if not isinstance(value, str) or not value.strip():
        raise StepDataInvalid(f"{what}: enter a number")
    text = value.strip()
    if _ENTERED.fullmatch(text) is None:
        raise StepDataInvalid(
            f"{what}: {text!r} is not a number as entered here: write digits with one decimal"
            " point or comma (180.5 or 180,5)"
        )
    if text.startswith("-") and not negative:
        raise StepDataInvalid(f"{what}: {text!r} is below zero, which a {what} cannot be")
    number = Decimal(text.replace(",", "."))
    if len(number.as_tuple().digits) > MAX_ENTERED_DIGITS:
        raise StepDataInvalid(
            f"{what}: {text!r} has more than {MAX_ENTERED_DIGITS} digits (pasted or scanned by"
            " mistake?)"
        )
    return number


def places_of(*bounds: str | None) -> int | None:
    """The decimals a recipe states a value with: the most any of its limits has (``178.2``
    -> 1, ``840`` -> 0); None without limits."""
    found: list[int] = []
    for bound in bounds:
        if bound is None:
            continue
        try:
            exponent = Decimal(bound).as_tuple().exponent
        except InvalidOperation:
            continue
        if isinstance(exponent, int):
            found.append(max(0, -exponent))
    return max(found) if found else None


def shown_value(
    value: str, source: str, low: str | None, high: str | None, places: int | None = None
) -> str:
    """A recorded value as a record prints it: a reading or a computed value with the
    recipe's precision (its limits' decimals, or ``places`` for a reading of the same
    quantity without limits, a tare or a gross weight), never so that it reads differently
    against its limits than it is (181.84 against 178.2..181.8 prints 181.84, not 181.8).
    What a person typed is printed as typed, and the electronic copy keeps every value
    exactly as recorded."""
    wanted = places_of(low, high) if (low is not None or high is not None) else places
    if source == "entered" or wanted is None:
        return value
    try:
        exact = Decimal(value)
    except InvalidOperation:
        return value
    exponent = exact.as_tuple().exponent
    if not isinstance(exponent, int) or -exponent <= wanted:
        return value  # not finite, or no more decimals than the recipe states

    def side(number: Decimal) -> int:
        if low is not None and number < Decimal(low):
            return -1
        if high is not None and number > Decimal(high):
            return 1
        return 0

    for more in range(wanted, wanted + 12):
        rounded = exact.quantize(Decimal(1).scaleb(-more))
        if side(rounded) == side(exact):
            return format(rounded, "f")
    return value


def step_places(values: Iterable[Any]) -> dict[tuple[int, str | None], int]:
    """The precision of each step's quantities by unit, from its values that have limits (a
    charge's quantity gives its tare and gross weight theirs)."""
    found: dict[tuple[int, str | None], int] = {}
    for value in values:
        places = places_of(value.low, value.high)
        if places is not None:
            key = (value.step_index, value.unit)
            found[key] = max(places, found.get(key, 0))
    return found


def text_of(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(Decimal(repr(value)))
    return str(value)


def digest(content: Any) -> str:
    return hashlib.sha256(canonical.canonical_bytes(plain(content))).hexdigest()


def batch_info(row: Mapping[Any, Any]) -> BatchInfo:
    started = utc_or_none(row["started_at"])
    assert started is not None
    return BatchInfo(
        batch_id=str(row["batch_id"]),
        recipe_id=str(row["recipe_id"]),
        recipe_version=int(row["recipe_version"]),
        recipe_sha256=str(row["recipe_sha256"]),
        recipe_name=str(row["recipe_name"]),
        product=str(row["product"]),
        status=BatchStatus(row["status"]),
        current_step=int(row["current_step"]),
        step_count=int(row["step_count"]),
        terminal_id=str(row["terminal_id"]),
        started_by=str(row["started_by"]),
        started_at=started,
        hold_reason=row["hold_reason"],
        completed_at=utc_or_none(row["completed_at"]),
        aborted_by=row["aborted_by"],
        aborted_at=utc_or_none(row["aborted_at"]),
        reviewed_by=row["reviewed_by"],
        reviewed_at=utc_or_none(row["reviewed_at"]),
        reviewed_sha256=row["reviewed_sha256"],
        decided_by=row["decided_by"],
        decided_at=utc_or_none(row["decided_at"]),
        decision_reason=row["decision_reason"],
    )


def deviation_info(row: Mapping[Any, Any]) -> DeviationInfo:
    opened = utc_or_none(row["opened_at"])
    assert opened is not None
    return DeviationInfo(
        deviation_id=str(row["deviation_id"]),
        batch_id=str(row["batch_id"]),
        seq=int(row["seq"]),
        step_index=None if row["step_index"] is None else int(row["step_index"]),
        step_id=row["step_id"],
        kind=DeviationKind(row["kind"]),
        parameter=row["parameter"],
        expected=row["expected"],
        actual=row["actual"],
        unit=row["unit"],
        critical=bool(row["critical"]),
        description=str(row["description"]),
        opened_at=opened,
        opened_by=str(row["opened_by"]),
        ended_at=utc_or_none(row["ended_at"]),
        requires_cosign=bool(row["requires_cosign"]),
        status=DeviationStatus(row["status"]),
        reason_code=row["reason_code"],
        reason_text=row["reason_text"],
        reason_by=row["reason_by"],
        reason_at=utc_or_none(row["reason_at"]),
        request_signature_id=row["request_signature_id"],
        cosign_signature_id=row["cosign_signature_id"],
        cosigned_by=row["cosigned_by"],
        cosigned_at=utc_or_none(row["cosigned_at"]),
        action=None if row["action"] is None else canonical.loads(str(row["action"])),
        action_done=bool(row["action_done"]),
        alarm_id=None if row["alarm_id"] is None else int(row["alarm_id"]),
        disposition=row["disposition"],
        disposition_comment=row["disposition_comment"],
        disposition_by=row["disposition_by"],
        disposition_at=utc_or_none(row["disposition_at"]),
    )


def command_record(row: Mapping[Any, Any]) -> PlcCommandRecord:
    intent = utc_or_none(row["intent_at"])
    assert intent is not None
    return PlcCommandRecord(
        command_id=int(row["id"]),
        step_index=None if row["step_index"] is None else int(row["step_index"]),
        command=str(row["command"]),
        arguments=canonical.loads(str(row["arguments"])),
        intent_at=intent,
        intent_by=str(row["intent_by"]),
        result=row["result"],
        result_detail=row["result_detail"],
        result_at=utc_or_none(row["result_at"]),
    )


def deviation_ref(info: DeviationInfo) -> RecordRef:
    """What a deviation's request and co-signature cover (its facts and its reason)."""
    return RecordRef(DEVIATION_RECORD, info.deviation_id, digest(_deviation_content(info)))


def disposition_ref(info: DeviationInfo, disposition: str, comment: str) -> RecordRef:
    """What QA's disposition signature covers: the deviation's facts and reason, the decision
    and QA's comment (so the signature cannot be moved to another decision)."""
    content = {
        **_deviation_content(info),
        "disposition": disposition,
        "disposition_comment": comment,
    }
    return RecordRef(DEVIATION_RECORD, info.deviation_id, digest(content))


def _deviation_content(info: DeviationInfo) -> dict[str, Any]:
    return {
        "deviation_id": info.deviation_id,
        "batch_id": info.batch_id,
        "step_id": info.step_id,
        "kind": info.kind.value,
        "parameter": info.parameter,
        "expected": info.expected,
        "actual": info.actual,
        "unit": info.unit,
        "description": info.description,
        "reason_code": info.reason_code,
        "reason_text": info.reason_text,
        "reason_by": info.reason_by,
        "action": plain(dict(info.action)) if info.action else None,
    }


def step_index_of(recipe: Recipe, step_id: str) -> int:
    for index, step in enumerate(recipe.steps):
        if step.id == step_id:
            return index
    raise StepOutOfOrder(f"recipe {recipe.id} v{recipe.version} has no step {step_id!r}")


def tag_unit(tag: str) -> str:
    unit = PLC_TAGS[tag].unit
    return unit or ""


def plc_to_parameter(parameter: Parameter, value: TagValue | None) -> Decimal | None:
    if value is None or isinstance(value, bool | str | tuple):
        return None
    assert parameter.write_tag is not None
    raw = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    return convert(raw, tag_unit(parameter.write_tag), parameter.unit)
