"""The batch engine's shared core: collaborators, queries, records to sign, and the
helpers every part of the engine writes through (steps, deviations, holds, signatures).

All batch state lives in the database; every change is written together with its audit event
in one ``AuditLog.transaction``. The engine's parts (step execution, deviations, hold/resume/
abort, QA review, supervision of the run) are classes built on :class:`EngineCore`;
:class:`hmi.batch.engine.BatchEngine` puts them together.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, RowMapping, Table, func, insert, select, update

from hmi.alarms.service import AlarmService
from hmi.audit import canonical
from hmi.audit.chain import Actor, AuditLog
from hmi.auth.roles import Meaning
from hmi.auth.signatures import RecordRef, Signature, SignatureService
from hmi.batch.errors import (
    BatchNotFound,
    DeviationNotFound,
    InvalidReason,
    SignatureProblem,
)
from hmi.batch.integrity import ensure_bound
from hmi.batch.journal import CommandJournal
from hmi.batch.model import (
    ACTIVE_STATUSES,
    BatchInfo,
    BatchRecord,
    BatchStatus,
    CurrentStep,
    DeviationInfo,
    DeviationStatus,
    RecordedValue,
    StepRecord,
    StepStatus,
)
from hmi.batch.outcome import DeviationSpec, NewValue
from hmi.batch.plc_link import PlcLink
from hmi.batch.rows import (
    DEVIATION_RECORD,
    batch_info,
    command_record,
    deviation_info,
    deviation_ref,
    digest,
    plain,
    step_index_of,
    tag_unit,
    text_of,
    utc_or_none,
)
from hmi.batch.settings import BatchSettings
from hmi.batch.tables import (
    batch,
    batch_signature,
    batch_step,
    batch_value,
    deviation,
    plc_command,
)
from hmi.clock import Clock, from_utc_text, to_utc_text
from hmi.db import read_only
from hmi.plc.gateway import PlcGateway
from hmi.recipe.errors import RecipeIntegrityError
from hmi.recipe.model import (
    Parameter,
    Recipe,
    RunStep,
    Step,
)
from hmi.recipe.service import RecipeService

log = logging.getLogger(__name__)

BATCH_RECORD = "batch"
STEP_RECORD = "batch_step"

#: PackML states in which the drum may be turning under a batch's control.
RUNNING_STATES = frozenset({"Starting", "Execute", "Unholding", "Holding", "Held", "Completing"})
HOLDABLE_STATES = frozenset({"Starting", "Execute", "Unholding"})


class Authorizer(Protocol):
    """Checks a session may act and records a refusal (``hmi.auth.sessions.SessionService``)."""

    def authorize(
        self,
        session: Any,
        action: str,
        *,
        entity: tuple[str, str] | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> Actor: ...


# -- small helpers -------------------------------------------------------------------------


def one_line(text: str | None) -> str:
    """A reason or comment as it is stored and signed: runs of white space made one space."""
    return " ".join((text or "").split())


class EngineCore:
    """Collaborators, queries and the write helpers shared by every part of the engine."""

    def __init__(
        self,
        *,
        engine: Engine,
        audit: AuditLog,
        clock: Clock,
        sessions: Authorizer,
        signatures: SignatureService,
        plc: PlcGateway | None,
        recipes: RecipeService,
        settings: BatchSettings | None = None,
        alarms: AlarmService | None = None,
        journal: Path | None = None,
    ) -> None:
        self.engine = engine
        self.audit = audit
        self.clock = clock
        self.sessions = sessions
        self.signatures = signatures
        self.recipes = recipes
        self.settings = settings or BatchSettings()
        self.alarms = alarms
        self.link = PlcLink(
            plc,
            audit=audit,
            clock=clock,
            settings=self.settings,
            journal=None if journal is None else CommandJournal(journal),
        )
        self._recipe_cache: dict[tuple[str, int], Recipe] = {}
        self._context_version = 0
        self._on_deviation: list[Callable[[DeviationInfo], None]] = []
        #: Set while Resume brings a PLC that lost the run back (Clear, Reset, setpoints,
        #: Start): the states it passes through are commanded, not a loss.
        self._plc_restoring = False
        #: Batches whose Hold this kiosk is sending to the PLC right now: the PLC's Held that
        #: follows is this kiosk's own hold, not the PLC holding by itself.
        self._holding: set[str] = set()
        #: Runs (batch, step index) whose loss by the PLC is already a deviation.
        self._lost_runs: set[tuple[str, int]] = set()
        if alarms is not None:
            self._attach(alarms)

    def _attach(self, alarms: AlarmService) -> None:
        """Alarm records name the batch and step in progress (extended by supervision)."""
        alarms.context_provider = self.active_context

    @property
    def terminal_id(self) -> str:
        return self.audit.terminal_id

    @property
    def gateway(self) -> PlcGateway:
        """The PLC; an engine built without one (record queries) refuses equipment steps."""
        return self.link.gateway

    @property
    def plc(self) -> PlcGateway | None:
        """The PLC gateway, or ``None`` until one is attached (the TUI creates it late)."""
        return self.link.plc

    @plc.setter
    def plc(self, gateway: PlcGateway | None) -> None:
        self.link.plc = gateway

    def on_deviation(self, listener: Callable[[DeviationInfo], None]) -> None:
        """Call ``listener`` after a deviation is opened (the TUI shows it; benchmarks time it)."""
        self._on_deviation.append(listener)

    def get(self, batch_id: str) -> BatchInfo:
        with read_only(self.engine) as conn:
            return batch_info(self._batch_row(conn, batch_id))

    def list_batches(self, *, status: BatchStatus | None = None) -> list[BatchInfo]:
        query = select(batch).order_by(batch.c.started_at.desc(), batch.c.batch_id)
        if status is not None:
            query = query.where(batch.c.status == status.value)
        with read_only(self.engine) as conn:
            return [batch_info(r) for r in conn.execute(query).mappings()]

    def active_batch(self) -> BatchInfo | None:
        """The batch in progress (running or held) on this terminal, if any."""
        with read_only(self.engine) as conn:
            row = self._active_row(conn)
        return None if row is None else batch_info(row)

    def active_context(self) -> tuple[str, int] | None:
        """``(batch_id, step_index)`` of the batch in progress, for alarm records."""
        active = self.active_batch()
        return None if active is None else (active.batch_id, active.current_step)

    def recipe_of(self, info: BatchInfo) -> Recipe:
        """The pinned recipe version of a batch, checked against the hash the batch recorded."""
        key = (info.recipe_id, info.recipe_version)
        cached = self._recipe_cache.get(key)
        if cached is not None:
            return cached
        stored = self.recipes.get(info.recipe_id, info.recipe_version)
        if stored.info.sha256 != info.recipe_sha256:
            raise RecipeIntegrityError(
                f"{info.recipe_id} v{info.recipe_version} no longer matches the hash pinned by"
                f" batch {info.batch_id}"
            )
        self._recipe_cache[key] = stored.recipe
        return stored.recipe

    def current_step(self, batch_id: str) -> CurrentStep | None:
        """The step the batch waits on (``None`` once every step is done)."""
        with read_only(self.engine) as conn:
            row = self._batch_row(conn, batch_id)
            info = batch_info(row)
            if info.current_step >= info.step_count:
                return None
            step_row = self._step_row(conn, batch_id, info.current_step)
            blocking = self._blocking(conn, batch_id)
        recipe = self.recipe_of(info)
        status = StepStatus.PENDING if step_row is None else StepStatus(step_row["status"])
        return CurrentStep(
            batch_id, info.current_step, recipe.steps[info.current_step], status, blocking
        )

    def deviations(self, batch_id: str) -> list[DeviationInfo]:
        with read_only(self.engine) as conn:
            return [deviation_info(r) for r in _of_batch(conn, deviation, batch_id, "seq")]

    def deviation(self, deviation_id: str) -> DeviationInfo:
        with read_only(self.engine) as conn:
            return deviation_info(self._deviation_row(conn, deviation_id))

    def values(self, batch_id: str) -> list[RecordedValue]:
        with read_only(self.engine) as conn:
            return self._values(conn, batch_id)

    def record(self, batch_id: str) -> BatchRecord:
        """The whole electronic batch record, for screens, ``hmi batch show`` and copies.

        Raises :class:`RecordMismatch` if a stored row of it differs from its audit trail."""
        with read_only(self.engine) as conn:
            try:
                info = batch_info(self._batch_row(conn, batch_id))
            except BatchNotFound:
                ensure_bound(conn, batch_id)  # a batch the trail knows was deleted
                raise
            ensure_bound(conn, batch_id)
            step_rows = {
                int(r["step_index"]): r for r in _of_batch(conn, batch_step, batch_id, "step_index")
            }
            values = self._values(conn, batch_id)
            deviations = [deviation_info(r) for r in _of_batch(conn, deviation, batch_id, "seq")]
            commands = [command_record(r) for r in _of_batch(conn, plc_command, batch_id, "id")]
            signature_ids = [
                str(r[0])
                for r in conn.execute(
                    select(batch_signature.c.signature_id)
                    .where(batch_signature.c.batch_id == batch_id)
                    .order_by(batch_signature.c.id)
                )
            ]
        recipe = self.recipe_of(info)
        steps = []
        for index, step in enumerate(recipe.steps):
            row = step_rows.get(index)
            steps.append(
                StepRecord(
                    index=index,
                    step_id=step.id,
                    title=step.title,
                    kind=step.kind,
                    status=StepStatus.PENDING if row is None else StepStatus(row["status"]),
                    started_at=None if row is None else utc_or_none(row["started_at"]),
                    started_by=None if row is None else row["started_by"],
                    completed_at=None if row is None else utc_or_none(row["completed_at"]),
                    performed_by=None if row is None else row["performed_by"],
                    deviation_id=None if row is None else row["deviation_id"],
                )
            )
        signatures = self._signatures(info, recipe, deviations, signature_ids)
        return BatchRecord(
            info, tuple(steps), tuple(values), tuple(deviations), tuple(signatures), tuple(commands)
        )

    def _signatures(
        self,
        info: BatchInfo,
        recipe: Recipe,
        deviations: Sequence[DeviationInfo],
        wanted: Sequence[str],
    ) -> list[Signature]:
        found: dict[str, Signature] = {}
        records = [(BATCH_RECORD, info.batch_id)]
        records += [(STEP_RECORD, f"{info.batch_id}/{s.id}") for s in recipe.steps]
        records += [(DEVIATION_RECORD, d.deviation_id) for d in deviations]
        for record_type, record_id in records:
            for signature in self.signatures.signatures_for(record_type, record_id):
                found[signature.signature_id] = signature
        return [found[s] for s in wanted if s in found]

    def step_record(self, batch_id: str, step_id: str, data: Mapping[str, Any]) -> RecordRef:
        """What a step signature covers: the batch, the pinned recipe, the step and its data."""
        info = self.get(batch_id)
        recipe = self.recipe_of(info)
        index = step_index_of(recipe, step_id)
        content = {
            "batch_id": batch_id,
            "recipe_sha256": info.recipe_sha256,
            "step_index": index,
            "step_id": step_id,
            "data": plain(dict(data)),
        }
        return RecordRef(STEP_RECORD, f"{batch_id}/{step_id}", digest(content))

    def deviation_record(self, deviation_id: str) -> RecordRef:
        """What a deviation's request and co-signature cover (its facts and its reason)."""
        return deviation_ref(self.deviation(deviation_id))

    def batch_record_ref(self, batch_id: str) -> RecordRef:
        """What QA's review, release and rejection signatures cover: the whole batch record."""
        with read_only(self.engine) as conn:
            return self._batch_ref(conn, batch_id)

    def _require_valid(self, signature: Signature, ref: RecordRef, meaning: Meaning) -> None:
        if signature.meaning is not meaning:
            raise SignatureProblem(
                f"a signature with the meaning '{meaning.label}' is needed,"
                f" not '{signature.meaning.label}'"
            )
        if (signature.record.type, signature.record.id) != (ref.type, ref.id):
            raise SignatureProblem("the signature belongs to another record")
        if signature.record.sha256 != ref.sha256:
            raise SignatureProblem(
                "the signature covers other data than what is being recorded; sign again"
            )
        check = self.signatures.check(signature, ref)
        if not check.valid:
            raise SignatureProblem("the signature does not verify: " + "; ".join(check.problems))

    def _finish_step(
        self,
        conn: Connection,
        actor: Actor,
        info: BatchInfo,
        index: int,
        step: Step,
        status: StepStatus,
        values: Sequence[NewValue],
        deviations: Sequence[DeviationSpec],
        data_sha: str | None,
        signatures: Sequence[Signature],
        *,
        exists: bool,
        deviation_id: str | None = None,
    ) -> None:
        now = to_utc_text(self.clock.now())
        batch_id = info.batch_id
        if exists:
            conn.execute(
                update(batch_step)
                .where(batch_step.c.batch_id == batch_id, batch_step.c.step_index == index)
                .values(
                    status=status.value,
                    completed_at=now,
                    performed_by=actor.user_id,
                    performed_role=actor.role,
                    session_id=actor.session_id,
                    data_sha256=data_sha,
                    deviation_id=deviation_id,
                )
            )
        else:
            conn.execute(
                insert(batch_step).values(
                    batch_id=batch_id,
                    step_index=index,
                    step_id=step.id,
                    kind=step.kind,
                    status=status.value,
                    started_at=now,
                    started_by=actor.user_id,
                    completed_at=now,
                    performed_by=actor.user_id,
                    performed_role=actor.role,
                    session_id=actor.session_id,
                    data_sha256=data_sha,
                    deviation_id=deviation_id,
                )
            )
        self._insert_values(conn, actor, batch_id, index, step.id, values)
        for signature in signatures:
            self._link_signature(conn, batch_id, signature, f"step.{step.kind}", step_index=index)
        last = index + 1 >= info.step_count
        conn.execute(
            update(batch)
            .where(batch.c.batch_id == batch_id)
            .values(
                current_step=index + 1,
                **(
                    {"status": BatchStatus.AWAITING_REVIEW.value, "completed_at": now}
                    if last
                    else {}
                ),
            )
        )
        action = {
            StepStatus.COMPLETED: "batch.step.completed",
            StepStatus.OVERRIDDEN: "batch.step.overridden",
            StepStatus.SKIPPED: "batch.step.skipped",
        }[status]
        self.audit.record(
            conn,
            action,
            actor,
            entity=(BATCH_RECORD, batch_id),
            field="current_step",
            old_value=str(index),
            new_value=str(index + 1),
            details={
                "step_id": step.id,
                "step_index": index,
                "kind": step.kind,
                "data_sha256": data_sha,
                "deviation_id": deviation_id,
                "values": [
                    {
                        "name": v.name,
                        "value": v.value,
                        "unit": v.unit,
                        "source": v.source,
                        "in_limits": v.in_limits,
                    }
                    for v in values
                ],
                "signatures": [s.signature_id for s in signatures],
            },
        )
        for spec in deviations:
            self._open_deviation(conn, actor, batch_id, index, step.id, spec)
        if last:
            self.audit.record(
                conn,
                "batch.completed",
                actor,
                entity=(BATCH_RECORD, batch_id),
                field="status",
                old_value=BatchStatus.RUNNING.value,
                new_value=BatchStatus.AWAITING_REVIEW.value,
            )

    def _insert_step(
        self,
        conn: Connection,
        actor: Actor,
        batch_id: str,
        index: int,
        step: Step,
        status: StepStatus,
    ) -> None:
        conn.execute(
            insert(batch_step).values(
                batch_id=batch_id,
                step_index=index,
                step_id=step.id,
                kind=step.kind,
                status=status.value,
                started_at=to_utc_text(self.clock.now()),
                started_by=actor.user_id,
                session_id=actor.session_id,
            )
        )

    def _insert_values(
        self,
        conn: Connection,
        actor: Actor,
        batch_id: str,
        index: int,
        step_id: str,
        values: Sequence[NewValue],
    ) -> None:
        now = to_utc_text(self.clock.now())
        for value in values:
            conn.execute(
                insert(batch_value).values(
                    batch_id=batch_id,
                    step_index=index,
                    step_id=step_id,
                    name=value.name,
                    value=value.value,
                    unit=value.unit,
                    source=value.source,
                    low=value.low,
                    high=value.high,
                    in_limits=None if value.in_limits is None else int(value.in_limits),
                    recorded_by=actor.user_id,
                    recorded_at=now,
                    session_id=actor.session_id,
                )
            )

    def _link_signature(
        self,
        conn: Connection,
        batch_id: str,
        signature: Signature,
        purpose: str,
        *,
        step_index: int | None = None,
        deviation_id: str | None = None,
    ) -> None:
        conn.execute(
            insert(batch_signature).values(
                batch_id=batch_id,
                step_index=step_index,
                deviation_id=deviation_id,
                purpose=purpose,
                signature_id=signature.signature_id,
                meaning=signature.meaning.value,
                signer_id=signature.signer_id,
                recorded_at=to_utc_text(self.clock.now()),
            )
        )

    async def _apply_parameter(
        self,
        actor: Actor,
        info: BatchInfo,
        index: int,
        step_id: str,
        parameter: Parameter,
        name: str,
        old_value: Decimal | None,
        wanted: Decimal,
        why: str,
        deviation_id: str | None = None,
    ) -> str:
        assert parameter.write_tag is not None
        tag_value = parameter.in_unit(wanted, tag_unit(parameter.write_tag))
        result: dict[str, str] = {}

        def applied(conn: Connection) -> None:
            self._insert_values(
                conn,
                actor,
                info.batch_id,
                index,
                step_id,
                [
                    NewValue(
                        f"parameter:{name}",
                        str(wanted),
                        "entered",
                        parameter.unit,
                        str(parameter.low),
                        str(parameter.high),
                        parameter.within_limits(wanted),
                    )
                ],
            )
            self.audit.record(
                conn,
                "batch.parameter.changed",
                actor,
                entity=(BATCH_RECORD, info.batch_id),
                field=name,
                old_value=None if old_value is None else str(old_value),
                new_value=str(wanted),
                reason=why,
                details={
                    "tag": parameter.write_tag,
                    "tag_value": str(tag_value),
                    "deviation_id": deviation_id,
                    "confirmed": result.get("value"),
                    "step_id": step_id,
                    "values": [{"name": f"parameter:{name}", "value": str(wanted)}],
                },
            )

        confirmed = await self.link.write(
            actor,
            info.batch_id,
            index,
            parameter.write_tag,
            tag_value,
            then=applied,
            capture=result,
        )
        self._changed()
        return text_of(confirmed.value)

    def _open_deviation(
        self,
        conn: Connection,
        actor: Actor,
        batch_id: str,
        step_index: int | None,
        step_id: str | None,
        spec: DeviationSpec,
    ) -> str:
        seq = (
            int(
                conn.execute(
                    select(func.coalesce(func.max(deviation.c.seq), 0)).where(
                        deviation.c.batch_id == batch_id
                    )
                ).scalar()
                or 0
            )
            + 1
        )
        deviation_id = f"{batch_id}-D{seq:02d}"
        now = to_utc_text(self.clock.now())
        status = DeviationStatus.OPEN
        reason: dict[str, Any] = {}
        if spec.reason is not None:
            code, text, user = spec.reason
            status = (
                DeviationStatus.AWAITING_COSIGN if spec.requires_cosign else DeviationStatus.CLOSED
            )
            reason = {"reason_code": code, "reason_text": text, "reason_by": user, "reason_at": now}
        conn.execute(
            insert(deviation).values(
                deviation_id=deviation_id,
                batch_id=batch_id,
                seq=seq,
                step_index=step_index,
                step_id=step_id,
                kind=spec.kind.value,
                parameter=spec.parameter,
                expected=spec.expected,
                actual=spec.actual,
                unit=spec.unit,
                critical=int(spec.critical),
                description=spec.description,
                opened_at=now,
                opened_by=actor.user_id,
                requires_cosign=int(spec.requires_cosign),
                status=status.value,
                action=None if spec.action is None else canonical.dumps(plain(spec.action)),
                action_done=0,
                alarm_id=spec.alarm_id,
                **reason,
            )
        )
        self.audit.record(
            conn,
            "deviation.opened",
            actor,
            entity=(DEVIATION_RECORD, deviation_id),
            field="status",
            new_value=status.value,
            reason=reason.get("reason_text"),
            details={
                "batch_id": batch_id,
                "step_id": step_id,
                "kind": spec.kind.value,
                "parameter": spec.parameter,
                "expected": spec.expected,
                "actual": spec.actual,
                "unit": spec.unit,
                "critical": spec.critical,
                "requires_cosign": spec.requires_cosign,
                "description": spec.description,
                "alarm_id": spec.alarm_id,
                "reason_code": reason.get("reason_code"),
            },
        )
        conn.info.setdefault("hmi_batch_deviations", []).append(deviation_id)
        return deviation_id

    def _set_held(self, conn: Connection, actor: Actor, info: BatchInfo, why: str) -> None:
        now = to_utc_text(self.clock.now())
        conn.execute(
            update(batch)
            .where(batch.c.batch_id == info.batch_id)
            .values(
                status=BatchStatus.HELD.value, hold_reason=why, held_at=now, held_by=actor.user_id
            )
        )
        self.audit.record(
            conn,
            "batch.held",
            actor,
            entity=(BATCH_RECORD, info.batch_id),
            field="status",
            old_value=info.status.value,
            new_value=BatchStatus.HELD.value,
            reason=why,
            details={"step_index": info.current_step},
        )

    async def _hold_equipment(self, actor: Actor, info: BatchInfo) -> None:
        state = await self.link.state_or_none()
        if state in HOLDABLE_STATES:
            await self.link.command(actor, info.batch_id, info.current_step, "hold")
        elif state is None and await self._run_in_progress(info):
            self._plc_unreachable(actor, info.batch_id, "hold")

    def _plc_unreachable(self, actor: Actor, batch_id: str, command: str) -> None:
        """The batch changed state but its command could not be sent: say so in the record."""
        self.audit.record_now(
            "batch.plc.command.not_sent",
            actor,
            entity=(BATCH_RECORD, batch_id),
            reason="the PLC cannot be reached",
            details={"command": command},
        )

    async def _run_in_progress(self, info: BatchInfo) -> bool:
        if info.current_step >= info.step_count:
            return False
        recipe = self.recipe_of(info)
        if not isinstance(recipe.steps[info.current_step], RunStep):
            return False
        with read_only(self.engine) as conn:
            row = self._step_row(conn, info.batch_id, info.current_step)
        return row is not None and row["status"] == StepStatus.RUNNING.value

    def _notify_deviation(self, deviation_id: str) -> None:
        if not self._on_deviation:
            return
        info = self.deviation(deviation_id)
        for listener in list(self._on_deviation):
            try:
                listener(info)
            except Exception:
                log.exception("deviation listener failed")

    def _changed(self) -> None:
        self._context_version += 1

    def _refuse(
        self,
        actor: Actor,
        action: str,
        entity: tuple[str, str],
        reason: str,
        details: Mapping[str, Any] | None,
    ) -> None:
        self.audit.record_now(
            action, actor, entity=entity, reason=reason, details=plain(dict(details or {}))
        )

    def _reason_text(
        self, actor: Actor, entity: tuple[str, str], text: str | None, refusal: str
    ) -> str:
        value = one_line(text)
        low, high = self.settings.min_reason_length, self.settings.max_reason_length
        if not low <= len(value) <= high:
            self._refuse(actor, refusal, entity, "reason length", {"length": len(value)})
            raise InvalidReason(f"explain the reason in {low} to {high} characters")
        return value

    def _reason_code(self, actor: Actor, entity: tuple[str, str], code: str, refusal: str) -> str:
        value = (code or "").strip().upper()
        if value not in self.settings.reason_codes:
            self._refuse(actor, refusal, entity, "unknown reason code", {"code": code})
            raise InvalidReason(
                f"unknown reason code {code!r}; choose one of"
                f" {', '.join(self.settings.reason_codes)}"
            )
        return value

    def _step_id(self, info: BatchInfo) -> str | None:
        if info.current_step >= info.step_count:
            return None
        return self.recipe_of(info).steps[info.current_step].id

    def _active_row(self, conn: Connection) -> Mapping[Any, Any] | None:
        return (
            conn.execute(
                select(batch).where(
                    batch.c.terminal_id == self.terminal_id,
                    batch.c.status.in_([s.value for s in ACTIVE_STATUSES]),
                )
            )
            .mappings()
            .first()
        )

    @staticmethod
    def _batch_row(conn: Connection, batch_id: str) -> Mapping[Any, Any]:
        row = conn.execute(select(batch).where(batch.c.batch_id == batch_id)).mappings().first()
        if row is None:
            raise BatchNotFound(f"there is no batch {batch_id}")
        return row

    @staticmethod
    def _step_row(conn: Connection, batch_id: str, index: int) -> Mapping[Any, Any] | None:
        return (
            conn.execute(
                select(batch_step).where(
                    batch_step.c.batch_id == batch_id, batch_step.c.step_index == index
                )
            )
            .mappings()
            .first()
        )

    @staticmethod
    def _deviation_row(conn: Connection, deviation_id: str) -> Mapping[Any, Any]:
        row = (
            conn.execute(select(deviation).where(deviation.c.deviation_id == deviation_id))
            .mappings()
            .first()
        )
        if row is None:
            raise DeviationNotFound(f"there is no deviation {deviation_id}")
        return row

    @staticmethod
    def _blocking(conn: Connection, batch_id: str) -> tuple[str, ...]:
        return tuple(
            str(r[0])
            for r in conn.execute(
                select(deviation.c.deviation_id)
                .where(
                    deviation.c.batch_id == batch_id,
                    deviation.c.status != DeviationStatus.CLOSED.value,
                )
                .order_by(deviation.c.seq)
            )
        )

    @staticmethod
    def _values(conn: Connection, batch_id: str) -> list[RecordedValue]:
        rows = list(
            conn.execute(
                select(batch_value)
                .where(batch_value.c.batch_id == batch_id)
                .order_by(batch_value.c.id)
            ).mappings()
        )
        replaced_by = {int(r["replaces_id"]): int(r["id"]) for r in rows if r["replaces_id"]}
        return [
            RecordedValue(
                value_id=int(r["id"]),
                step_index=int(r["step_index"]),
                step_id=str(r["step_id"]),
                name=str(r["name"]),
                value=str(r["value"]),
                unit=r["unit"],
                source=str(r["source"]),
                low=r["low"],
                high=r["high"],
                in_limits=None if r["in_limits"] is None else bool(r["in_limits"]),
                recorded_by=str(r["recorded_by"]),
                recorded_at=from_utc_text(str(r["recorded_at"])),
                replaces_id=None if r["replaces_id"] is None else int(r["replaces_id"]),
                reason=r["reason"],
                replaced_by=replaced_by.get(int(r["id"])),
            )
            for r in rows
        ]

    def _batch_ref(self, conn: Connection, batch_id: str) -> RecordRef:
        row = dict(self._batch_row(conn, batch_id))
        header = {
            k: row[k]
            for k in (
                "batch_id",
                "recipe_id",
                "recipe_version",
                "recipe_sha256",
                "status",
                "started_by",
                "started_at",
                "completed_at",
                "aborted_at",
                "aborted_by",
            )
        }
        steps = [dict(r) for r in _of_batch(conn, batch_step, batch_id, "step_index")]
        values = [dict(r) for r in _of_batch(conn, batch_value, batch_id, "id")]
        deviations = [dict(r) for r in _of_batch(conn, deviation, batch_id, "seq")]
        signatures = [
            dict(r)
            for r in conn.execute(
                select(batch_signature.c.signature_id, batch_signature.c.purpose)
                .where(
                    batch_signature.c.batch_id == batch_id,
                    batch_signature.c.purpose.not_in(
                        ["batch.audit_trail_review", "batch.release", "batch.reject"]
                    ),
                )
                .order_by(batch_signature.c.id)
            ).mappings()
        ]
        content = {
            "batch": header,
            "steps": steps,
            "values": values,
            "deviations": deviations,
            "signatures": signatures,
        }
        return RecordRef(BATCH_RECORD, batch_id, digest(content))


def _of_batch(conn: Connection, table: Table, batch_id: str, order: str) -> list[RowMapping]:
    """A batch's rows of one table, in a stable order (the record hash depends on it)."""
    return list(
        conn.execute(
            select(table).where(table.c.batch_id == batch_id).order_by(table.c[order])
        ).mappings()
    )
