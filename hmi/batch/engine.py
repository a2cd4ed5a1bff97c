"""The batch engine: executes an effective master recipe as a batch, strictly step by step.

All batch state lives in the database and every change is written together with its audit
event in one transaction (``AuditLog.transaction``); PLC commands follow the rule of the house:
the intent is committed first (a ``plc_command`` row and ``batch.plc.command.intent``), then
the gateway is called, then the result is committed (``batch.plc.command.result``) together
with whatever the success changes. A process killed at any point therefore leaves either the
state before or the state after each unit of work, plus at most one command whose outcome is
unknown; :meth:`BatchEngine.recover` reconciles those with the PLC's actual state at start-up.

Refusals (out of order, untrained, held, permission) are recorded before they are raised.
Deviations are opened automatically (values out of tolerance, excursions of monitored
parameters, alarms during a step, overrides, skips, holds, aborts, loss of the PLC) and block
the batch until they have a reason and, where required, a supervisor's co-signature.

The engine is pure service code: the TUI calls it from workers, tests call it directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, func, insert, select, update

from hmi.alarms.service import AlarmChange, AlarmService, AlarmTransition
from hmi.audit import canonical
from hmi.audit.chain import SYSTEM, Actor, AuditLog
from hmi.auth.roles import Meaning, allowed
from hmi.auth.signatures import RecordRef, Signature, SignatureService
from hmi.batch.errors import (
    BatchError,
    BatchHeld,
    BatchNotFound,
    BatchNumberInvalid,
    BatchNumberTaken,
    BatchStateError,
    CosignRefused,
    DeviationNotFound,
    DeviationOpen,
    InvalidReason,
    NotTrained,
    PlcCommandFailed,
    ReleaseBlocked,
    SignatureProblem,
    StepDataInvalid,
    StepNotReady,
    StepOutOfOrder,
)
from hmi.batch.model import (
    ACTIVE_STATUSES,
    BatchInfo,
    BatchRecord,
    BatchStatus,
    CurrentStep,
    DeviationInfo,
    DeviationKind,
    DeviationStatus,
    ParameterChange,
    PlcCommandRecord,
    RecordedValue,
    StepRecord,
    StepStatus,
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
from hmi.batch.training import is_trained
from hmi.clock import Clock, from_utc_text, to_utc_text
from hmi.db import read_only
from hmi.plc.errors import (
    PlcCommandNotConfirmed,
    PlcCommandRejected,
    PlcError,
    PlcNotConnected,
    PlcValueRejected,
    PlcWriteNotConfirmed,
    PlcWriteRejected,
)
from hmi.plc.gateway import PlcGateway
from hmi.plc.types import (
    COMM_LOSS_ALARM,
    ConnectionState,
    ConnectionStateChanged,
    TagUpdate,
    TagValue,
    TagValuesChanged,
)
from hmi.recipe.errors import RecipeIntegrityError
from hmi.recipe.model import (
    ChargeStep,
    CheckStep,
    DischargeStep,
    Parameter,
    Recipe,
    RunStep,
    SampleStep,
    SetParametersStep,
    SignatureStep,
    Step,
    WaitStep,
)
from hmi.recipe.service import RecipeService
from hmi.recipe.tags import PLC_TAGS
from hmi.recipe.units import convert

log = logging.getLogger(__name__)

BATCH_RECORD = "batch"
STEP_RECORD = "batch_step"
DEVIATION_RECORD = "batch_deviation"

#: PackML states in which the drum may be turning under a batch's control.
RUNNING_STATES = frozenset({"Starting", "Execute", "Unholding", "Holding", "Held", "Completing"})
HOLDABLE_STATES = frozenset({"Starting", "Execute", "Unholding"})

_STATE_POLL_S = 0.02


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


def _dt(value: object) -> datetime | None:
    return None if value is None else from_utc_text(str(value))


def _plain(value: Any) -> Any:
    """Data as canonical JSON accepts it: floats become decimal text."""
    if isinstance(value, float):
        return str(Decimal(repr(value)))
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    return value


def _decimal(value: TagValue | Decimal | str | None, what: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise StepDataInvalid(f"{what}: expected a number, got {value!r}")
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())
    except InvalidOperation:
        raise StepDataInvalid(f"{what}: expected a number, got {value!r}") from None
    if not number.is_finite():
        raise StepDataInvalid(f"{what}: expected a finite number, got {value!r}")
    return number


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(Decimal(repr(value)))
    return str(value)


def _digest(content: Any) -> str:
    return hashlib.sha256(canonical.canonical_bytes(_plain(content))).hexdigest()


@dataclass
class _Value:
    """A value about to be recorded with a step."""

    name: str
    value: str
    source: str
    unit: str | None = None
    low: str | None = None
    high: str | None = None
    in_limits: bool | None = None


@dataclass
class _DeviationSpec:
    kind: DeviationKind
    description: str
    parameter: str | None = None
    expected: str | None = None
    actual: str | None = None
    unit: str | None = None
    critical: bool = False
    requires_cosign: bool = False
    alarm_id: int | None = None
    action: Mapping[str, Any] | None = None
    reason: tuple[str, str, str] | None = None  # code, text, user


@dataclass
class _Monitored:
    name: str
    parameter: Parameter
    tag: str
    low: Decimal
    high: Decimal


@dataclass
class _RunContext:
    batch_id: str
    step_index: int
    step_id: str
    status: BatchStatus
    monitored: list[_Monitored]
    open_excursions: dict[str, str] = field(default_factory=dict)


# -- the engine ----------------------------------------------------------------------------


class BatchEngine:
    """Start, execute, hold, resume, abort, review and release batches; recover after a crash."""

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
    ) -> None:
        self.engine = engine
        self.audit = audit
        self.clock = clock
        self.sessions = sessions
        self.signatures = signatures
        self.plc = plc
        self.recipes = recipes
        self.settings = settings or BatchSettings()
        self.alarms = alarms
        self._recipe_cache: dict[tuple[str, int], Recipe] = {}
        self._context_version = 0
        self._on_deviation: list[Callable[[DeviationInfo], None]] = []
        if alarms is not None:
            alarms.subscribe(self._on_alarm)
            alarms.context_provider = self.active_context

    @property
    def terminal_id(self) -> str:
        return self.audit.terminal_id

    @property
    def gateway(self) -> PlcGateway:
        """The PLC; an engine built without one (record queries) refuses equipment steps."""
        if self.plc is None:
            raise PlcCommandFailed("this terminal has no PLC connection configured")
        return self.plc

    def on_deviation(self, listener: Callable[[DeviationInfo], None]) -> None:
        """Call ``listener`` after a deviation is opened (the TUI shows it; benchmarks time it)."""
        self._on_deviation.append(listener)

    # ======================================================================== start

    def start_batch(
        self, session: Any, recipe_id: str, version: int, batch_number: str
    ) -> BatchInfo:
        """Start a batch of the effective recipe version ``recipe_id`` v``version``.

        Raises :class:`BatchNumberInvalid`, :class:`BatchNumberTaken`, :class:`NotTrained`,
        :class:`BatchStateError` (another batch runs on this terminal) or the recipe service's
        errors (version not effective, integrity); every refusal is recorded.
        """
        number = (batch_number or "").strip().upper()
        entity = (BATCH_RECORD, number or "?")
        actor = self.sessions.authorize(
            session,
            "batch.start",
            entity=entity,
            details={"recipe_id": recipe_id, "version": version},
        )
        base = {"recipe_id": recipe_id, "version": version}
        if not self.settings.batch_number_ok(number):
            self._refuse(actor, "batch.start.refused", entity, "batch number format", base)
            raise BatchNumberInvalid(
                f"batch number {batch_number!r} does not have the site's format"
                f" ({self.settings.batch_number_pattern})"
            )
        try:
            stored = self.recipes.runnable(recipe_id, version)
        except Exception as exc:
            self._refuse(actor, "batch.start.refused", entity, str(exc), base)
            raise
        recipe = stored.recipe
        with read_only(self.engine) as conn:
            trained = is_trained(conn, actor.user_id, recipe_id, version)
        if not trained:
            self._refuse(actor, "batch.start.refused", entity, "not trained", base)
            raise NotTrained(
                f"{actor.user_id} is not recorded as trained on {recipe_id} v{version};"
                " a supervisor must record the training first"
            )
        now = to_utc_text(self.clock.now())
        refusal: BatchError | None = None
        with self.audit.transaction() as conn:
            taken = conn.execute(select(batch.c.batch_id).where(batch.c.batch_id == number)).first()
            other = conn.execute(
                select(batch.c.batch_id).where(
                    batch.c.terminal_id == self.terminal_id,
                    batch.c.status.in_([s.value for s in ACTIVE_STATUSES]),
                )
            ).first()
            if taken is not None:
                refusal = BatchNumberTaken(f"batch number {number} is already used on this site")
            elif other is not None:
                refusal = BatchStateError(
                    f"batch {other[0]} is still in progress on this terminal; finish or abort it"
                )
            if refusal is not None:
                self.audit.record(
                    conn,
                    "batch.start.refused",
                    actor,
                    entity=entity,
                    reason=str(refusal),
                    details=base,
                )
            else:
                conn.execute(
                    insert(batch).values(
                        batch_id=number,
                        recipe_id=recipe.id,
                        recipe_version=recipe.version,
                        recipe_sha256=stored.info.sha256,
                        recipe_name=recipe.name,
                        product=recipe.product,
                        status=BatchStatus.RUNNING.value,
                        current_step=0,
                        step_count=len(recipe.steps),
                        terminal_id=self.terminal_id,
                        started_by=actor.user_id,
                        started_at=now,
                        session_id=actor.session_id,
                    )
                )
                self.audit.record(
                    conn,
                    "batch.started",
                    actor,
                    entity=entity,
                    field="status",
                    new_value=BatchStatus.RUNNING.value,
                    details={
                        "recipe_id": recipe.id,
                        "recipe_version": recipe.version,
                        "recipe_sha256": stored.info.sha256,
                        "steps": len(recipe.steps),
                    },
                )
        if refusal is not None:
            raise refusal
        self._recipe_cache[(recipe.id, recipe.version)] = recipe
        self._changed()
        return self.get(number)

    # ======================================================================== queries

    def get(self, batch_id: str) -> BatchInfo:
        with read_only(self.engine) as conn:
            return _info(self._batch_row(conn, batch_id))

    def list_batches(self, *, status: BatchStatus | None = None) -> list[BatchInfo]:
        query = select(batch).order_by(batch.c.started_at.desc(), batch.c.batch_id)
        if status is not None:
            query = query.where(batch.c.status == status.value)
        with read_only(self.engine) as conn:
            return [_info(r) for r in conn.execute(query).mappings()]

    def active_batch(self) -> BatchInfo | None:
        """The batch in progress (running or held) on this terminal, if any."""
        with read_only(self.engine) as conn:
            row = self._active_row(conn)
        return None if row is None else _info(row)

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
            info = _info(row)
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
            rows = conn.execute(
                select(deviation).where(deviation.c.batch_id == batch_id).order_by(deviation.c.seq)
            ).mappings()
            return [_deviation(r) for r in rows]

    def deviation(self, deviation_id: str) -> DeviationInfo:
        with read_only(self.engine) as conn:
            return _deviation(self._deviation_row(conn, deviation_id))

    def values(self, batch_id: str) -> list[RecordedValue]:
        with read_only(self.engine) as conn:
            return self._values(conn, batch_id)

    def record(self, batch_id: str) -> BatchRecord:
        """The whole electronic batch record, for screens, ``hmi batch show`` and copies."""
        with read_only(self.engine) as conn:
            info = _info(self._batch_row(conn, batch_id))
            step_rows = {
                int(r["step_index"]): r
                for r in conn.execute(
                    select(batch_step).where(batch_step.c.batch_id == batch_id)
                ).mappings()
            }
            values = self._values(conn, batch_id)
            deviations = [
                _deviation(r)
                for r in conn.execute(
                    select(deviation)
                    .where(deviation.c.batch_id == batch_id)
                    .order_by(deviation.c.seq)
                ).mappings()
            ]
            commands = [
                _command(r)
                for r in conn.execute(
                    select(plc_command)
                    .where(plc_command.c.batch_id == batch_id)
                    .order_by(plc_command.c.id)
                ).mappings()
            ]
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
                    started_at=None if row is None else _dt(row["started_at"]),
                    started_by=None if row is None else row["started_by"],
                    completed_at=None if row is None else _dt(row["completed_at"]),
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

    # ======================================================================== records to sign

    def step_record(self, batch_id: str, step_id: str, data: Mapping[str, Any]) -> RecordRef:
        """What a step signature covers: the batch, the pinned recipe, the step and its data."""
        info = self.get(batch_id)
        recipe = self.recipe_of(info)
        index = _step_index(recipe, step_id)
        content = {
            "batch_id": batch_id,
            "recipe_sha256": info.recipe_sha256,
            "step_index": index,
            "step_id": step_id,
            "data": _plain(dict(data)),
        }
        return RecordRef(STEP_RECORD, f"{batch_id}/{step_id}", _digest(content))

    def deviation_record(self, deviation_id: str) -> RecordRef:
        """What a deviation's request and co-signature cover (its facts and its reason)."""
        return _deviation_ref(self.deviation(deviation_id))

    def batch_record_ref(self, batch_id: str) -> RecordRef:
        """What QA's review, release and rejection signatures cover: the whole batch record."""
        with read_only(self.engine) as conn:
            return self._batch_ref(conn, batch_id)

    # ======================================================================== steps

    async def start_step(self, session: Any, batch_id: str, step_id: str) -> CurrentStep:
        """Begin the current step where the equipment takes part: tare the scale for a
        load-cell charge, or start the blender for a run (Reset first if needed)."""
        actor = self.sessions.authorize(
            session,
            "batch.step.complete",
            entity=(BATCH_RECORD, batch_id),
            details={"step_id": step_id, "operation": "start"},
        )
        info, recipe, index = self._ready_for_step(actor, batch_id, step_id, operation="start")
        step = recipe.steps[index]
        with read_only(self.engine) as conn:
            existing = self._step_row(conn, batch_id, index)
        if existing is not None:
            self._refuse(
                actor,
                "batch.step.refused",
                (BATCH_RECORD, batch_id),
                "step already started",
                {"step_id": step_id},
            )
            raise BatchStateError(f"step '{step.title}' has already been started")
        if isinstance(step, ChargeStep) and step.weighing == "load_cell":
            tare = await self._read("weight")
            weight = _decimal(tare.value, "weight")
            with self.audit.transaction() as conn:
                self._insert_step(conn, actor, batch_id, index, step, StepStatus.RUNNING)
                self._insert_values(
                    conn,
                    actor,
                    batch_id,
                    index,
                    step.id,
                    [_Value("tare", _text(weight), "plc", unit=tare.unit or "kg")],
                )
                self.audit.record(
                    conn,
                    "batch.step.started",
                    actor,
                    entity=(BATCH_RECORD, batch_id),
                    details={"step_id": step.id, "step_index": index, "tare": str(weight)},
                )
        elif isinstance(step, RunStep):
            await self._start_run(actor, info, index, step)
        else:
            self._refuse(
                actor,
                "batch.step.refused",
                (BATCH_RECORD, batch_id),
                "step has no start",
                {"step_id": step_id},
            )
            raise StepDataInvalid(
                f"step '{step.title}' ({step.kind}) is completed directly; it has no start"
            )
        self._changed()
        current = self.current_step(batch_id)
        assert current is not None
        return current

    async def _start_run(self, actor: Actor, info: BatchInfo, index: int, step: RunStep) -> None:
        state = await self._state()
        if state == "Aborted":
            await self._command(actor, info.batch_id, index, "clear")
            state = await self._wait_state({"Stopped"})
        if state in ("Stopped", "Complete"):
            await self._command(actor, info.batch_id, index, "reset")
            state = await self._wait_state({"Idle"})
        if state != "Idle":
            raise PlcCommandFailed(
                f"the blender is in state {state}; it must be Idle to start the blend"
            )

        def started(conn: Connection) -> None:
            self._insert_step(conn, actor, info.batch_id, index, step, StepStatus.RUNNING)
            self.audit.record(
                conn,
                "batch.step.started",
                actor,
                entity=(BATCH_RECORD, info.batch_id),
                details={"step_id": step.id, "step_index": index},
            )

        await self._command(actor, info.batch_id, index, "start", then=started)

    async def complete_step(
        self,
        session: Any,
        batch_id: str,
        step_id: str,
        data: Mapping[str, Any] | None = None,
        *,
        signatures: Sequence[Signature] = (),
    ) -> CurrentStep | None:
        """Complete the current step with its data; return the next step (``None`` at the end).

        ``data`` depends on the step: ``confirmed`` (check), ``lot`` and for a manual weighing
        ``quantity`` (charge), ``results`` by sample ID (sample), ``container_id`` (discharge).
        ``signatures`` are those the step asks for, made over :meth:`step_record` with the same
        data: a second-person check is the performer's signature (``performed``) and a
        co-signature (``verified``) by the recipe's role; a signature step needs the session
        user's signature with the step's meaning.
        """
        given = dict(data or {})
        actor = self.sessions.authorize(
            session,
            "batch.step.complete",
            entity=(BATCH_RECORD, batch_id),
            details={"step_id": step_id},
        )
        info, recipe, index = self._ready_for_step(actor, batch_id, step_id, operation="complete")
        step = recipe.steps[index]
        with read_only(self.engine) as conn:
            step_row = self._step_row(conn, batch_id, index)
        try:
            self._check_signatures_for_step(actor, info, step, given, signatures)
            values, deviations = await self._step_outcome(actor, info, index, step, given, step_row)
        except BatchError as exc:
            self._refuse(
                actor,
                "batch.step.refused",
                (BATCH_RECORD, batch_id),
                str(exc),
                {"step_id": step_id, "error": type(exc).__name__},
            )
            raise
        if isinstance(step, SetParametersStep):
            values += await self._write_parameters(actor, info, index, step, recipe)
        elif isinstance(step, DischargeStep):
            await self._command(actor, batch_id, index, "discharge")
        data_sha = _digest(given)
        with self.audit.transaction() as conn:
            row = self._batch_row(conn, batch_id)
            if int(row["current_step"]) != index or row["status"] != BatchStatus.RUNNING.value:
                # Another kiosk or an earlier attempt got there first: nothing is done twice.
                self.audit.record(
                    conn,
                    "batch.step.refused",
                    actor,
                    entity=(BATCH_RECORD, batch_id),
                    reason="step already completed",
                    details={"step_id": step_id},
                )
                refused = True
            else:
                refused = False
                self._finish_step(
                    conn,
                    actor,
                    info,
                    index,
                    step,
                    StepStatus.COMPLETED,
                    values,
                    deviations,
                    data_sha,
                    signatures,
                    exists=step_row is not None,
                )
        if refused:
            raise StepOutOfOrder(f"step '{step.title}' was already completed")
        self._changed()
        return self.current_step(batch_id)

    def _ready_for_step(
        self, actor: Actor, batch_id: str, step_id: str, *, operation: str
    ) -> tuple[BatchInfo, Recipe, int]:
        """Load the batch and check order, state, training and open deviations (recorded)."""
        entity = (BATCH_RECORD, batch_id)
        with read_only(self.engine) as conn:
            row = conn.execute(select(batch).where(batch.c.batch_id == batch_id)).mappings().first()
            if row is None:
                raise BatchNotFound(f"there is no batch {batch_id}")
            info = _info(row)
            blocking = self._blocking(conn, batch_id)
            trained = is_trained(conn, actor.user_id, info.recipe_id, info.recipe_version)
        recipe = self.recipe_of(info)
        details: dict[str, Any] = {"step_id": step_id, "operation": operation}
        if info.status is BatchStatus.HELD:
            self._refuse(actor, "batch.step.refused", entity, "batch held", details)
            raise BatchHeld(
                f"batch {batch_id} is on hold ({info.hold_reason or 'no reason'});"
                " a supervisor must resume it"
            )
        if info.status is not BatchStatus.RUNNING:
            self._refuse(actor, "batch.step.refused", entity, f"batch {info.status}", details)
            raise BatchStateError(f"batch {batch_id} is {info.status.label}; no step can run")
        expected = recipe.steps[info.current_step] if info.current_step < info.step_count else None
        if expected is None or expected.id != step_id:
            details["current_step"] = None if expected is None else expected.id
            self._refuse(actor, "batch.step.refused", entity, "out of order", details)
            want = "no step (all done)" if expected is None else f"'{expected.title}'"
            raise StepOutOfOrder(
                f"steps run strictly in order: the current step is {want}, not '{step_id}'"
            )
        if not trained:
            self._refuse(actor, "batch.step.refused", entity, "not trained", details)
            raise NotTrained(
                f"{actor.user_id} is not recorded as trained on {info.recipe_id}"
                f" v{info.recipe_version}"
            )
        if blocking:
            details["deviations"] = list(blocking)
            self._refuse(actor, "batch.step.refused", entity, "deviation open", details)
            raise DeviationOpen(
                "give the reason (and co-signature where needed) for deviation"
                f" {', '.join(blocking)} before continuing",
                blocking,
            )
        return info, recipe, info.current_step

    def _check_signatures_for_step(
        self,
        actor: Actor,
        info: BatchInfo,
        step: Step,
        data: Mapping[str, Any],
        signatures: Sequence[Signature],
    ) -> None:
        verifier_role: str | None = None
        if isinstance(step, CheckStep | ChargeStep):
            verifier_role = step.verified_by_role
        if isinstance(step, SignatureStep):
            ref = self.step_record(info.batch_id, step.id, data)
            mine = [s for s in signatures if s.cosign_of is None]
            if len(mine) != 1:
                raise SignatureProblem(f"step '{step.title}' needs one signature ({step.meaning})")
            self._require_valid(mine[0], ref, Meaning(step.meaning))
            if mine[0].signer_id != actor.user_id or mine[0].signer_role.value != step.role:
                raise SignatureProblem(
                    f"step '{step.title}' must be signed by the logged-in {step.role}"
                )
            return
        if verifier_role is None:
            if signatures:
                raise SignatureProblem(f"step '{step.title}' does not take signatures")
            return
        ref = self.step_record(info.batch_id, step.id, data)
        performed = [s for s in signatures if s.cosign_of is None]
        if len(performed) != 1:
            raise SignatureProblem(
                f"step '{step.title}' needs the performer's signature and a second person's"
                f" verification ({verifier_role})"
            )
        request = performed[0]
        self._require_valid(request, ref, Meaning.PERFORMED)
        if request.signer_id != actor.user_id:
            raise SignatureProblem("the performer's signature must be the logged-in user's")
        verified = [s for s in signatures if s.cosign_of == request.signature_id]
        if len(verified) != 1:
            raise SignatureProblem(
                f"step '{step.title}' needs verification by a second person ({verifier_role})"
            )
        check = verified[0]
        self._require_valid(check, ref, Meaning.VERIFIED)
        if check.signer_id == request.signer_id:
            raise CosignRefused("the verification must come from a different person")
        if check.signer_role.value != verifier_role:
            raise SignatureProblem(
                f"the verification must be signed by a {verifier_role},"
                f" not a {check.signer_role.value}"
            )

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

    async def _step_outcome(
        self,
        actor: Actor,
        info: BatchInfo,
        index: int,
        step: Step,
        data: Mapping[str, Any],
        step_row: Mapping[str, Any] | None,
    ) -> tuple[list[_Value], list[_DeviationSpec]]:
        """Validate the data, read the PLC where the step needs it; nothing is written yet."""
        values: list[_Value] = []
        deviations: list[_DeviationSpec] = []
        if isinstance(step, CheckStep):
            if data.get("confirmed") is not True:
                raise StepDataInvalid(f"confirm '{step.title}' to complete it")
            values.append(_Value("confirmed", "true", "entered"))
        elif isinstance(step, ChargeStep):
            lot = str(data.get("lot") or "").strip()
            if step.lot_required and not lot:
                raise StepDataInvalid(f"enter the material lot number for '{step.material}'")
            if lot:
                values.append(_Value("lot", lot, "entered"))
            low, high = step.acceptance_range()
            if step.weighing == "manual":
                quantity = _decimal(data.get("quantity"), "quantity")
                source = "entered"
            else:
                if step_row is None:
                    raise StepNotReady(f"tare the scale first: start step '{step.title}'")
                tare = await self._tare(info.batch_id, index)
                stable = await self._read("weight_stable")
                if stable.value is not True:
                    raise StepNotReady("the scale is not stable yet; wait and try again")
                gross_update = await self._read("weight")
                gross = _decimal(gross_update.value, "weight")
                quantity = convert(gross - tare, "kg", step.unit)
                values.append(_Value("gross", _text(gross), "plc", unit="kg"))
                source = "computed"
            ok = low <= quantity <= high
            values.append(
                _Value("quantity", _text(quantity), source, step.unit, str(low), str(high), ok)
            )
            if not ok:
                deviations.append(
                    _DeviationSpec(
                        DeviationKind.OUT_OF_TOLERANCE,
                        f"{step.material}: {quantity} {step.unit} charged,"
                        f" accepted {low}..{high} {step.unit}",
                        parameter="quantity",
                        expected=f"{low}..{high}",
                        actual=str(quantity),
                        unit=step.unit,
                    )
                )
        elif isinstance(step, SetParametersStep):
            pass  # written after validation (intent, write, result)
        elif isinstance(step, RunStep):
            if step_row is None:
                raise StepNotReady(f"start the blend first (step '{step.title}')")
            state = await self._state()
            if state in ("Execute", "Starting", "Completing", "Unholding"):
                elapsed = await self._read("elapsed_time")
                raise StepNotReady(f"the blend is still running ({_text(elapsed.value)} s elapsed)")
            if state != "Complete":
                raise StepNotReady(
                    f"the blender is {state}: the blend did not complete; a supervisor may"
                    " override the step or abort the batch"
                )
            for tag in ("elapsed_time", "revolutions"):
                update_ = await self._read(tag)
                values.append(_Value(tag, _text(update_.value), "plc", unit=update_.unit or None))
        elif isinstance(step, WaitStep):
            update_ = await self._read(step.tag)
            current = update_.value
            comparable: bool | Decimal | str
            comparable = current if isinstance(current, bool | str) else _decimal(current, step.tag)
            if not step.is_met(comparable):
                raise StepNotReady(
                    f"'{step.title}': {step.tag} is {_text(current)}, waiting for"
                    f" {step.condition.replace('_', ' ')} {_text(step.target_for_plc())}"
                )
            values.append(_Value(step.tag, _text(current), "plc", unit=update_.unit or None))
        elif isinstance(step, SampleStep):
            results = data.get("results")
            if not isinstance(results, Mapping):
                raise StepDataInvalid(
                    f"enter a result for each sample: {', '.join(step.sample_ids)}"
                )
            missing = [s for s in step.sample_ids if s not in results]
            extra = [s for s in results if s not in step.sample_ids]
            if missing or extra:
                raise StepDataInvalid(
                    f"enter exactly the samples {', '.join(step.sample_ids)}"
                    + (f"; missing {', '.join(missing)}" if missing else "")
                    + (f"; unknown {', '.join(map(str, extra))}" if extra else "")
                )
            for sample_id in step.sample_ids:
                value = _decimal(results[sample_id], f"result {sample_id}")
                ok = step.accepts(value)
                values.append(
                    _Value(
                        f"result:{sample_id}",
                        _text(value),
                        "entered",
                        step.unit,
                        str(step.low),
                        str(step.high),
                        ok,
                    )
                )
                if not ok:
                    deviations.append(
                        _DeviationSpec(
                            DeviationKind.OUT_OF_TOLERANCE,
                            f"sample {sample_id}: {value} {step.unit},"
                            f" accepted {step.low}..{step.high}",
                            parameter=f"result:{sample_id}",
                            expected=f"{step.low}..{step.high}",
                            actual=str(value),
                            unit=step.unit,
                        )
                    )
        elif isinstance(step, DischargeStep):
            container = str(data.get("container_id") or "").strip()
            if step.container_id_required and not container:
                raise StepDataInvalid("enter the ID of the container the blend goes into")
            if container:
                values.append(_Value("container_id", container, "entered"))
        elif isinstance(step, SignatureStep):
            pass
        return values, deviations

    async def _tare(self, batch_id: str, index: int) -> Decimal:
        with read_only(self.engine) as conn:
            found = conn.execute(
                select(batch_value.c.value)
                .where(
                    batch_value.c.batch_id == batch_id,
                    batch_value.c.step_index == index,
                    batch_value.c.name == "tare",
                )
                .order_by(batch_value.c.id.desc())
            ).first()
        if found is None:
            raise StepNotReady("the scale was not tared for this step")
        return Decimal(str(found[0]))

    async def _write_parameters(
        self, actor: Actor, info: BatchInfo, index: int, step: SetParametersStep, recipe: Recipe
    ) -> list[_Value]:
        """Write each setpoint (intent, write, confirmed read-back, result); return the values."""
        written: list[_Value] = []
        for name in step.parameters:
            parameter = recipe.parameter(name)
            tag = parameter.write_tag
            assert tag is not None
            confirmed = await self._write(
                actor, info.batch_id, index, tag, parameter.setpoint_for_plc()
            )
            low, high = parameter.limits_for_tag(tag)
            value = _decimal(confirmed.value, tag)
            written.append(
                _Value(
                    name,
                    _text(value),
                    "plc",
                    _tag_unit(tag),
                    str(low),
                    str(high),
                    low <= value <= high,
                )
            )
        return written

    def _finish_step(
        self,
        conn: Connection,
        actor: Actor,
        info: BatchInfo,
        index: int,
        step: Step,
        status: StepStatus,
        values: Sequence[_Value],
        deviations: Sequence[_DeviationSpec],
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
        values: Sequence[_Value],
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

    # ======================================================================== corrections

    def correct_value(
        self, session: Any, batch_id: str, value_id: int, new_value: str, reason: str
    ) -> RecordedValue:
        """Correct an entered value: a new row points to the one it replaces (who, when, why).

        Only values a person entered can be corrected; PLC readings are originals. A corrected
        value outside its limits opens a deviation.
        """
        entity = (BATCH_RECORD, batch_id)
        actor = self.sessions.authorize(
            session, "batch.step.complete", entity=entity, details={"value_id": value_id}
        )
        why = self._reason_text(actor, entity, reason, "batch.value.correct.refused")
        refusal: str | None = None
        with self.audit.transaction() as conn:
            info = _info(self._batch_row(conn, batch_id))
            old = (
                conn.execute(
                    select(batch_value).where(
                        batch_value.c.id == value_id, batch_value.c.batch_id == batch_id
                    )
                )
                .mappings()
                .first()
            )
            replaced = conn.execute(
                select(batch_value.c.id).where(batch_value.c.replaces_id == value_id)
            ).first()
            if old is None:
                refusal = f"batch {batch_id} has no value number {value_id}"
            elif info.status in (BatchStatus.RELEASED, BatchStatus.REJECTED):
                refusal = f"batch {batch_id} is {info.status.label}; its record is closed"
            elif old["source"] != "entered":
                refusal = "a PLC reading is an original record and cannot be corrected"
            elif replaced is not None:
                refusal = f"value {value_id} was already corrected by value {replaced[0]}"
            if refusal is not None:
                self.audit.record(
                    conn,
                    "batch.value.correct.refused",
                    actor,
                    entity=entity,
                    reason=refusal,
                    details={"value_id": value_id},
                )
            else:
                assert old is not None
                text = new_value.strip()
                in_limits: bool | None = None
                if old["low"] is not None and old["high"] is not None:
                    number = _decimal(text, str(old["name"]))
                    text = _text(number)
                    in_limits = Decimal(old["low"]) <= number <= Decimal(old["high"])
                result = conn.execute(
                    insert(batch_value).values(
                        batch_id=batch_id,
                        step_index=old["step_index"],
                        step_id=old["step_id"],
                        name=old["name"],
                        value=text,
                        unit=old["unit"],
                        source="entered",
                        low=old["low"],
                        high=old["high"],
                        in_limits=None if in_limits is None else int(in_limits),
                        recorded_by=actor.user_id,
                        recorded_at=to_utc_text(self.clock.now()),
                        session_id=actor.session_id,
                        replaces_id=value_id,
                        reason=why,
                    )
                )
                key = result.inserted_primary_key
                assert key is not None
                new_id = int(key[0])
                self.audit.record(
                    conn,
                    "batch.value.corrected",
                    actor,
                    entity=entity,
                    field=str(old["name"]),
                    old_value=str(old["value"]),
                    new_value=text,
                    reason=why,
                    details={
                        "value_id": new_id,
                        "replaces_id": value_id,
                        "step_id": old["step_id"],
                    },
                )
                if in_limits is False:
                    self._open_deviation(
                        conn,
                        actor,
                        batch_id,
                        int(old["step_index"]),
                        str(old["step_id"]),
                        _DeviationSpec(
                            DeviationKind.OUT_OF_TOLERANCE,
                            f"corrected {old['name']}: {text} {old['unit'] or ''},"
                            f" accepted {old['low']}..{old['high']}",
                            parameter=str(old["name"]),
                            expected=f"{old['low']}..{old['high']}",
                            actual=text,
                            unit=old["unit"],
                        ),
                    )
        if refusal is not None:
            raise StepDataInvalid(refusal)
        return next(v for v in self.values(batch_id) if v.value_id == new_id)

    # ======================================================================== parameters

    async def change_parameter(
        self,
        session: Any,
        batch_id: str,
        name: str,
        value: Decimal | str,
        reason: str,
        *,
        reason_code: str = "PROCESS",
    ) -> ParameterChange:
        """Change a parameter's setpoint on the PLC during the batch.

        Within the recipe's limits the change is recorded (old, new, reason) and written.
        Outside them it becomes a deviation that needs a supervisor's co-signature
        (:meth:`cosign_deviation`), after which the value is written.
        """
        entity = (BATCH_RECORD, batch_id)
        actor = self.sessions.authorize(
            session, "parameter.change", entity=entity, details={"parameter": name}
        )
        why = self._reason_text(actor, entity, reason, "batch.parameter.change.refused")
        self._reason_code(actor, entity, reason_code, "batch.parameter.change.refused")
        info = self.get(batch_id)
        recipe = self.recipe_of(info)
        if info.status not in ACTIVE_STATUSES:
            self._refuse(
                actor,
                "batch.parameter.change.refused",
                entity,
                "batch not active",
                {"parameter": name},
            )
            raise BatchStateError(f"batch {batch_id} is {info.status.label}")
        parameter = recipe.parameters.get(name)
        if parameter is None or parameter.write_tag is None:
            self._refuse(
                actor,
                "batch.parameter.change.refused",
                entity,
                "not a settable parameter",
                {"parameter": name},
            )
            raise StepDataInvalid(f"{name!r} is not a parameter of this recipe that can be set")
        wanted = _decimal(value, name)
        old = await self._read(parameter.write_tag)
        old_value = _plc_to_parameter(parameter, old.value)
        index = min(info.current_step, info.step_count - 1)
        step_id = recipe.steps[index].id
        if not parameter.within_limits(wanted):
            with self.audit.transaction() as conn:
                spec = _DeviationSpec(
                    DeviationKind.PARAMETER_CHANGE,
                    f"{name}: change to {wanted} {parameter.unit} requested, limits"
                    f" {parameter.low}..{parameter.high} {parameter.unit}",
                    parameter=name,
                    expected=f"{parameter.low}..{parameter.high}",
                    actual=str(wanted),
                    unit=parameter.unit,
                    critical=parameter.critical,
                    requires_cosign=True,
                    action={"type": "parameter", "name": name, "value": str(wanted)},
                    reason=(reason_code, why, actor.user_id),
                )
                deviation_id = self._open_deviation(conn, actor, batch_id, index, step_id, spec)
                self.audit.record(
                    conn,
                    "batch.parameter.change_requested",
                    actor,
                    entity=entity,
                    field=name,
                    old_value=str(old_value),
                    new_value=str(wanted),
                    reason=why,
                    details={"deviation_id": deviation_id, "outside_limits": True},
                )
            self._changed()
            return ParameterChange(False, deviation_id, None)
        confirmed = await self._apply_parameter(
            actor, info, index, step_id, parameter, name, old_value, wanted, why
        )
        return ParameterChange(True, None, confirmed)

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
        tag_value = parameter.in_unit(wanted, _tag_unit(parameter.write_tag))
        result: dict[str, str] = {}

        def applied(conn: Connection) -> None:
            self._insert_values(
                conn,
                actor,
                info.batch_id,
                index,
                step_id,
                [
                    _Value(
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
                },
            )

        confirmed = await self._write(
            actor,
            info.batch_id,
            index,
            parameter.write_tag,
            tag_value,
            then=applied,
            capture=result,
        )
        self._changed()
        return _text(confirmed.value)

    # ======================================================================== deviations

    def give_reason(self, session: Any, deviation_id: str, code: str, text: str) -> DeviationInfo:
        """Explain a deviation with a reason code from the site's list and free text."""
        entity = (DEVIATION_RECORD, deviation_id)
        actor = self.sessions.authorize(session, "deviation.reason", entity=entity)
        why = self._reason_text(actor, entity, text, "deviation.reason.refused")
        code = self._reason_code(actor, entity, code, "deviation.reason.refused")
        refusal: str | None = None
        with self.audit.transaction() as conn:
            row = self._deviation_row(conn, deviation_id)
            if row["reason_text"] is not None:
                refusal = f"deviation {deviation_id} already has a reason"
                self.audit.record(
                    conn, "deviation.reason.refused", actor, entity=entity, reason=refusal
                )
            else:
                status = (
                    DeviationStatus.AWAITING_COSIGN
                    if row["requires_cosign"]
                    else DeviationStatus.CLOSED
                )
                conn.execute(
                    update(deviation)
                    .where(deviation.c.deviation_id == deviation_id)
                    .values(
                        reason_code=code,
                        reason_text=why,
                        reason_by=actor.user_id,
                        reason_at=to_utc_text(self.clock.now()),
                        status=status.value,
                    )
                )
                self.audit.record(
                    conn,
                    "deviation.reason_given",
                    actor,
                    entity=entity,
                    field="status",
                    old_value=row["status"],
                    new_value=status.value,
                    reason=why,
                    details={"batch_id": row["batch_id"], "reason_code": code},
                )
        if refusal is not None:
            raise BatchStateError(refusal)
        self._changed()
        return self.deviation(deviation_id)

    def request_override(
        self,
        session: Any,
        batch_id: str,
        step_id: str,
        code: str,
        text: str,
        data: Mapping[str, Any] | None = None,
    ) -> DeviationInfo:
        """Ask to complete the current step without its condition being met (e.g. a wait that
        cannot be satisfied); takes effect once a supervisor co-signs the deviation."""
        return self._request_step_deviation(
            session, batch_id, step_id, code, text, DeviationKind.OVERRIDE, data
        )

    def request_skip(
        self, session: Any, batch_id: str, step_id: str, code: str, text: str
    ) -> DeviationInfo:
        """Ask to skip the current step; takes effect once a supervisor co-signs."""
        return self._request_step_deviation(
            session, batch_id, step_id, code, text, DeviationKind.SKIP, None
        )

    def _request_step_deviation(
        self,
        session: Any,
        batch_id: str,
        step_id: str,
        code: str,
        text: str,
        kind: DeviationKind,
        data: Mapping[str, Any] | None,
    ) -> DeviationInfo:
        entity = (BATCH_RECORD, batch_id)
        actor = self.sessions.authorize(
            session,
            "override.request",
            entity=entity,
            details={"step_id": step_id, "kind": kind.value},
        )
        why = self._reason_text(actor, entity, text, f"batch.{kind.value}.refused")
        code = self._reason_code(actor, entity, code, f"batch.{kind.value}.refused")
        info = self.get(batch_id)
        recipe = self.recipe_of(info)
        current = recipe.steps[info.current_step] if info.current_step < info.step_count else None
        refusal: BatchError | None = None
        if info.status not in ACTIVE_STATUSES:
            refusal = BatchStateError(f"batch {batch_id} is {info.status.label}")
        elif current is None or current.id != step_id:
            refusal = StepOutOfOrder(
                f"only the current step can be {kind.value}d"
                f" (current: {'none' if current is None else current.id})"
            )
        if refusal is not None:
            self._refuse(
                actor, f"batch.{kind.value}.refused", entity, str(refusal), {"step_id": step_id}
            )
            raise refusal
        assert current is not None
        with self.audit.transaction() as conn:
            pending = conn.execute(
                select(deviation.c.deviation_id).where(
                    deviation.c.batch_id == batch_id,
                    deviation.c.kind.in_([DeviationKind.OVERRIDE.value, DeviationKind.SKIP.value]),
                    deviation.c.step_index == info.current_step,
                    deviation.c.action_done == 0,
                    deviation.c.status != DeviationStatus.CLOSED.value,
                )
            ).first()
            if pending is None:
                deviation_id = self._open_deviation(
                    conn,
                    actor,
                    batch_id,
                    info.current_step,
                    step_id,
                    _DeviationSpec(
                        kind,
                        f"step '{current.title}' {kind.value} requested",
                        critical=True,
                        requires_cosign=True,
                        action={
                            "type": kind.value,
                            "step_index": info.current_step,
                            "data": _plain(dict(data or {})),
                        },
                        reason=(code, why, actor.user_id),
                    ),
                )
            else:
                deviation_id = str(pending[0])
        self._changed()
        return self.deviation(deviation_id)

    async def cosign_deviation(
        self, session: Any, deviation_id: str, request: Signature, cosignature: Signature
    ) -> DeviationInfo:
        """Close a deviation that needs the two-person rule, and carry out what it asked for.

        ``request`` is the requester's signature (meaning ``requested``) over
        :meth:`deviation_record`; ``cosignature`` is a different person's co-signature of it
        (``SignatureService.cosign``) by a role allowed to co-sign. An override or skip then
        completes the step; an out-of-limits parameter change is then written to the PLC.
        """
        entity = (DEVIATION_RECORD, deviation_id)
        actor = self.sessions.authorize(session, "override.request", entity=entity)
        info = self.deviation(deviation_id)
        ref = _deviation_ref(info)
        try:
            if info.status is not DeviationStatus.AWAITING_COSIGN:
                raise BatchStateError(
                    f"deviation {deviation_id} is {info.status.value.replace('_', ' ')};"
                    " it is not waiting for a co-signature"
                    + (" (give the reason first)" if info.status is DeviationStatus.OPEN else "")
                )
            self._require_valid(request, ref, Meaning.REQUESTED)
            if request.cosign_of is not None:
                raise SignatureProblem("the request must be a signature, not a co-signature")
            self._require_valid(cosignature, ref, Meaning.COSIGNED)
            if cosignature.cosign_of != request.signature_id:
                raise CosignRefused("the co-signature does not co-sign this request")
            if cosignature.signer_id == request.signer_id:
                raise CosignRefused("a co-signature must come from a different person")
            if not allowed(cosignature.signer_role, "override.cosign"):
                raise CosignRefused(f"a {cosignature.signer_role.value} may not co-sign deviations")
        except BatchError as exc:
            self._refuse(actor, "deviation.cosign.refused", entity, str(exc), None)
            raise
        batch_info = self.get(info.batch_id)
        recipe = self.recipe_of(batch_info)
        action = dict(info.action or {})
        now = to_utc_text(self.clock.now())
        with self.audit.transaction() as conn:
            conn.execute(
                update(deviation)
                .where(deviation.c.deviation_id == deviation_id)
                .values(
                    status=DeviationStatus.CLOSED.value,
                    request_signature_id=request.signature_id,
                    cosign_signature_id=cosignature.signature_id,
                    cosigned_by=cosignature.signer_id,
                    cosigned_at=now,
                )
            )
            self._link_signature(
                conn, info.batch_id, request, "deviation.request", deviation_id=deviation_id
            )
            self._link_signature(
                conn, info.batch_id, cosignature, "deviation.cosign", deviation_id=deviation_id
            )
            self.audit.record(
                conn,
                "deviation.cosigned",
                Actor(cosignature.signer_id, cosignature.signer_role.value, actor.session_id),
                entity=entity,
                field="status",
                old_value=info.status.value,
                new_value=DeviationStatus.CLOSED.value,
                details={
                    "batch_id": info.batch_id,
                    "requested_by": request.signer_id,
                    "request_signature_id": request.signature_id,
                    "cosign_signature_id": cosignature.signature_id,
                    "kiosk_user": actor.user_id,
                },
            )
            kind = action.get("type")
            if kind in ("override", "skip"):
                row = self._batch_row(conn, info.batch_id)
                index = int(action["step_index"])
                if int(row["current_step"]) == index and row["status"] in (
                    BatchStatus.RUNNING.value,
                    BatchStatus.HELD.value,
                ):
                    step = recipe.steps[index]
                    step_row = self._step_row(conn, info.batch_id, index)
                    data = action.get("data") or {}
                    values = [_Value(str(k), _text(v), "entered") for k, v in sorted(data.items())]
                    self._finish_step(
                        conn,
                        Actor(request.signer_id, request.signer_role.value, request.session_id),
                        _info(row),
                        index,
                        step,
                        StepStatus.OVERRIDDEN if kind == "override" else StepStatus.SKIPPED,
                        values,
                        [],
                        _digest(data),
                        [],
                        exists=step_row is not None,
                        deviation_id=deviation_id,
                    )
                conn.execute(
                    update(deviation)
                    .where(deviation.c.deviation_id == deviation_id)
                    .values(action_done=1)
                )
        if action.get("type") == "parameter":
            name = str(action["name"])
            parameter = recipe.parameter(name)
            assert parameter.write_tag is not None
            old = await self._read(parameter.write_tag)
            await self._apply_parameter(
                Actor(request.signer_id, request.signer_role.value, request.session_id),
                batch_info,
                int(info.step_index or 0),
                str(info.step_id),
                parameter,
                name,
                _plc_to_parameter(parameter, old.value),
                Decimal(str(action["value"])),
                info.reason_text or "",
                deviation_id=deviation_id,
            )
            with self.audit.transaction() as conn:
                conn.execute(
                    update(deviation)
                    .where(deviation.c.deviation_id == deviation_id)
                    .values(action_done=1)
                )
        self._changed()
        return self.deviation(deviation_id)

    def _open_deviation(
        self,
        conn: Connection,
        actor: Actor,
        batch_id: str,
        step_index: int | None,
        step_id: str | None,
        spec: _DeviationSpec,
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
                action=None if spec.action is None else canonical.dumps(_plain(spec.action)),
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

    # ======================================================================== hold / resume / abort

    async def hold(self, session: Any, batch_id: str, code: str, text: str) -> BatchInfo:
        """Hold the batch (and the blender if it is running); opens a deviation with the reason."""
        entity = (BATCH_RECORD, batch_id)
        actor = self.sessions.authorize(session, "batch.hold", entity=entity)
        why = self._reason_text(actor, entity, text, "batch.hold.refused")
        code = self._reason_code(actor, entity, code, "batch.hold.refused")
        info = self.get(batch_id)
        if info.status is not BatchStatus.RUNNING:
            self._refuse(actor, "batch.hold.refused", entity, f"batch {info.status}", None)
            raise BatchStateError(f"batch {batch_id} is {info.status.label}; it cannot be held")
        with self.audit.transaction() as conn:
            self._set_held(conn, actor, info, why)
            self._open_deviation(
                conn,
                actor,
                batch_id,
                info.current_step,
                self._step_id(info),
                _DeviationSpec(
                    DeviationKind.HOLD, f"batch held: {why}", reason=(code, why, actor.user_id)
                ),
            )
        self._changed()
        await self._hold_equipment(actor, info)
        return self.get(batch_id)

    async def resume(self, session: Any, batch_id: str, text: str) -> BatchInfo:
        """A supervisor resumes a held batch once its deviations are handled (Unhold on the PLC)."""
        entity = (BATCH_RECORD, batch_id)
        actor = self.sessions.authorize(session, "batch.resume", entity=entity)
        why = self._reason_text(actor, entity, text, "batch.resume.refused")
        info = self.get(batch_id)
        with read_only(self.engine) as conn:
            blocking = self._blocking(conn, batch_id)
        if info.status is not BatchStatus.HELD:
            self._refuse(actor, "batch.resume.refused", entity, f"batch {info.status}", None)
            raise BatchStateError(f"batch {batch_id} is {info.status.label}, not held")
        if blocking:
            self._refuse(
                actor,
                "batch.resume.refused",
                entity,
                "deviation open",
                {"deviations": list(blocking)},
            )
            raise DeviationOpen(
                f"deviation {', '.join(blocking)} must be handled before the batch can resume",
                blocking,
            )
        with self.audit.transaction() as conn:
            conn.execute(
                update(batch)
                .where(batch.c.batch_id == batch_id)
                .values(status=BatchStatus.RUNNING.value, hold_reason=None)
            )
            self.audit.record(
                conn,
                "batch.resumed",
                actor,
                entity=entity,
                field="status",
                old_value=BatchStatus.HELD.value,
                new_value=BatchStatus.RUNNING.value,
                reason=why,
            )
        self._changed()
        if await self._run_in_progress(info) and await self._state() == "Held":
            await self._command(actor, batch_id, info.current_step, "unhold")
        return self.get(batch_id)

    async def abort(self, session: Any, batch_id: str, code: str, text: str) -> BatchInfo:
        """A supervisor aborts the batch now (and the blender if it runs); the abort deviation
        then needs a second person's co-signature before QA can close the record."""
        entity = (BATCH_RECORD, batch_id)
        actor = self.sessions.authorize(session, "batch.abort", entity=entity)
        why = self._reason_text(actor, entity, text, "batch.abort.refused")
        code = self._reason_code(actor, entity, code, "batch.abort.refused")
        info = self.get(batch_id)
        if info.status not in ACTIVE_STATUSES:
            self._refuse(actor, "batch.abort.refused", entity, f"batch {info.status}", None)
            raise BatchStateError(f"batch {batch_id} is {info.status.label}; it cannot be aborted")
        run_active = await self._run_in_progress(info)
        now = to_utc_text(self.clock.now())
        with self.audit.transaction() as conn:
            conn.execute(
                update(batch)
                .where(batch.c.batch_id == batch_id)
                .values(status=BatchStatus.ABORTED.value, aborted_at=now, aborted_by=actor.user_id)
            )
            self.audit.record(
                conn,
                "batch.aborted",
                actor,
                entity=entity,
                field="status",
                old_value=info.status.value,
                new_value=BatchStatus.ABORTED.value,
                reason=why,
                details={"reason_code": code, "step_index": info.current_step},
            )
            self._open_deviation(
                conn,
                actor,
                batch_id,
                info.current_step,
                self._step_id(info),
                _DeviationSpec(
                    DeviationKind.ABORT,
                    f"batch aborted: {why}",
                    critical=True,
                    requires_cosign=True,
                    reason=(code, why, actor.user_id),
                ),
            )
        self._changed()
        if run_active:
            state = await self._state_or_none()
            if state is not None and state not in ("Aborting", "Aborted"):
                await self._command(actor, batch_id, info.current_step, "abort")
        return self.get(batch_id)

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
        state = await self._state_or_none()
        if state in HOLDABLE_STATES:
            await self._command(actor, info.batch_id, info.current_step, "hold")

    async def _run_in_progress(self, info: BatchInfo) -> bool:
        if info.current_step >= info.step_count:
            return False
        recipe = self.recipe_of(info)
        if not isinstance(recipe.steps[info.current_step], RunStep):
            return False
        with read_only(self.engine) as conn:
            row = self._step_row(conn, info.batch_id, info.current_step)
        return row is not None and row["status"] == StepStatus.RUNNING.value

    # ======================================================================== QA

    def qa_disposition(
        self, session: Any, deviation_id: str, disposition: str, comment: str
    ) -> DeviationInfo:
        """QA's disposition of a handled deviation: ``accepted`` (no impact on quality, or an
        acceptable one) or ``rejected`` (the batch cannot be released)."""
        entity = (DEVIATION_RECORD, deviation_id)
        actor = self.sessions.authorize(session, "deviation.disposition", entity=entity)
        why = self._reason_text(actor, entity, comment, "deviation.disposition.refused")
        refusal: str | None = None
        if disposition not in ("accepted", "rejected"):
            refusal = "the disposition is 'accepted' or 'rejected'"
        with self.audit.transaction() as conn:
            row = self._deviation_row(conn, deviation_id) if refusal is None else None
            if row is not None:
                status = _info(self._batch_row(conn, str(row["batch_id"]))).status
                if row["status"] != DeviationStatus.CLOSED.value:
                    refusal = f"deviation {deviation_id} still needs its reason or co-signature"
                elif row["disposition"] is not None:
                    refusal = f"deviation {deviation_id} already has a disposition"
                elif status in ACTIVE_STATUSES or status in (
                    BatchStatus.RELEASED,
                    BatchStatus.REJECTED,
                ):
                    refusal = (
                        f"batch {row['batch_id']} is {status.label}; QA reviews it after completion"
                    )
            if refusal is not None:
                self.audit.record(
                    conn, "deviation.disposition.refused", actor, entity=entity, reason=refusal
                )
            else:
                assert row is not None
                conn.execute(
                    update(deviation)
                    .where(deviation.c.deviation_id == deviation_id)
                    .values(
                        disposition=disposition,
                        disposition_comment=why,
                        disposition_by=actor.user_id,
                        disposition_at=to_utc_text(self.clock.now()),
                    )
                )
                self.audit.record(
                    conn,
                    "deviation.dispositioned",
                    actor,
                    entity=entity,
                    field="disposition",
                    new_value=disposition,
                    reason=why,
                    details={"batch_id": row["batch_id"]},
                )
        if refusal is not None:
            raise BatchStateError(refusal)
        return self.deviation(deviation_id)

    def review_audit_trail(self, session: Any, batch_id: str, signature: Signature) -> BatchInfo:
        """QA signs 'audit trail reviewed' over the batch record (a documented, signed review)."""
        entity = (BATCH_RECORD, batch_id)
        actor = self.sessions.authorize(session, "batch.review", entity=entity)
        with read_only(self.engine) as conn:
            info = _info(self._batch_row(conn, batch_id))
            ref = self._batch_ref(conn, batch_id)
            problems = self._review_problems(conn, info)
        try:
            if problems:
                raise ReleaseBlocked(problems)
            self._require_valid(signature, ref, Meaning.AUDIT_TRAIL_REVIEWED)
            if signature.signer_id != actor.user_id:
                raise SignatureProblem("the review must be signed by the logged-in QA reviewer")
        except BatchError as exc:
            self._refuse(actor, "batch.review.refused", entity, str(exc), None)
            raise
        now = to_utc_text(self.clock.now())
        with self.audit.transaction() as conn:
            conn.execute(
                update(batch)
                .where(batch.c.batch_id == batch_id)
                .values(
                    reviewed_at=now,
                    reviewed_by=actor.user_id,
                    review_signature_id=signature.signature_id,
                    reviewed_sha256=ref.sha256,
                )
            )
            self._link_signature(conn, batch_id, signature, "batch.audit_trail_review")
            self.audit.record(
                conn,
                "batch.audit_trail.reviewed",
                actor,
                entity=entity,
                meaning=Meaning.AUDIT_TRAIL_REVIEWED.value,
                new_value=ref.sha256,
                details={"signature_id": signature.signature_id},
            )
        return self.get(batch_id)

    def release(self, session: Any, batch_id: str, signature: Signature) -> BatchInfo:
        """QA releases a reviewed batch with an e-signature ('released'); refused while anything
        is open, a deviation was rejected, or the record changed since the review."""
        return self._decide(session, batch_id, signature, release=True, reason=None)

    def reject(self, session: Any, batch_id: str, signature: Signature, reason: str) -> BatchInfo:
        """QA rejects a completed or aborted batch with an e-signature ('rejected')."""
        return self._decide(session, batch_id, signature, release=False, reason=reason)

    def _decide(
        self,
        session: Any,
        batch_id: str,
        signature: Signature,
        *,
        release: bool,
        reason: str | None,
    ) -> BatchInfo:
        verb = "release" if release else "reject"
        entity = (BATCH_RECORD, batch_id)
        actor = self.sessions.authorize(session, f"batch.{verb}", entity=entity)
        why = (
            None
            if reason is None
            else self._reason_text(actor, entity, reason, f"batch.{verb}.refused")
        )
        with read_only(self.engine) as conn:
            info = _info(self._batch_row(conn, batch_id))
            ref = self._batch_ref(conn, batch_id)
            problems = self._review_problems(conn, info)
            if release:
                rejected = conn.execute(
                    select(deviation.c.deviation_id).where(
                        deviation.c.batch_id == batch_id, deviation.c.disposition == "rejected"
                    )
                ).all()
                problems += [f"deviation {r[0]} was rejected by QA" for r in rejected]
                if info.status is BatchStatus.ABORTED:
                    problems.append("an aborted batch can only be rejected")
        if info.reviewed_at is None:
            problems.append("QA has not signed the audit trail review")
        elif info.reviewed_sha256 != ref.sha256:
            problems.append("the batch record changed after the audit trail review; review again")
        meaning = Meaning.RELEASED if release else Meaning.REJECTED
        try:
            if problems:
                raise ReleaseBlocked(problems)
            self._require_valid(signature, ref, meaning)
            if signature.signer_id != actor.user_id:
                raise SignatureProblem(f"the {verb} must be signed by the logged-in QA user")
        except BatchError as exc:
            self._refuse(actor, f"batch.{verb}.refused", entity, str(exc), {"problems": problems})
            raise
        status = BatchStatus.RELEASED if release else BatchStatus.REJECTED
        with self.audit.transaction() as conn:
            conn.execute(
                update(batch)
                .where(batch.c.batch_id == batch_id)
                .values(
                    status=status.value,
                    decided_at=to_utc_text(self.clock.now()),
                    decided_by=actor.user_id,
                    decision_signature_id=signature.signature_id,
                    decision_reason=why,
                )
            )
            self._link_signature(conn, batch_id, signature, f"batch.{verb}")
            self.audit.record(
                conn,
                f"batch.{status.value}",
                actor,
                entity=entity,
                field="status",
                old_value=info.status.value,
                new_value=status.value,
                meaning=meaning.value,
                reason=why,
                details={"signature_id": signature.signature_id, "record_sha256": ref.sha256},
            )
        return self.get(batch_id)

    def _review_problems(self, conn: Connection, info: BatchInfo) -> list[str]:
        problems: list[str] = []
        if info.status not in (BatchStatus.AWAITING_REVIEW, BatchStatus.ABORTED):
            problems.append(f"the batch is {info.status.label}, not awaiting review")
        for row in conn.execute(
            select(deviation).where(deviation.c.batch_id == info.batch_id)
        ).mappings():
            if row["status"] != DeviationStatus.CLOSED.value:
                problems.append(f"deviation {row['deviation_id']} is still open")
            elif row["disposition"] is None:
                problems.append(f"deviation {row['deviation_id']} has no QA disposition")
        return problems

    # ======================================================================== recovery

    async def recover(self) -> BatchInfo | None:
        """At start-up: find the batch in progress, reconcile with the PLC, record the restart.

        Commands whose outcome was not recorded (the process died between intent and result)
        are resolved from the PLC's actual state, so nothing is done twice; a run that the PLC
        no longer knows about, or a PLC that cannot be reached, holds the batch with a
        deviation.
        """
        info = self.active_batch()
        if info is None:
            return None
        state = await self._state_or_none()
        recipe = self.recipe_of(info)
        with read_only(self.engine) as conn:
            open_commands = [
                _command(r)
                for r in conn.execute(
                    select(plc_command)
                    .where(plc_command.c.batch_id == info.batch_id, plc_command.c.result.is_(None))
                    .order_by(plc_command.c.id)
                ).mappings()
            ]
        for command in open_commands:
            await self._reconcile_command(info, recipe, command, state)
        info = self.get(info.batch_id)
        run_active = await self._run_in_progress(info)
        with self.audit.transaction() as conn:
            self.audit.record(
                conn,
                "batch.recovered",
                SYSTEM,
                entity=(BATCH_RECORD, info.batch_id),
                details={
                    "status": info.status.value,
                    "current_step": info.current_step,
                    "step_id": self._step_id(info),
                    "plc_state": state,
                    "run_in_progress": run_active,
                    "commands_reconciled": [c.command_id for c in open_commands],
                },
            )
            if run_active and info.status is BatchStatus.RUNNING:
                if state is None:
                    self._set_held(conn, SYSTEM, info, "PLC not reachable at restart")
                    self._open_deviation(
                        conn,
                        SYSTEM,
                        info.batch_id,
                        info.current_step,
                        self._step_id(info),
                        _DeviationSpec(
                            DeviationKind.PLC_LOST,
                            "PLC not reachable when the HMI restarted during the run",
                        ),
                    )
                elif state not in RUNNING_STATES and state != "Complete":
                    self._open_deviation(
                        conn,
                        SYSTEM,
                        info.batch_id,
                        info.current_step,
                        self._step_id(info),
                        _DeviationSpec(
                            DeviationKind.PLC_MISMATCH,
                            f"the blend was running but the PLC is {state}",
                            expected="Execute",
                            actual=state,
                        ),
                    )
        self._changed()
        return self.get(info.batch_id)

    async def _reconcile_command(
        self, info: BatchInfo, recipe: Recipe, command: PlcCommandRecord, state: str | None
    ) -> None:
        arguments = dict(command.arguments)
        outcome = "unknown"
        detail = f"reconciled at restart; PLC state {state or 'unreachable'}"
        started_run = False
        if state is not None:
            if command.command == "start":
                done = state in RUNNING_STATES or state == "Complete"
                outcome = "confirmed_on_recovery" if done else "not_executed"
                started_run = done
            elif command.command == "hold":
                outcome = (
                    "confirmed_on_recovery" if state in ("Holding", "Held") else "not_executed"
                )
            elif command.command == "unhold":
                outcome = (
                    "confirmed_on_recovery"
                    if state in ("Unholding", "Execute", "Completing", "Complete")
                    else "not_executed"
                )
            elif command.command == "abort":
                outcome = (
                    "confirmed_on_recovery" if state in ("Aborting", "Aborted") else "not_executed"
                )
            elif command.command == "reset":
                outcome = "confirmed_on_recovery" if state == "Idle" else "unknown"
            elif command.command == "write":
                try:
                    update_ = await self.gateway.read(str(arguments["tag"]))
                    same = _text(update_.value) == _text(arguments["value"]) or (
                        isinstance(update_.value, float)
                        and abs(update_.value - float(str(arguments["value"]))) < 1e-6
                    )
                    outcome = "confirmed_on_recovery" if same else "not_executed"
                    detail += f"; read back {_text(update_.value)}"
                except PlcError as exc:
                    detail += f"; read back failed: {exc}"
        actor = Actor(command.intent_by, "system")
        with self.audit.transaction() as conn:
            conn.execute(
                update(plc_command)
                .where(plc_command.c.id == command.command_id, plc_command.c.result.is_(None))
                .values(
                    result=outcome, result_detail=detail, result_at=to_utc_text(self.clock.now())
                )
            )
            self.audit.record(
                conn,
                "batch.plc.command.result",
                SYSTEM,
                entity=("plc_command", str(command.command_id)),
                field="result",
                new_value=outcome,
                reason=detail,
                details={
                    "batch_id": info.batch_id,
                    "command": command.command,
                    "arguments": _plain(arguments),
                    "recovered": True,
                },
            )
            if (
                started_run
                and command.step_index is not None
                and self._step_row(conn, info.batch_id, command.step_index) is None
            ):
                step = recipe.steps[command.step_index]
                self._insert_step(
                    conn, actor, info.batch_id, command.step_index, step, StepStatus.RUNNING
                )
                self.audit.record(
                    conn,
                    "batch.step.started",
                    SYSTEM,
                    entity=(BATCH_RECORD, info.batch_id),
                    details={
                        "step_id": step.id,
                        "step_index": command.step_index,
                        "recovered": True,
                        "started_by": command.intent_by,
                    },
                )

    # ======================================================================== live monitoring

    async def monitor(self) -> None:
        """Watch the PLC during the batch until cancelled: excursions of monitored parameters
        during a run open deviations (a critical one holds the batch and the blender); losing
        the PLC during a run holds the batch from the HMI side."""
        stream = self.gateway.events()
        context: _RunContext | None = None
        version = -1
        plc_state: str | None = None
        armed: set[str] = set()
        lost_during_run: str | None = None
        try:
            while True:
                try:
                    event = await stream.get()
                except StopAsyncIteration:
                    return
                if version != self._context_version:
                    version = self._context_version
                    new_context = self._load_context()
                    if (
                        new_context is None
                        or context is None
                        or (new_context.batch_id, new_context.step_index)
                        != (context.batch_id, context.step_index)
                    ):
                        armed = set()
                    context = new_context
                if isinstance(event, TagValuesChanged):
                    state_update = event.updates.get("state")
                    if state_update is not None and state_update.good:
                        plc_state = str(state_update.value)
                        if plc_state != "Execute":
                            armed = set()
                    if context is not None and plc_state == "Execute":
                        await self._check_excursions(context, event.updates, armed)
                elif isinstance(event, ConnectionStateChanged):
                    if event.state is ConnectionState.LOST and context is not None:
                        if await self._connection_lost(context, event.reason):
                            lost_during_run = context.batch_id
                    elif event.state is ConnectionState.CONNECTED and lost_during_run:
                        await self._reconnected(lost_during_run)
                        lost_during_run = None
        finally:
            stream.close()

    def _load_context(self) -> _RunContext | None:
        with read_only(self.engine) as conn:
            row = self._active_row(conn)
            if row is None:
                return None
            info = _info(row)
            if info.current_step >= info.step_count:
                return None
            step_row = self._step_row(conn, info.batch_id, info.current_step)
            if step_row is None or step_row["status"] != StepStatus.RUNNING.value:
                return None
            open_excursions = {
                str(r["parameter"]): str(r["deviation_id"])
                for r in conn.execute(
                    select(deviation.c.parameter, deviation.c.deviation_id).where(
                        deviation.c.batch_id == info.batch_id,
                        deviation.c.step_index == info.current_step,
                        deviation.c.kind == DeviationKind.EXCURSION.value,
                        deviation.c.ended_at.is_(None),
                    )
                ).mappings()
            }
        recipe = self.recipe_of(info)
        step = recipe.steps[info.current_step]
        if not isinstance(step, RunStep):
            return None
        monitored = []
        for name in step.monitor:
            parameter = recipe.parameter(name)
            assert parameter.monitor_tag is not None
            low, high = parameter.limits_for_tag(parameter.monitor_tag)
            monitored.append(_Monitored(name, parameter, parameter.monitor_tag, low, high))
        return _RunContext(
            info.batch_id, info.current_step, step.id, info.status, monitored, open_excursions
        )

    async def _check_excursions(
        self, context: _RunContext, updates: Mapping[str, TagUpdate], armed: set[str]
    ) -> None:
        hold_needed = False
        for item in context.monitored:
            update_ = updates.get(item.tag)
            if update_ is None or not update_.good or isinstance(update_.value, bool | str | tuple):
                continue
            assert update_.value is not None
            value = (
                Decimal(repr(update_.value))
                if isinstance(update_.value, float)
                else Decimal(update_.value)
            )
            inside = item.low <= value <= item.high
            if inside:
                armed.add(item.name)
                open_id = context.open_excursions.pop(item.name, None)
                if open_id is not None:
                    self._end_excursion(open_id, value)
                continue
            if item.name not in armed or item.name in context.open_excursions:
                continue
            deviation_id, held = self._open_excursion(context, item, value)
            context.open_excursions[item.name] = deviation_id
            hold_needed = hold_needed or held
        if hold_needed:
            info = self.get(context.batch_id)
            await self._hold_equipment(SYSTEM, info)

    def _open_excursion(
        self, context: _RunContext, item: _Monitored, value: Decimal
    ) -> tuple[str, bool]:
        critical = item.parameter.critical
        spec = _DeviationSpec(
            DeviationKind.EXCURSION,
            f"{item.name} {value} {_tag_unit(item.tag)} outside its limits"
            f" {item.low}..{item.high} during the run"
            + ("; critical parameter: batch held" if critical else ""),
            parameter=item.name,
            expected=f"{item.low}..{item.high}",
            actual=str(value),
            unit=_tag_unit(item.tag),
            critical=critical,
            requires_cosign=critical,
        )
        held = False
        with self.audit.transaction() as conn:
            row = self._batch_row(conn, context.batch_id)
            deviation_id = self._open_deviation(
                conn, SYSTEM, context.batch_id, context.step_index, context.step_id, spec
            )
            if critical and row["status"] == BatchStatus.RUNNING.value:
                self._set_held(
                    conn,
                    SYSTEM,
                    _info(row),
                    f"critical parameter {item.name} out of limits ({value})",
                )
                held = True
        self._changed()
        self._notify_deviation(deviation_id)
        return deviation_id, held

    def _end_excursion(self, deviation_id: str, value: Decimal) -> None:
        with self.audit.transaction() as conn:
            conn.execute(
                update(deviation)
                .where(deviation.c.deviation_id == deviation_id)
                .values(ended_at=to_utc_text(self.clock.now()))
            )
            self.audit.record(
                conn,
                "deviation.excursion_ended",
                SYSTEM,
                entity=(DEVIATION_RECORD, deviation_id),
                field="value",
                new_value=str(value),
            )

    async def _connection_lost(self, context: _RunContext, reason: str) -> bool:
        with self.audit.transaction() as conn:
            row = self._batch_row(conn, context.batch_id)
            if row["status"] != BatchStatus.RUNNING.value:
                return False
            self._set_held(conn, SYSTEM, _info(row), "communication with the PLC lost")
            deviation_id = self._open_deviation(
                conn,
                SYSTEM,
                context.batch_id,
                context.step_index,
                context.step_id,
                _DeviationSpec(
                    DeviationKind.PLC_LOST,
                    f"communication with the PLC lost during the run: {reason}",
                ),
            )
        self._changed()
        self._notify_deviation(deviation_id)
        return True

    async def _reconnected(self, batch_id: str) -> None:
        state = await self._state_or_none()
        self.audit.record_now(
            "batch.plc.reconnected",
            SYSTEM,
            entity=(BATCH_RECORD, batch_id),
            details={"plc_state": state},
        )
        info = self.get(batch_id)
        if info.status is BatchStatus.HELD and state in HOLDABLE_STATES:
            with contextlib.suppress(PlcCommandFailed):
                await self._command(SYSTEM, batch_id, info.current_step, "hold")

    def _on_alarm(self, change: AlarmChange) -> None:
        """An alarm raised while a batch is in progress is a deviation of the current step."""
        if change.transition is not AlarmTransition.RAISED:
            return
        record = change.alarm
        if record.code == COMM_LOSS_ALARM:
            return  # the loss of the PLC during a run is its own deviation (plc_lost)
        with self.audit.transaction() as conn:
            row = self._active_row(conn)
            if row is None:
                return
            info = _info(row)
            if info.current_step >= info.step_count:
                return
            deviation_id = self._open_deviation(
                conn,
                SYSTEM,
                info.batch_id,
                info.current_step,
                self._step_id(info),
                _DeviationSpec(
                    DeviationKind.ALARM,
                    f"alarm {record.code} ({record.message}) during the step",
                    expected="no alarm",
                    actual=record.code,
                    alarm_id=record.alarm_id,
                ),
            )
        self._changed()
        self._notify_deviation(deviation_id)

    def _notify_deviation(self, deviation_id: str) -> None:
        if not self._on_deviation:
            return
        info = self.deviation(deviation_id)
        for listener in list(self._on_deviation):
            try:
                listener(info)
            except Exception:
                log.exception("deviation listener failed")

    # ======================================================================== PLC plumbing

    async def _state(self) -> str:
        update_ = await self._read("state")
        return str(update_.value)

    async def _state_or_none(self) -> str | None:
        if self.plc is None or self.plc.state is not ConnectionState.CONNECTED:
            return None
        try:
            return await self._state()
        except (PlcError, BatchError):
            return None

    async def _read(self, tag: str) -> TagUpdate:
        try:
            update_ = await self.gateway.read(tag)
        except PlcError as exc:
            raise StepNotReady(f"cannot read {tag} from the PLC: {exc}") from exc
        if not update_.good:
            raise StepNotReady(f"{tag} from the PLC is not usable: {update_.reason}")
        return update_

    async def _wait_state(self, states: set[str]) -> str:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.plc_command_timeout_s
        while True:
            state = await self._state()
            if state in states:
                return state
            if loop.time() >= deadline:
                raise PlcCommandFailed(
                    f"the blender did not reach {' or '.join(sorted(states))} (it is {state})"
                )
            await asyncio.sleep(_STATE_POLL_S)

    async def _command(
        self,
        actor: Actor,
        batch_id: str,
        step_index: int | None,
        method: str,
        *args: TagValue,
        then: Callable[[Connection], None] | None = None,
    ) -> tuple[TagValue, ...]:
        """Call a PLC method: intent committed first, the call, then the result committed."""
        outputs: list[tuple[TagValue, ...]] = []

        async def call() -> str:
            result = await self.gateway.call(method, *args)
            outputs.append(result)
            return ", ".join(_text(v) for v in result) or "accepted"

        await self._plc_action(
            actor, batch_id, step_index, method, {"args": [_plain(a) for a in args]}, call, then
        )
        return outputs[0] if outputs else ()

    async def _write(
        self,
        actor: Actor,
        batch_id: str,
        step_index: int | None,
        tag: str,
        value: Decimal,
        *,
        then: Callable[[Connection], None] | None = None,
        capture: dict[str, str] | None = None,
    ) -> TagUpdate:
        """Write a setpoint (converted to the tag's type) with intent and confirmed result."""
        spec = self.gateway.tags.get(tag)
        plc_value: TagValue = (
            int(value) if spec is not None and spec.type == "int" else float(value)
        )
        confirmed: list[TagUpdate] = []

        async def write() -> str:
            update_ = await self.gateway.write(tag, plc_value)
            confirmed.append(update_)
            text = _text(update_.value)
            if capture is not None:
                capture["value"] = text
            return f"confirmed {text}"

        await self._plc_action(
            actor, batch_id, step_index, "write", {"tag": tag, "value": str(value)}, write, then
        )
        return confirmed[0]

    async def _plc_action(
        self,
        actor: Actor,
        batch_id: str,
        step_index: int | None,
        command: str,
        arguments: Mapping[str, Any],
        action: Callable[[], Any],
        then: Callable[[Connection], None] | None,
    ) -> None:
        entity_details = {
            "batch_id": batch_id,
            "step_index": step_index,
            "command": command,
            "arguments": _plain(dict(arguments)),
        }
        with self.audit.transaction() as conn:
            result = conn.execute(
                insert(plc_command).values(
                    batch_id=batch_id,
                    step_index=step_index,
                    command=command,
                    arguments=canonical.dumps(_plain(dict(arguments))),
                    intent_at=to_utc_text(self.clock.now()),
                    intent_by=actor.user_id,
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            command_id = int(key[0])
            self.audit.record(
                conn,
                "batch.plc.command.intent",
                actor,
                entity=("plc_command", str(command_id)),
                details=entity_details,
            )
        outcome, detail = "ok", ""
        failure: PlcError | None = None
        try:
            detail = str(await action())
        except (PlcNotConnected, PlcValueRejected) as exc:
            outcome, detail, failure = "failed", f"nothing sent: {exc}", exc
        except (PlcCommandRejected, PlcWriteRejected) as exc:
            outcome, detail, failure = "rejected", str(exc), exc
        except (PlcCommandNotConfirmed, PlcWriteNotConfirmed) as exc:
            outcome, detail, failure = "unknown", str(exc), exc
        except PlcError as exc:
            outcome, detail, failure = "failed", str(exc), exc
        with self.audit.transaction() as conn:
            conn.execute(
                update(plc_command)
                .where(plc_command.c.id == command_id)
                .values(
                    result=outcome, result_detail=detail, result_at=to_utc_text(self.clock.now())
                )
            )
            self.audit.record(
                conn,
                "batch.plc.command.result",
                actor,
                entity=("plc_command", str(command_id)),
                field="result",
                new_value=outcome,
                reason=detail or None,
                details=entity_details,
            )
            if failure is None and then is not None:
                then(conn)
        if failure is not None:
            raise PlcCommandFailed(f"PLC {command}: {failure}") from failure

    # ======================================================================== helpers

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
            action, actor, entity=entity, reason=reason, details=_plain(dict(details or {}))
        )

    def _reason_text(
        self, actor: Actor, entity: tuple[str, str], text: str | None, refusal: str
    ) -> str:
        value = " ".join((text or "").split())
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
        steps = [
            dict(r)
            for r in conn.execute(
                select(batch_step)
                .where(batch_step.c.batch_id == batch_id)
                .order_by(batch_step.c.step_index)
            ).mappings()
        ]
        values = [
            dict(r)
            for r in conn.execute(
                select(batch_value)
                .where(batch_value.c.batch_id == batch_id)
                .order_by(batch_value.c.id)
            ).mappings()
        ]
        deviations = [
            dict(r)
            for r in conn.execute(
                select(deviation).where(deviation.c.batch_id == batch_id).order_by(deviation.c.seq)
            ).mappings()
        ]
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
        return RecordRef(BATCH_RECORD, batch_id, _digest(content))


# -- row mapping ---------------------------------------------------------------------------


def _info(row: Mapping[Any, Any]) -> BatchInfo:
    started = _dt(row["started_at"])
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
        completed_at=_dt(row["completed_at"]),
        aborted_by=row["aborted_by"],
        aborted_at=_dt(row["aborted_at"]),
        reviewed_by=row["reviewed_by"],
        reviewed_at=_dt(row["reviewed_at"]),
        reviewed_sha256=row["reviewed_sha256"],
        decided_by=row["decided_by"],
        decided_at=_dt(row["decided_at"]),
        decision_reason=row["decision_reason"],
    )


def _deviation(row: Mapping[Any, Any]) -> DeviationInfo:
    opened = _dt(row["opened_at"])
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
        ended_at=_dt(row["ended_at"]),
        requires_cosign=bool(row["requires_cosign"]),
        status=DeviationStatus(row["status"]),
        reason_code=row["reason_code"],
        reason_text=row["reason_text"],
        reason_by=row["reason_by"],
        reason_at=_dt(row["reason_at"]),
        request_signature_id=row["request_signature_id"],
        cosign_signature_id=row["cosign_signature_id"],
        cosigned_by=row["cosigned_by"],
        cosigned_at=_dt(row["cosigned_at"]),
        action=None if row["action"] is None else canonical.loads(str(row["action"])),
        action_done=bool(row["action_done"]),
        alarm_id=None if row["alarm_id"] is None else int(row["alarm_id"]),
        disposition=row["disposition"],
        disposition_comment=row["disposition_comment"],
        disposition_by=row["disposition_by"],
        disposition_at=_dt(row["disposition_at"]),
    )


def _command(row: Mapping[Any, Any]) -> PlcCommandRecord:
    intent = _dt(row["intent_at"])
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
        result_at=_dt(row["result_at"]),
    )


def _deviation_ref(info: DeviationInfo) -> RecordRef:
    content = {
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
        "action": _plain(dict(info.action)) if info.action else None,
    }
    return RecordRef(DEVIATION_RECORD, info.deviation_id, _digest(content))


def _step_index(recipe: Recipe, step_id: str) -> int:
    for index, step in enumerate(recipe.steps):
        if step.id == step_id:
            return index
    raise StepOutOfOrder(f"recipe {recipe.id} v{recipe.version} has no step {step_id!r}")


def _tag_unit(tag: str) -> str:
    unit = PLC_TAGS[tag].unit
    return unit or ""


def _plc_to_parameter(parameter: Parameter, value: TagValue | None) -> Decimal | None:
    if value is None or isinstance(value, bool | str | tuple):
        return None
    assert parameter.write_tag is not None
    raw = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    return convert(raw, _tag_unit(parameter.write_tag), parameter.unit)
