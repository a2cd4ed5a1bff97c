"""Supervising the run: live monitoring of the PLC stream (excursions, loss of the PLC, alarms
during a step) and recovery after the HMI process died."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select, update

from hmi.alarms.service import AlarmChange, AlarmService, AlarmTransition
from hmi.audit.chain import SYSTEM
from hmi.batch.core import (
    BATCH_RECORD,
    HOLDABLE_STATES,
    RUNNING_STATES,
)
from hmi.batch.errors import (
    BatchError,
    PlcCommandFailed,
)
from hmi.batch.model import (
    BatchInfo,
    BatchStatus,
    DeviationKind,
    StepStatus,
)
from hmi.batch.outcome import DeviationSpec
from hmi.batch.rows import (
    DEVIATION_RECORD,
    batch_info,
    decimal_of,
    tag_unit,
    text_of,
)
from hmi.batch.steps import StepExecution
from hmi.batch.tables import (
    batch_step,
    deviation,
)
from hmi.clock import from_utc_text, to_utc_text
from hmi.db import read_only
from hmi.plc.types import (
    COMM_LOSS_ALARM,
    ConnectionState,
    ConnectionStateChanged,
    TagUpdate,
    TagValuesChanged,
)
from hmi.recipe.model import (
    Parameter,
    RunStep,
    WaitStep,
)

_CONNECT_POLL_S = 0.05

#: PLC alarms on which the PLC itself stops the drum (it trips to Aborting): the batch is held
#: at once with the PLC's reason (docs/plc-interface.md, alarm catalogue).
EQUIPMENT_STOPPING_ALARMS = frozenset({"ESTOP", "LID_OPEN_RUNNING", "MOTOR_OVERCURRENT"})

#: PLC states a blend in progress can be in; any other (Stopped, Idle after a power-up) means
#: the PLC lost the run.
RUN_KNOWN_STATES = RUNNING_STATES | {"Complete", "Aborting", "Aborted"}

#: PLC states in which the drum was held or stopped by the PLC, not by the batch.
PLC_STOPPED_RUN_STATES = frozenset({"Holding", "Held", "Aborting", "Aborted"})


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


@dataclass
class _Waiting:
    """The current wait step the monitor watches."""

    batch_id: str
    step_index: int
    step: WaitStep
    deadline: datetime
    timed_out: bool
    last_seen: str | None = None


class RunSupervision(StepExecution):
    """Live monitoring during the run (excursions, the PLC's own state changes, wait steps met
    by the PLC), alarm deviations and crash recovery."""

    _armed_now: frozenset[str] = frozenset()

    async def recover_at_start(self, wait_s: float) -> BatchInfo | None:
        """At start-up, when the PLC connects in the background: give it ``wait_s`` seconds to
        connect, then :meth:`recover`. A PLC still not connected by then counts as unreachable
        (the run is held from the HMI side with a deviation); with no batch in progress
        nothing waits and nothing is recorded."""
        if self.active_batch() is None:
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while loop.time() < deadline and (
            self.plc is not None and self.plc.state is not ConnectionState.CONNECTED
        ):
            await asyncio.sleep(_CONNECT_POLL_S)
        return await self.recover()

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
        state = await self.link.state_or_none()
        recipe = self.recipe_of(info)
        open_commands = self.open_commands(info.batch_id)
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
            hold_plc = run_active and info.status is BatchStatus.HELD and state in HOLDABLE_STATES
            if run_active and info.status is BatchStatus.RUNNING:
                if state is None:
                    self._set_held(conn, SYSTEM, info, "PLC not reachable at restart")
                    self._open_deviation(
                        conn,
                        SYSTEM,
                        info.batch_id,
                        info.current_step,
                        self._step_id(info),
                        DeviationSpec(
                            DeviationKind.PLC_LOST,
                            "PLC not reachable when the HMI restarted during the run",
                        ),
                    )
                elif state not in RUNNING_STATES and state != "Complete":
                    self._lost_runs.add((info.batch_id, info.current_step))
                    self._open_deviation(
                        conn,
                        SYSTEM,
                        info.batch_id,
                        info.current_step,
                        self._step_id(info),
                        DeviationSpec(
                            DeviationKind.PLC_MISMATCH,
                            f"PLC lost state: the blend was running but the PLC is {state};"
                            " Resume restores the PLC's setpoints and restarts the blend",
                            expected="Execute",
                            actual=state,
                            critical=True,
                        ),
                    )
                    self._set_held(conn, SYSTEM, info, f"PLC lost state (the PLC is {state})")
        self._changed()
        if hold_plc:  # held by the HMI while the process was down, but the drum still turns
            await self.link.command(SYSTEM, info.batch_id, info.current_step, "hold")
        return self.get(info.batch_id)

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
        waiting: _Waiting | None = None
        wait_due = False
        try:
            while True:
                try:
                    event = await stream.get()
                except StopAsyncIteration:
                    return
                if version != self._context_version:
                    version = self._context_version
                    waiting, wait_due = self._load_wait(), True
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
                    if context is not None and state_update is not None and plc_state:
                        await self._plc_state_changed(context, plc_state)
                    self._armed_now = frozenset(armed)
                    if waiting is not None:
                        seen = event.updates.get(waiting.step.tag)
                        if seen is not None and seen.good:
                            waiting.last_seen = text_of(seen.value)
                        if wait_due or seen is not None:
                            # A wait step completes by itself once the PLC meets its
                            # condition: checked when it becomes current and whenever its
                            # tag changes.
                            wait_due = False
                            if await self.complete_wait_step(waiting.batch_id):
                                continue
                        if not waiting.timed_out and self.clock.now() >= waiting.deadline:
                            waiting.timed_out = True
                            await self._wait_timed_out(waiting)
                elif isinstance(event, ConnectionStateChanged):
                    if event.state is ConnectionState.LOST and context is not None:
                        if await self._connection_lost(context, event.reason):
                            lost_during_run = context.batch_id
                    elif event.state is ConnectionState.CONNECTED and lost_during_run:
                        await self._reconnected(lost_during_run)
                        lost_during_run = None
        finally:
            stream.close()

    def armed_parameters(self) -> frozenset[str]:
        """The monitored parameters the live monitor has seen inside their limits in the
        current run: only these raise an excursion when they leave (a value still ramping up
        to its range at the start of a run is not an excursion)."""
        return self._armed_now

    def _load_wait(self) -> _Waiting | None:
        """The running batch whose current step is a wait step: the tag it waits on, and when
        its time runs out (``timeout_s`` after the step became current)."""
        with read_only(self.engine) as conn:
            row = self._active_row(conn)
            if row is None:
                return None
            info = batch_info(row)
            if info.status is not BatchStatus.RUNNING or info.current_step >= info.step_count:
                return None
            step = self.recipe_of(info).steps[info.current_step]
            if not isinstance(step, WaitStep):
                return None
            since = conn.execute(
                select(func.max(batch_step.c.completed_at)).where(
                    batch_step.c.batch_id == info.batch_id,
                    batch_step.c.step_index < info.current_step,
                )
            ).scalar()
            timed_out = conn.execute(
                select(deviation.c.deviation_id).where(
                    deviation.c.batch_id == info.batch_id,
                    deviation.c.step_index == info.current_step,
                    deviation.c.kind == DeviationKind.PLC_MISMATCH.value,
                    deviation.c.parameter == step.tag,
                )
            ).first()
        began = from_utc_text(str(since)) if since else info.started_at
        return _Waiting(
            info.batch_id,
            info.current_step,
            step,
            began + timedelta(seconds=step.timeout_s),
            timed_out is not None,
        )

    async def _wait_timed_out(self, waiting: _Waiting) -> None:
        """The PLC did not meet a wait step's condition within its ``timeout_s``: a deviation
        (the step stays current and still completes by itself once the condition is met and
        the deviation has its reason)."""
        step = waiting.step
        # What the PLC shows now is what the deviation records (the stream may lag behind it);
        # the last value seen stands only if the PLC cannot be read.
        with contextlib.suppress(BatchError):
            current = (await self.link.read(step.tag)).value
            comparable = (
                current if isinstance(current, bool | str) else decimal_of(current, step.tag)
            )
            if step.is_met(comparable):
                return  # met just now: the step completes by itself, nothing ran out
            waiting.last_seen = text_of(current)
        target = text_of(step.target_for_plc())
        wanted = (
            target if step.condition == "equals" else f"{step.condition.replace('_', ' ')} {target}"
        )
        with self.audit.transaction() as conn:
            row = self._batch_row(conn, waiting.batch_id)
            if row["status"] != BatchStatus.RUNNING.value or int(row["current_step"]) != (
                waiting.step_index
            ):
                return
            deviation_id = self._open_deviation(
                conn,
                SYSTEM,
                waiting.batch_id,
                waiting.step_index,
                step.id,
                DeviationSpec(
                    DeviationKind.PLC_MISMATCH,
                    f"'{step.title}': {step.tag} was not {wanted} within {step.timeout_s} s",
                    parameter=step.tag,
                    expected=f"{wanted} within {step.timeout_s} s",
                    actual=waiting.last_seen,
                ),
            )
        self._changed()
        self._notify_deviation(deviation_id)

    def _load_context(self) -> _RunContext | None:
        with read_only(self.engine) as conn:
            row = self._active_row(conn)
            if row is None:
                return None
            info = batch_info(row)
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
        spec = DeviationSpec(
            DeviationKind.EXCURSION,
            f"{item.name} {value} {tag_unit(item.tag)} outside its limits"
            f" {item.low}..{item.high} during the run"
            + ("; critical parameter: batch held" if critical else ""),
            parameter=item.name,
            expected=f"{item.low}..{item.high}",
            actual=str(value),
            unit=tag_unit(item.tag),
            critical=critical,
        )
        held = False
        with self.audit.transaction() as conn:
            row = self._batch_row(conn, context.batch_id)
            deviation_id = self._open_deviation(
                conn, SYSTEM, context.batch_id, context.step_index, context.step_id, spec
            )
            if spec.holds_batch and row["status"] == BatchStatus.RUNNING.value:
                self._set_held(
                    conn,
                    SYSTEM,
                    batch_info(row),
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
            self._set_held(conn, SYSTEM, batch_info(row), "communication with the PLC lost")
            deviation_id = self._open_deviation(
                conn,
                SYSTEM,
                context.batch_id,
                context.step_index,
                context.step_id,
                DeviationSpec(
                    DeviationKind.PLC_LOST,
                    f"communication with the PLC lost during the run: {reason}",
                ),
            )
        self._changed()
        self._notify_deviation(deviation_id)
        return True

    async def _plc_state_changed(self, context: _RunContext, state: str) -> None:
        """The PLC's state during a run drives the batch: a PLC that holds, stops or aborts the
        drum by itself holds the batch at once with the PLC's reason; a PLC that no longer
        knows the run (a restart: Stopped or Idle) holds it with a "PLC lost state"
        deviation."""
        if (
            self._plc_restoring
            or context.batch_id in self._holding
            or (state in RUN_KNOWN_STATES and state not in PLC_STOPPED_RUN_STATES)
        ):
            return
        # The stream may lag behind what the batch commanded since: act on the PLC's state now.
        now = await self.link.state_or_none()
        if now is None or self._plc_restoring or context.batch_id in self._holding:
            return
        state = now
        if state not in RUN_KNOWN_STATES:
            self._plc_lost_state(context.batch_id, context.step_index, state)
        elif state in PLC_STOPPED_RUN_STATES:
            reason = await self._plc_reason()
            with self.audit.transaction() as conn:
                row = self._batch_row(conn, context.batch_id)
                if row["status"] != BatchStatus.RUNNING.value:
                    return
                self._set_held(
                    conn,
                    SYSTEM,
                    batch_info(row),
                    f"the PLC is {state}" + (f": {reason}" if reason else ""),
                )
            self._changed()

    async def _plc_reason(self) -> str | None:
        """The PLC's own account of its last transition (``last_command_result``)."""
        try:
            return str((await self.link.read("last_command_result")).value)
        except BatchError:
            return None

    def _plc_lost_state(self, batch_id: str, step_index: int, state: str) -> str | None:
        """Open the "PLC lost state" deviation of a run the PLC no longer knows (once per
        run) and hold the batch; return the deviation's ID."""
        if (batch_id, step_index) in self._lost_runs:
            return None
        with self.audit.transaction() as conn:
            row = self._batch_row(conn, batch_id)
            info = batch_info(row)
            if info.status not in (BatchStatus.RUNNING, BatchStatus.HELD):
                return None
            if info.current_step != step_index:
                return None
            step_row = self._step_row(conn, batch_id, step_index)
            if step_row is None or step_row["status"] != StepStatus.RUNNING.value:
                return None
            self._lost_runs.add((batch_id, step_index))
            deviation_id = self._open_deviation(
                conn,
                SYSTEM,
                batch_id,
                step_index,
                self._step_id(info),
                DeviationSpec(
                    DeviationKind.PLC_MISMATCH,
                    f"PLC lost state: the blend was running but the PLC is {state};"
                    " Resume restores the PLC's setpoints and restarts the blend",
                    expected="Execute",
                    actual=state,
                    critical=True,
                ),
            )
            if info.status is BatchStatus.RUNNING:
                self._set_held(conn, SYSTEM, info, f"PLC lost state (the PLC is {state})")
        self._changed()
        self._notify_deviation(deviation_id)
        return deviation_id

    async def _reconnected(self, batch_id: str) -> None:
        state = await self.link.state_or_none()
        self.audit.record_now(
            "batch.plc.reconnected",
            SYSTEM,
            entity=(BATCH_RECORD, batch_id),
            details={"plc_state": state},
        )
        info = self.get(batch_id)
        if (
            state is not None
            and state not in RUN_KNOWN_STATES
            and await self._run_in_progress(info)
        ):
            self._plc_lost_state(batch_id, info.current_step, state)
        if info.status is BatchStatus.HELD and state in HOLDABLE_STATES:
            with contextlib.suppress(PlcCommandFailed):
                await self.link.command(SYSTEM, batch_id, info.current_step, "hold")

    def _attach(self, alarms: AlarmService) -> None:
        super()._attach(alarms)
        alarms.subscribe(self._on_alarm)

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
            info = batch_info(row)
            if info.current_step >= info.step_count:
                return
            stops = record.code in EQUIPMENT_STOPPING_ALARMS
            deviation_id = self._open_deviation(
                conn,
                SYSTEM,
                info.batch_id,
                info.current_step,
                self._step_id(info),
                DeviationSpec(
                    DeviationKind.ALARM,
                    f"alarm {record.code} ({record.message}) during the step"
                    + ("; the PLC stopped the blender: batch held" if stops else ""),
                    expected="no alarm",
                    actual=record.code,
                    alarm_id=record.alarm_id,
                ),
            )
            if stops and info.status is BatchStatus.RUNNING:
                self._set_held(
                    conn,
                    SYSTEM,
                    info,
                    f"the PLC stopped the blender: {record.message} ({record.code})",
                )
        self._changed()
        self._notify_deviation(deviation_id)
