"""The electronic batch record as one immutable value: what both true copies are made of.

Every field is plain data (text, integers, booleans; times as stored UTC text) so that the
record survives a round trip through the bundle's canonical JSON unchanged: the PDF is printed
from exactly what the bundle holds.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EventRef(_Frozen):
    """An audit event by its place in a chain."""

    terminal_id: str
    seq: int


class Header(_Frozen):
    """Where and what: site, line, terminal, product, pinned recipe, batch number, status."""

    site: str
    line: str
    terminal_id: str
    batch_id: str
    product: str
    recipe_id: str
    recipe_name: str
    recipe_version: int
    recipe_sha256: str
    status: str
    step_count: int
    current_step: int
    started_by: str
    started_at: str
    completed_at: str | None
    aborted_by: str | None
    aborted_at: str | None
    hold_reason: str | None
    reviewed_by: str | None
    reviewed_at: str | None
    reviewed_sha256: str | None
    decided_by: str | None
    decided_at: str | None
    decision_reason: str | None
    started_event: EventRef | None


class RecipeContent(_Frozen):
    """The master recipe version the batch ran, as stored and as hashed."""

    recipe_id: str
    version: int
    sha256: str
    text: str
    canonical_json: str


class Step(_Frozen):
    index: int
    step_id: str
    title: str
    kind: str
    status: str
    instruction: str | None
    started_at: str | None
    started_by: str | None
    completed_at: str | None
    performed_by: str | None
    deviation_id: str | None
    signature_ids: tuple[str, ...]


class Value(_Frozen):
    """A value as first recorded, or a correction pointing to the value it replaces."""

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
    recorded_at: str
    replaces_id: int | None
    reason: str | None
    replaced_by: int | None
    late: bool
    event: EventRef | None


class Change(_Frozen):
    """A value changed after its first entry (Annex 11 §8.2): old, new, who, when, why."""

    value_id: int
    replaces_id: int
    step_id: str
    name: str
    old: str
    new: str
    unit: str | None
    changed_by: str
    changed_at: str
    reason: str


class Deviation(_Frozen):
    deviation_id: str
    seq: int
    step_index: int | None
    step_id: str | None
    kind: str
    kind_label: str
    parameter: str | None
    expected: str | None
    actual: str | None
    unit: str | None
    critical: bool
    description: str
    opened_at: str
    opened_by: str
    ended_at: str | None
    requires_cosign: bool
    status: str
    reason_code: str | None
    reason_text: str | None
    reason_by: str | None
    reason_at: str | None
    request_signature_id: str | None
    cosign_signature_id: str | None
    cosigned_by: str | None
    cosigned_at: str | None
    disposition: str | None
    disposition_comment: str | None
    disposition_by: str | None
    disposition_at: str | None
    alarm_id: int | None
    event: EventRef | None


class SignatureEntry(_Frozen):
    """An electronic signature with everything its binding hash covers and its manifestation."""

    signature_id: str
    record_type: str
    record_id: str
    record_sha256: str
    meaning: str
    meaning_label: str
    signer_id: str
    signer_name: str
    signer_role: str
    signed_at: str
    session_id: str | None
    terminal_id: str
    components: tuple[str, ...]
    cosign_of: str | None
    binding_sha256: str
    manifestation: str
    valid: bool
    problems: tuple[str, ...]
    event: EventRef


class Alarm(_Frozen):
    alarm_id: int
    code: str
    source: str
    severity: int
    message: str
    terminal_id: str
    raised_at: str
    cleared_at: str | None
    acknowledged_at: str | None
    acknowledged_by: str | None
    shelved_at: str | None
    shelved_by: str | None
    shelved_until: str | None
    shelve_reason: str | None
    step_index: int | None


class PlcCommand(_Frozen):
    command_id: int
    step_index: int | None
    command: str
    arguments: str
    intent_at: str
    intent_by: str
    result: str | None
    result_detail: str | None
    result_at: str | None


class AuditEvent(_Frozen):
    """One event of the batch's audit trail, as printed in the appendix."""

    terminal_id: str
    seq: int
    ts: str
    actor_id: str
    actor_role: str
    action: str
    entity_type: str | None
    entity_id: str | None
    field: str | None
    old_value: str | None
    new_value: str | None
    reason: str | None
    meaning: str | None
    row_hash: str


class Verification(_Frozen):
    """What was checked when the record was assembled (or when the bundle was read)."""

    chain_ok: bool
    chain_problems: tuple[str, ...]
    events_checked: int
    signatures_valid: int
    signatures_invalid: int


class Summary(_Frozen):
    """Review by exception: what QA must look at before anything else."""

    deviations: int
    critical_deviations: int
    open_deviations: int
    undispositioned_deviations: int
    overrides: int
    alarms: int
    late_entries: int
    changed_values: int
    signatures: int
    signatures_by_meaning: dict[str, int]
    plc_commands_without_result: int
    verification: Verification

    @property
    def exceptions(self) -> int:
        return (
            self.deviations
            + self.overrides
            + self.alarms
            + self.late_entries
            + self.changed_values
            + self.plc_commands_without_result
            + self.verification.signatures_invalid
            + (0 if self.verification.chain_ok else 1)
        )


class EbrRecord(_Frozen):
    """The whole electronic batch record of one batch, with its audit trail."""

    header: Header
    recipe: RecipeContent
    steps: tuple[Step, ...]
    values: tuple[Value, ...]
    changes: tuple[Change, ...]
    deviations: tuple[Deviation, ...]
    signatures: tuple[SignatureEntry, ...]
    alarms: tuple[Alarm, ...]
    plc_commands: tuple[PlcCommand, ...]
    events: tuple[AuditEvent, ...]
    summary: Summary
    assembled_at: str
    assembled_by: str

    def values_of(self, step_index: int) -> list[Value]:
        return [v for v in self.values if v.step_index == step_index]

    def value(self, value_id: int) -> Value | None:
        return next((v for v in self.values if v.value_id == value_id), None)


def plain(model: BaseModel) -> dict[str, Any]:
    """A model as canonical-JSON-ready data (no floats: every number here is an integer)."""
    return model.model_dump(mode="json")
