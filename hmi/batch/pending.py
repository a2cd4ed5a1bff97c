"""PLC commands whose result is not recorded yet, resolved before anything else happens.

A command's intent is committed before it is sent and its result after; a stop or a storage
fault in between leaves an open command. It is resolved, at start-up (recovery) and before any
further step of the batch (a result the database refused a moment ago), from what is known for
certain first: the outcome kept in the command journal (:mod:`hmi.batch.journal`), then whether
the command was ever sent, and only then the PLC's state. Nothing is sent again before that.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select, update

from hmi.audit.chain import SYSTEM, Actor, AuditWriteError
from hmi.batch.core import BATCH_RECORD, RUNNING_STATES, EngineCore
from hmi.batch.errors import BatchError, ResultNotRecorded
from hmi.batch.journal import Journaled
from hmi.batch.model import BatchInfo, PlcCommandRecord, StepStatus
from hmi.batch.plc_link import said
from hmi.batch.rows import command_record, decimal_of, plain, text_of
from hmi.batch.tables import plc_command
from hmi.clock import to_utc_text
from hmi.db import read_only
from hmi.plc.errors import PlcError
from hmi.recipe.model import Recipe

#: A bin weighing no more than this (kg) is empty: a Discharge sent whose answer was not seen,
#: with the valve closed again, was done (the PLC closes the valve once the bin is empty).
EMPTY_BIN_KG = "0.5"

#: What the PLC's state says of a command that was sent but whose answer was not seen.
_DONE_IN_STATES = {
    "start": RUNNING_STATES | {"Complete"},
    "hold": frozenset({"Holding", "Held"}),
    "unhold": frozenset({"Unholding", "Execute", "Completing", "Complete"}),
    "abort": frozenset({"Aborting", "Aborted"}),
}


class PendingCommands(EngineCore):
    """Resolution of open PLC commands (intent recorded, result not)."""

    def open_commands(self, batch_id: str) -> list[PlcCommandRecord]:
        with read_only(self.engine) as conn:
            return [
                command_record(r)
                for r in conn.execute(
                    select(plc_command)
                    .where(plc_command.c.batch_id == batch_id, plc_command.c.result.is_(None))
                    .order_by(plc_command.c.id)
                ).mappings()
            ]

    async def settle_pending(self, info: BatchInfo) -> set[int]:
        """Record the result of every open command of the batch (before a step goes on);
        returns the step indexes whose run this started in the record."""
        started: set[int] = set()
        commands = self.open_commands(info.batch_id)
        if not commands:
            return started
        state = await self.link.state_or_none()
        recipe = self.recipe_of(info)
        for command in commands:
            try:
                if await self._reconcile_command(info, recipe, command, state, restart=False):
                    assert command.step_index is not None
                    started.add(command.step_index)
            except AuditWriteError as exc:
                kept = self.link.unrecorded.get(command.command_id)
                what = "" if kept is None else f": {said(kept.outcome or '', kept.detail or '')}"
                raise ResultNotRecorded(
                    f"PLC {command.command} (sent before){what}. Its record still cannot be"
                    f" written ({exc}); nothing more was done on this batch and nothing was"
                    " sent again: the terminal records it at the next action"
                ) from exc
        self._changed()
        return started

    async def _reconcile_command(
        self,
        info: BatchInfo,
        recipe: Recipe,
        command: PlcCommandRecord,
        state: str | None,
        *,
        restart: bool = True,
    ) -> bool:
        """Record an open command's result; True when it started a run (the step row is then
        recorded as running)."""
        arguments = dict(command.arguments)
        journal = self.link.journal
        known = journal.read().get(command.command_id) if journal is not None else None
        kept = self.link.unrecorded.get(command.command_id)
        if kept is not None and (known is None or known.outcome is None):
            known = kept  # the answer neither the database nor the journal could take
        elif journal is not None and known is None and journal.exists():
            known = Journaled(False)  # the journal holds no "sending": it was never sent
        when = "at restart" if restart else "before the next step"
        outcome, detail = await self._resolve(command, arguments, known, state, when)
        started_run = command.command == "start" and outcome in ("ok", "confirmed_on_recovery")
        from_kept = known is not None and known.outcome is not None
        actor = Actor(command.intent_by, "system")
        recorded_run = False
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
                    "arguments": plain(arguments),
                    "recovered": True,
                    "sent": None if known is None else known.sent,
                    "from_journal": from_kept and known is not kept,
                    "from_memory": from_kept and known is kept,
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
                recorded_run = True
        self.link.unrecorded.pop(command.command_id, None)  # recorded now
        return recorded_run

    async def _resolve(
        self,
        command: PlcCommandRecord,
        arguments: dict[str, object],
        known: Journaled | None,
        state: str | None,
        when: str,
    ) -> tuple[str, str]:
        """The outcome to record and why: the journaled answer; else not sent; else the PLC's
        state (``confirmed_on_recovery`` only for a command that was sent)."""
        if known is not None and known.outcome is not None:
            return known.outcome, f"recorded {when} from {known.source}: {known.detail or 'ok'}"
        if known is not None and not known.sent:
            detail = f"never sent (the terminal stopped before sending it); recorded {when}"
            if command.command == "write" and state is not None:
                detail += await self._read_back(arguments, " the PLC holds")
            return "not_executed", detail
        sent = "sent, the PLC's answer was not seen" if known is not None else "outcome not seen"
        detail = f"{sent}; PLC state {state or 'unreachable'} {when}"
        if state is None:
            return "unknown", detail
        name = command.command
        if name in _DONE_IN_STATES:
            done = state in _DONE_IN_STATES[name]
            return ("confirmed_on_recovery" if done else "not_executed"), detail
        if name == "reset":
            return ("confirmed_on_recovery" if state == "Idle" else "unknown"), detail
        if name == "write":
            try:
                update_ = await self.gateway.read(str(arguments["tag"]))
            except PlcError as exc:
                return "unknown", detail + f"; read back failed: {exc}"
            same = _same(update_.value, arguments["value"])
            detail += f"; read back {text_of(update_.value)}"
            if known is None:  # no journal: whether it was sent cannot be shown
                return "unknown", detail + ("; the value matches" if same else "")
            return ("confirmed_on_recovery" if same else "not_executed"), detail
        if name == "discharge":
            try:
                valve = (await self.gateway.read("discharge_valve_open")).value
            except PlcError as exc:
                return "unknown", detail + f"; discharge valve not readable: {exc}"
            detail += f"; discharge valve {'open' if valve is True else 'closed'}"
            if valve is True:
                return "confirmed_on_recovery", detail
            # The PLC closes the valve once the bin is empty: an empty bin shows it was done.
            try:
                weight = decimal_of((await self.gateway.read("weight")).value, "bin weight")
            except (PlcError, BatchError) as exc:
                return "unknown", detail + f"; bin weight not readable: {exc}"
            detail += f"; bin weight {weight:g} kg"
            if weight <= Decimal(EMPTY_BIN_KG):
                return "confirmed_on_recovery", detail + " (the bin is empty: it was discharged)"
            return "unknown", detail
        return "unknown", detail

    async def _read_back(self, arguments: dict[str, object], label: str) -> str:
        try:
            update_ = await self.gateway.read(str(arguments["tag"]))
        except PlcError as exc:
            return f";{label} an unreadable value ({exc})"
        same = _same(update_.value, arguments["value"])
        return f";{label} {text_of(update_.value)}" + (" (it matches)" if same else "")


def _same(value: object, wanted: object) -> bool:
    if text_of(value) == text_of(wanted):
        return True
    try:
        return isinstance(value, float) and abs(value - float(str(wanted))) < 1e-6
    except ValueError:
        return False
