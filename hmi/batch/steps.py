"""Starting a batch and executing its steps strictly in order, with their data, PLC actions,
signatures and the deviations their values open; corrections and parameter changes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, insert, select

from hmi.audit.chain import SYSTEM, Actor
from hmi.auth.roles import Meaning
from hmi.auth.signatures import Signature
from hmi.batch import step_kinds
from hmi.batch.core import (
    BATCH_RECORD,
)
from hmi.batch.errors import (
    BatchError,
    BatchHeld,
    BatchNotFound,
    BatchNumberInvalid,
    BatchNumberTaken,
    BatchStateError,
    CosignRefused,
    DeviationOpen,
    EquipmentInServiceMode,
    NotTrained,
    PlcCommandFailed,
    SignatureProblem,
    StepDataInvalid,
    StepNotReady,
    StepOutOfOrder,
)
from hmi.batch.model import (
    ACTIVE_STATUSES,
    BatchInfo,
    BatchStatus,
    CurrentStep,
    DeviationKind,
    ParameterChange,
    RecordedValue,
    StepStatus,
)
from hmi.batch.outcome import DeviationSpec, NewValue
from hmi.batch.pending import PendingCommands
from hmi.batch.rows import (
    batch_info,
    decimal_of,
    digest,
    entered_number,
    plc_to_parameter,
    tag_unit,
    text_of,
)
from hmi.batch.tables import (
    batch,
    batch_value,
    plc_command,
)
from hmi.batch.training import is_trained
from hmi.clock import to_utc_text
from hmi.db import read_only
from hmi.recipe.errors import RecipeError
from hmi.recipe.model import (
    ChargeStep,
    DischargeStep,
    Recipe,
    RunStep,
    SetParametersStep,
    Step,
    WaitStep,
)

SERVICE_MODE = "service"
_PARAMETER_VALUE = "parameter:"
"""Name prefix of the record of a parameter change (its setpoint went to the PLC)."""
IN_SERVICE_MESSAGE = (
    "the blender is in service mode (maintenance): production is unavailable until it exits"
)


#: A setpoint read from the PLC equals the batch's when within this fraction of it (a PLC
#: holding a 32-bit float cannot give back every decimal exactly).
SETPOINT_TOLERANCE = Decimal("1e-6")


class StepExecution(PendingCommands):
    """Start a batch; start and complete its steps; correct values; change parameters."""

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
        if self.link.last_mode == SERVICE_MODE:
            self._refuse(actor, "batch.start.refused", entity, "equipment in service mode", base)
            raise EquipmentInServiceMode(IN_SERVICE_MESSAGE)
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
        if self.link.journal is not None:
            self.link.journal.create()  # before any command of the batch (JournalError)
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
                # The event first: the batch starts at the time its audit event says, to the
                # microsecond (the batch record's true copy is checked against that event).
                started = self.audit.record(
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
                        started_at=started.ts,
                        session_id=actor.session_id,
                    )
                )
        if refusal is not None:
            raise refusal
        self._recipe_cache[(recipe.id, recipe.version)] = recipe
        self._changed()
        return self.get(number)

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
        await self._not_in_service_mode(actor, batch_id, step_id, "start")
        if index in await self.settle_pending(info):
            # a Start the PLC accepted whose record was pending: recorded now, never re-sent
            current = self.current_step(batch_id)
            assert current is not None
            return current
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
            tare = await self.link.read("weight")
            weight = decimal_of(tare.value, "weight")
            with self.audit.transaction() as conn:
                self._insert_step(conn, actor, batch_id, index, step, StepStatus.RUNNING)
                self._insert_values(
                    conn,
                    actor,
                    batch_id,
                    index,
                    step.id,
                    [NewValue("tare", text_of(weight), "plc", unit=tare.unit or "kg")],
                )
                self.audit.record(
                    conn,
                    "batch.step.started",
                    actor,
                    entity=(BATCH_RECORD, batch_id),
                    details={"step_id": step.id, "step_index": index, "tare": str(weight)},
                )
        elif isinstance(step, RunStep):
            await self._start_run(actor, info, recipe, index, step)
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

    async def _start_run(
        self, actor: Actor, info: BatchInfo, recipe: Recipe, index: int, step: RunStep
    ) -> None:
        state = await self.link.state()
        if state == "Aborted":
            await self.link.command(actor, info.batch_id, index, "clear")
            state = await self.link.wait_state({"Stopped"})
        if state in ("Stopped", "Complete"):
            await self.link.command(actor, info.batch_id, index, "reset")
            state = await self.link.wait_state({"Idle"})
        if state != "Idle":
            raise PlcCommandFailed(
                f"the blender is in state {state}; it must be Idle to start the blend"
            )
        await self._end_on_time(actor, info, index, step)
        # The setpoints the blend will run on, read right before Start: a value changed at
        # the PLC since the batch set it (a panel edit, a PLC restart) never runs unseen.
        differ = await self._setpoints_differ(info, recipe, step, "before the start")
        if differ:
            with self.audit.transaction() as conn:
                opened = [
                    self._open_deviation(conn, actor, info.batch_id, index, step.id, spec)
                    for spec in differ
                ]
                self._hold_if_critical(conn, actor, info, differ)
                self.audit.record(
                    conn,
                    "batch.step.refused",
                    actor,
                    entity=(BATCH_RECORD, info.batch_id),
                    reason="setpoints at the PLC differ from the batch's",
                    details={"step_id": step.id, "deviations": opened},
                )
            self._changed()
            for deviation_id in opened:
                self._notify_deviation(deviation_id)
            raise StepNotReady(
                "the blend was not started: "
                + "; ".join(spec.description for spec in differ)
                + f" (deviation {', '.join(opened)}). Set the value again (F4) and start again."
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

        await self.link.command(actor, info.batch_id, index, "start", then=started)

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
        actor = self.sessions.authorize(
            session,
            self.completion_permission(batch_id, step_id),
            entity=(BATCH_RECORD, batch_id),
            details={"step_id": step_id},
        )
        return await self._complete_step(actor, batch_id, step_id, dict(data or {}), signatures)

    def completion_permission(self, batch_id: str, step_id: str) -> str:
        """What completing this step needs: a signature step is completed by the person who
        signs it (``batch.step.sign``, whose signature the step then checks against the role
        the recipe names), every other step by production (``batch.step.complete``)."""
        try:
            recipe = self.recipe_of(self.get(batch_id))
            step = next((s for s in recipe.steps if s.id == step_id), None)
        except (BatchError, RecipeError):
            step = None  # an unknown batch or recipe is refused by the completion itself
        return step_kinds.completion_permission(step)

    async def complete_wait_step(self, batch_id: str) -> bool:
        """Complete the current wait step of a running batch once its PLC condition is met,
        as the system (the condition is the PLC's, not a person's): nobody presses a key for
        it. False, with nothing recorded, when the current step is no wait step, the batch is
        not running or has an open deviation, or the condition is not met (yet)."""
        info = self.get(batch_id)
        if info.status is not BatchStatus.RUNNING or info.current_step >= info.step_count:
            return False
        step = self.recipe_of(info).steps[info.current_step]
        if not isinstance(step, WaitStep):
            return False
        with read_only(self.engine) as conn:
            if self._blocking(conn, batch_id):
                return False
        try:
            update_ = await self.link.read(step.tag)
            current = update_.value
            met = step.is_met(
                current if isinstance(current, bool | str) else decimal_of(current, step.tag)
            )
        except (BatchError, ValueError):
            return False  # not readable now: the operator sees why on the step
        if not met and await self._reset_for(info, step, current):
            return False  # Reset sent: the step completes once the PLC reports Idle
        if not met or await self.equipment_mode() == "service":
            return False
        try:
            await self._complete_step(SYSTEM, batch_id, step.id, {}, (), person=False)
        except BatchError:
            return False  # completed by the operator meanwhile, or the PLC changed again
        return True

    async def _reset_for(self, info: BatchInfo, step: WaitStep, state: object) -> bool:
        """A wait for the blender to be Idle while it is Stopped or Complete: the engine brings
        it there with Reset (which prepares the unit and moves nothing), as a recorded command
        of the system, once per step. False when there is nothing to do."""
        if (step.tag, step.condition, step.value) != ("state", "equals", "Idle") or state not in (
            "Stopped",
            "Complete",
        ):
            return False
        with read_only(self.engine) as conn:
            sent = conn.execute(
                select(plc_command.c.id).where(
                    plc_command.c.batch_id == info.batch_id,
                    plc_command.c.step_index == info.current_step,
                    plc_command.c.command == "reset",
                )
            ).first()
        if sent is not None or await self.equipment_mode() == "service":
            return False
        try:
            await self.link.command(SYSTEM, info.batch_id, info.current_step, "reset")
        except BatchError:
            return False  # refused or not reachable: recorded; the step keeps waiting
        return True

    async def _complete_step(
        self,
        actor: Actor,
        batch_id: str,
        step_id: str,
        given: dict[str, Any],
        signatures: Sequence[Signature],
        *,
        person: bool = True,
    ) -> CurrentStep | None:
        info, recipe, index = self._ready_for_step(
            actor, batch_id, step_id, operation="complete", person=person
        )
        await self._not_in_service_mode(actor, batch_id, step_id, "complete")
        await self.settle_pending(info)
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
            await self._discharge(actor, batch_id, index)
        data_sha = digest(given)
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
                if index + 1 < info.step_count:
                    self._hold_if_critical(conn, actor, info, deviations)
        if refused:
            raise StepOutOfOrder(f"step '{step.title}' was already completed")
        self._changed()
        return self.current_step(batch_id)

    async def equipment_mode(self) -> str | None:
        """The mode the PLC reports now (``production``/``service``; ``None`` if unreadable).

        Also what :meth:`start_batch` (synchronous) goes by: the last mode read."""
        return await self.link.mode_or_none()

    async def _not_in_service_mode(
        self, actor: Actor, batch_id: str, step_id: str, operation: str
    ) -> None:
        """Production waits while maintenance has the equipment (refusal recorded)."""
        if await self.link.mode_or_none() == SERVICE_MODE:
            self._refuse(
                actor,
                "batch.step.refused",
                (BATCH_RECORD, batch_id),
                "equipment in service mode",
                {"step_id": step_id, "operation": operation},
            )
            raise EquipmentInServiceMode(IN_SERVICE_MESSAGE)

    def _ready_for_step(
        self, actor: Actor, batch_id: str, step_id: str, *, operation: str, person: bool = True
    ) -> tuple[BatchInfo, Recipe, int]:
        """Load the batch and check order, state, training (of a person, not of the system
        completing a wait step) and open deviations (recorded)."""
        entity = (BATCH_RECORD, batch_id)
        with read_only(self.engine) as conn:
            row = conn.execute(select(batch).where(batch.c.batch_id == batch_id)).mappings().first()
            if row is None:
                raise BatchNotFound(f"there is no batch {batch_id}")
            info = batch_info(row)
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
        if person and not trained:
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
        plan = step_kinds.signatures(step)
        verifier_role = plan.verifier_role
        if plan.meaning is not None and plan.signer_role is not None:
            ref = self.step_record(info.batch_id, step.id, data)
            mine = [s for s in signatures if s.cosign_of is None]
            if len(mine) != 1:
                raise SignatureProblem(
                    f"step '{step.title}' needs one signature ({plan.meaning.value})"
                )
            self._require_valid(mine[0], ref, plan.meaning)
            if mine[0].signer_id != actor.user_id or mine[0].signer_role.value != plan.signer_role:
                raise SignatureProblem(
                    f"step '{step.title}' must be signed by the logged-in {plan.signer_role}"
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

    async def _step_outcome(
        self,
        actor: Actor,
        info: BatchInfo,
        index: int,
        step: Step,
        data: Mapping[str, Any],
        step_row: Mapping[str, Any] | None,
    ) -> tuple[list[NewValue], list[DeviationSpec]]:
        """Validate the data, read the PLC where the step needs it; nothing is written yet."""
        if step_kinds.decides(step):
            # decided by the step kind (step_kinds) from what was entered and its readings
            step_kinds.check_entries(step, data)
            tare: Decimal | None = None
            if isinstance(step, ChargeStep) and step.weighing == "load_cell":
                if step_row is None:
                    raise StepNotReady(f"tare the scale first: start step '{step.title}'")
                tare = await self._tare(info.batch_id, index)
            read = {tag: (await self.link.read(tag)).value for tag in step_kinds.readings(step)}
            decided = step_kinds.evaluate(step, data, read, tare)
            assert decided is not None
            return decided
        values: list[NewValue] = []
        deviations: list[DeviationSpec] = []
        if isinstance(step, SetParametersStep):
            pass  # written after validation (intent, write, result)
        elif isinstance(step, RunStep):
            if step_row is None:
                raise StepNotReady(f"start the blend first (step '{step.title}')")
            state = await self.link.state()
            if state in ("Execute", "Starting", "Completing", "Unholding"):
                elapsed = await self.link.read("elapsed_time")
                raise StepNotReady(
                    f"the blend is still running ({text_of(elapsed.value)} s elapsed)"
                )
            if state != "Complete":
                raise StepNotReady(
                    f"the blender is {state}: the blend did not complete; a supervisor may"
                    " override the step or abort the batch"
                )
            recipe = self.recipe_of(info)
            measure = step.duration or step.revolutions
            for tag in ("elapsed_time", "revolutions"):
                update_ = await self.link.read(tag)
                limited = measure is not None and (
                    (tag == "elapsed_time") == (step.duration is not None)
                )
                if not limited:
                    values.append(
                        NewValue(tag, text_of(update_.value), "plc", unit=update_.unit or None)
                    )
                    continue
                assert measure is not None
                parameter = recipe.parameter(measure)
                low, high = parameter.limits_for_tag(tag)
                done = decimal_of(update_.value, tag)
                ok = low <= done <= high
                values.append(NewValue(tag, text_of(done), "plc", tag_unit(tag), str(low),
                                       str(high), ok))  # fmt: skip
                if not ok:
                    deviations.append(
                        DeviationSpec(
                            DeviationKind.OUT_OF_TOLERANCE,
                            f"{measure}: the blend ran {text_of(done)} {tag_unit(tag)}"
                            f" ({tag}), accepted {low}..{high} {tag_unit(tag)}"
                            + ("; critical parameter: batch held" if parameter.critical else ""),
                            parameter=measure,
                            expected=f"{low}..{high}",
                            actual=str(done),
                            unit=tag_unit(tag),
                            critical=parameter.critical,
                        )
                    )
            deviations += await self._setpoints_differ(info, recipe, step, "at the completion")
        elif isinstance(step, WaitStep):
            update_ = await self.link.read(step.tag)
            current = update_.value
            comparable: bool | Decimal | str
            comparable = (
                current if isinstance(current, bool | str) else decimal_of(current, step.tag)
            )
            if not step.is_met(comparable):
                raise StepNotReady(
                    f"'{step.title}': {step.tag} is {text_of(current)}, waiting for"
                    f" {step.condition.replace('_', ' ')} {text_of(step.target_for_plc())}"
                )
            values.append(NewValue(step.tag, text_of(current), "plc", unit=update_.unit or None))
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

    async def _discharge(self, actor: Actor, batch_id: str, index: int) -> None:
        """Open the discharge, unless an earlier Discharge of this step is known to have been
        done: a Discharge is never sent twice, and one whose outcome is unknown is not sent
        again until somebody has looked at the blender."""
        with read_only(self.engine) as conn:
            earlier = conn.execute(
                select(plc_command.c.id, plc_command.c.result, plc_command.c.result_detail)
                .where(
                    plc_command.c.batch_id == batch_id,
                    plc_command.c.step_index == index,
                    plc_command.c.command == "discharge",
                )
                .order_by(plc_command.c.id.desc())
                .limit(1)
            ).first()
        if earlier is not None and earlier.result in ("ok", "confirmed_on_recovery"):
            return  # done already (its record came late): the step completes without it
        if earlier is not None and earlier.result == "unknown":
            raise StepNotReady(
                f"whether the earlier Discharge (PLC command {earlier.id}) was done is not known"
                f" ({earlier.result_detail}); it is not sent again. Check the blender: a"
                " supervisor may override the step"
            )
        await self.link.command(actor, batch_id, index, "discharge")

    def intended_setpoint(self, batch_id: str, recipe: Recipe, name: str) -> Decimal:
        """The setpoint this batch asks of a parameter, in the parameter's own unit: the last
        change made during the batch (recorded as ``parameter:NAME``), else the recipe's. The
        one rule the set-parameters step writes by and the start and completion checks compare
        against, so a change made with F4 is never silently written back."""
        parameter = recipe.parameter(name)
        with read_only(self.engine) as conn:
            last = conn.execute(
                select(batch_value.c.value)
                .where(
                    batch_value.c.batch_id == batch_id,
                    batch_value.c.name == f"parameter:{name}",
                )
                .order_by(batch_value.c.id.desc())
                .limit(1)
            ).scalar()
        return parameter.setpoint if last is None else Decimal(str(last))

    async def _end_on_time(self, actor: Actor, info: BatchInfo, index: int, step: RunStep) -> None:
        """A time-based run ends on the blend time only if the PLC's revolutions setpoint is 0
        (docs/plc-interface.md): a count left by an earlier batch would end this one early, so
        it is set to 0 first, as a recorded write."""
        if step.duration is None:
            return
        left = decimal_of((await self.link.read("revolutions_setpoint")).value, "revolutions")
        if left != 0:
            await self.link.write(actor, info.batch_id, index, "revolutions_setpoint", Decimal(0))

    async def _setpoints_differ(
        self, info: BatchInfo, recipe: Recipe, step: RunStep, when: str
    ) -> list[DeviationSpec]:
        """The run's setpoints read from the PLC against what the batch set: a deviation for
        each that differs (critical for a critical parameter)."""
        found: list[DeviationSpec] = []
        for name in (step.speed, step.duration or step.revolutions):
            if name is None:
                continue
            parameter = recipe.parameter(name)
            tag = parameter.write_tag
            if tag is None:
                continue
            unit = tag_unit(tag)
            expected = parameter.in_unit(self.intended_setpoint(info.batch_id, recipe, name), unit)
            read = await self.link.read(tag)
            actual = decimal_of(read.value, tag)
            if abs(actual - expected) <= SETPOINT_TOLERANCE * max(Decimal(1), abs(expected)):
                continue
            found.append(
                DeviationSpec(
                    DeviationKind.PLC_MISMATCH,
                    f"{name} at the PLC is {text_of(actual)} {unit} {when}, the batch set"
                    f" {text_of(expected)} {unit}"
                    + ("; critical parameter: batch held" if parameter.critical else ""),
                    parameter=name,
                    expected=str(expected),
                    actual=str(actual),
                    unit=unit,
                    critical=parameter.critical,
                )
            )
        return found

    def _hold_if_critical(
        self, conn: Connection, actor: Actor, info: BatchInfo, specs: Sequence[DeviationSpec]
    ) -> None:
        """A critical deviation holds the batch until a supervisor resumes it."""
        critical = [spec for spec in specs if spec.holds_batch]
        if critical and self._batch_row(conn, info.batch_id)["status"] == BatchStatus.RUNNING.value:
            self._set_held(conn, actor, info, critical[0].description)

    async def _write_parameters(
        self, actor: Actor, info: BatchInfo, index: int, step: SetParametersStep, recipe: Recipe
    ) -> list[NewValue]:
        """Write each setpoint (intent, write, confirmed read-back, result); return the values."""
        written: list[NewValue] = []
        for name in step.parameters:
            parameter = recipe.parameter(name)
            tag = parameter.write_tag
            assert tag is not None
            wanted = parameter.in_unit(
                self.intended_setpoint(info.batch_id, recipe, name), tag_unit(tag)
            )
            confirmed = await self.link.write(actor, info.batch_id, index, tag, wanted)
            low, high = parameter.limits_for_tag(tag)
            value = decimal_of(confirmed.value, tag)
            written.append(
                NewValue(
                    name,
                    text_of(value),
                    "plc",
                    tag_unit(tag),
                    str(low),
                    str(high),
                    low <= value <= high,
                )
            )
        return written

    def correctable_values(self, batch_id: str) -> list[RecordedValue]:
        """The values a person may still correct (what a correction screen offers): entered by
        hand, not corrected yet, and not a parameter setpoint that went to the PLC."""
        return [
            v
            for v in self.values(batch_id)
            if v.source == "entered" and v.current and not v.name.startswith(_PARAMETER_VALUE)
        ]

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
            info = batch_info(self._batch_row(conn, batch_id))
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
            elif str(old["name"]).startswith(_PARAMETER_VALUE):
                refusal = (
                    "a parameter setpoint was written to the PLC and cannot be corrected;"
                    " change the parameter again instead"
                )
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
                    number = entered_number(text, str(old["name"]))
                    text = text_of(number)
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
                        DeviationSpec(
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
        wanted = entered_number(value, name, negative=True)
        old = await self.link.read(parameter.write_tag)
        old_value = plc_to_parameter(parameter, old.value)
        index = min(info.current_step, info.step_count - 1)
        step_id = recipe.steps[index].id
        if not parameter.within_limits(wanted):
            with self.audit.transaction() as conn:
                spec = DeviationSpec(
                    DeviationKind.PARAMETER_CHANGE,
                    f"{name}: change to {wanted} {parameter.unit} requested, limits"
                    f" {parameter.low}..{parameter.high} {parameter.unit}",
                    parameter=name,
                    expected=f"{parameter.low}..{parameter.high}",
                    actual=str(wanted),
                    unit=parameter.unit,
                    critical=parameter.critical,
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
