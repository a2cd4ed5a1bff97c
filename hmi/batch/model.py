"""What the batch engine hands out: frozen facts about batches, steps, values and deviations."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from hmi.auth.signatures import Signature
from hmi.recipe.model import Step


class BatchStatus(StrEnum):
    RUNNING = "running"
    HELD = "held"
    AWAITING_REVIEW = "awaiting_review"
    RELEASED = "released"
    REJECTED = "rejected"
    ABORTED = "aborted"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")


ACTIVE_STATUSES = (BatchStatus.RUNNING, BatchStatus.HELD)
FINAL_STATUSES = (BatchStatus.RELEASED, BatchStatus.REJECTED)


class DeviationKind(StrEnum):
    OUT_OF_TOLERANCE = "out_of_tolerance"
    EXCURSION = "excursion"
    ALARM = "alarm"
    OVERRIDE = "override"
    SKIP = "skip"
    HOLD = "hold"
    ABORT = "abort"
    PLC_LOST = "plc_lost"
    PARAMETER_CHANGE = "parameter_change"
    PLC_MISMATCH = "plc_mismatch"

    @property
    def label(self) -> str:
        return _KIND_LABELS[self]


_KIND_LABELS = {
    DeviationKind.OUT_OF_TOLERANCE: "value out of tolerance",
    DeviationKind.EXCURSION: "parameter out of limits during the run",
    DeviationKind.ALARM: "alarm during the step",
    DeviationKind.OVERRIDE: "step overridden",
    DeviationKind.SKIP: "step skipped",
    DeviationKind.HOLD: "batch held",
    DeviationKind.ABORT: "batch aborted",
    DeviationKind.PLC_LOST: "communication with the PLC lost during the run",
    DeviationKind.PARAMETER_CHANGE: "parameter changed outside its limits",
    DeviationKind.PLC_MISMATCH: "PLC state did not match what the batch needs",
}


class DeviationStatus(StrEnum):
    OPEN = "open"
    AWAITING_COSIGN = "awaiting_cosign"
    CLOSED = "closed"


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    OVERRIDDEN = "overridden"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class BatchInfo:
    """A batch's header: recipe pinned by version and hash, status and where it stands."""

    batch_id: str
    recipe_id: str
    recipe_version: int
    recipe_sha256: str
    recipe_name: str
    product: str
    status: BatchStatus
    current_step: int
    step_count: int
    terminal_id: str
    started_by: str
    started_at: datetime
    hold_reason: str | None
    completed_at: datetime | None
    aborted_by: str | None
    aborted_at: datetime | None
    reviewed_by: str | None
    reviewed_at: datetime | None
    reviewed_sha256: str | None
    decided_by: str | None
    decided_at: datetime | None
    decision_reason: str | None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES


@dataclass(frozen=True)
class CurrentStep:
    """The step a batch waits on, whether it has been started, and what blocks it."""

    batch_id: str
    index: int
    step: Step
    status: StepStatus
    blocking: tuple[str, ...]

    @property
    def step_id(self) -> str:
        return self.step.id


@dataclass(frozen=True)
class RecordedValue:
    """One value as first recorded, or a correction of an earlier one (``replaces_id``)."""

    value_id: int
    step_index: int
    step_id: str
    name: str
    value: str
    unit: str | None
    source: str
    low: str | None
    high: str | None
    in_limits: bool | None
    recorded_by: str
    recorded_at: datetime
    replaces_id: int | None
    reason: str | None
    replaced_by: int | None

    @property
    def is_correction(self) -> bool:
        return self.replaces_id is not None

    @property
    def current(self) -> bool:
        return self.replaced_by is None


@dataclass(frozen=True)
class StepRecord:
    index: int
    step_id: str
    title: str
    kind: str
    status: StepStatus
    started_at: datetime | None
    started_by: str | None
    completed_at: datetime | None
    performed_by: str | None
    deviation_id: str | None


def parameter_label(parameter: str) -> str:
    """A recorded parameter key in words: ``result:SW-1`` is the result of sample SW-1,
    ``mixing_speed`` is mixing speed. The stored key itself never changes."""
    kind, _, name = parameter.partition(":")
    if name and kind == "result":
        return f"result of sample {name}"
    return parameter.replace("_", " ")


@dataclass(frozen=True)
class DeviationInfo:
    """A deviation: what departed from the recipe, its reason, co-signature and QA disposition."""

    deviation_id: str
    batch_id: str
    seq: int
    step_index: int | None
    step_id: str | None
    kind: DeviationKind
    parameter: str | None
    expected: str | None
    actual: str | None
    unit: str | None
    critical: bool
    description: str
    opened_at: datetime
    opened_by: str
    ended_at: datetime | None
    requires_cosign: bool
    status: DeviationStatus
    reason_code: str | None
    reason_text: str | None
    reason_by: str | None
    reason_at: datetime | None
    request_signature_id: str | None
    cosign_signature_id: str | None
    cosigned_by: str | None
    cosigned_at: datetime | None
    action: Mapping[str, Any] | None
    action_done: bool
    alarm_id: int | None
    disposition: str | None
    disposition_comment: str | None
    disposition_by: str | None
    disposition_at: datetime | None

    @property
    def blocking(self) -> bool:
        """Still needs a reason or a co-signature: the batch cannot proceed."""
        return self.status is not DeviationStatus.CLOSED

    @property
    def summary(self) -> str:
        """What the deviation is, in words that are true when they are read: a skip or an
        override is only a request until a supervisor co-signs it. Only the wording follows the
        state; the stored kind and description stay as they were recorded."""
        words = _REQUEST_WORDS.get(self.kind)
        found = _STEP_REQUEST.fullmatch(self.description) if words is not None else None
        if words is None or found is None:
            return f"{self.kind.label.capitalize()}: {self.description}"
        noun, done = words
        step = f"step '{found['title']}'"
        if self.action_done:
            return f"Step '{found['title']}' {done} (requested and co-signed)"
        if self.status is DeviationStatus.CLOSED:
            return f"{noun} requested for {step} (not carried out)"
        return f"{noun} requested for {step} (needs a supervisor's co-signature)"


#: How the engine describes a requested skip or override (``step '<title>' skip requested``),
#: in new and old records alike.
_STEP_REQUEST = re.compile(r"step '(?P<title>.*)' (?:skip|override) requested", re.DOTALL)
_REQUEST_WORDS = {
    DeviationKind.SKIP: ("Skip", "skipped"),
    DeviationKind.OVERRIDE: ("Override", "overridden"),
}


@dataclass(frozen=True)
class PlcCommandRecord:
    command_id: int
    step_index: int | None
    command: str
    arguments: Mapping[str, Any]
    intent_at: datetime
    intent_by: str
    result: str | None
    result_detail: str | None
    result_at: datetime | None


@dataclass(frozen=True)
class BatchRecord:
    """The electronic batch record: everything ``hmi batch show`` prints."""

    info: BatchInfo
    steps: tuple[StepRecord, ...]
    values: tuple[RecordedValue, ...]
    deviations: tuple[DeviationInfo, ...]
    signatures: tuple[Signature, ...]
    plc_commands: tuple[PlcCommandRecord, ...]


@dataclass(frozen=True)
class ParameterChange:
    """Outcome of a parameter change: applied now, or waiting for a co-signed deviation."""

    applied: bool
    deviation_id: str | None
    confirmed_value: str | None
