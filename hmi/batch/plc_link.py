"""The engine's link to the PLC: every command and write recorded as intent, then result.

The rule of the house for equipment: the intent is committed first (a ``plc_command`` row and a
``batch.plc.command.intent`` event), then the gateway is called, then the result is committed
(``batch.plc.command.result``) together with whatever the success changes (``then``). A process
killed in between leaves a command without a result, which recovery reconciles with the PLC's
actual state. Reads that fail or come back BAD are :class:`StepNotReady`, never a value.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, insert, update

from hmi.audit import canonical
from hmi.audit.chain import Actor, AuditLog, AuditWriteError
from hmi.batch.errors import BatchError, PlcCommandFailed, ResultNotRecorded, StepNotReady
from hmi.batch.journal import IN_MEMORY, CommandJournal, Journaled, JournalError
from hmi.batch.rows import plain, text_of
from hmi.batch.settings import BatchSettings
from hmi.batch.tables import plc_command
from hmi.clock import Clock, to_utc_text
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
from hmi.plc.types import ConnectionState, TagUpdate, TagValue

_STATE_POLL_S = 0.02


class PlcLink:
    """Reads, state waits, and audited commands and writes for the batch engine."""

    def __init__(
        self,
        plc: PlcGateway | None,
        *,
        audit: AuditLog,
        clock: Clock,
        settings: BatchSettings,
        journal: CommandJournal | None = None,
    ) -> None:
        self.plc = plc
        self.audit = audit
        self.clock = clock
        self.settings = settings
        self.journal = journal
        #: The PLC's answers the database refused, by command id, until they are recorded
        #: (what the journal holds wins; this is for a journal that could not be written).
        self.unrecorded: dict[int, Journaled] = {}
        #: The equipment mode as last read from the PLC (``None`` until read): what a
        #: synchronous check (starting a batch) can know without a round trip.
        self.last_mode: str | None = None

    @property
    def gateway(self) -> PlcGateway:
        """The PLC; an engine built without one (record queries) refuses equipment steps."""
        if self.plc is None:
            raise PlcCommandFailed("this terminal has no PLC connection configured")
        return self.plc

    async def state(self) -> str:
        update_ = await self.read("state")
        return str(update_.value)

    async def state_or_none(self) -> str | None:
        if self.plc is None or self.plc.state is not ConnectionState.CONNECTED:
            return None
        try:
            return await self.state()
        except (PlcError, BatchError):
            return None

    async def read(self, tag: str) -> TagUpdate:
        try:
            update_ = await self.gateway.read(tag)
        except PlcError as exc:
            raise StepNotReady(f"cannot read {tag} from the PLC: {exc}") from exc
        if not update_.good:
            raise StepNotReady(f"{tag} from the PLC is not usable: {update_.reason}")
        if tag == "mode":
            self.last_mode = str(update_.value)
        return update_

    async def mode_or_none(self) -> str | None:
        """The equipment mode now (``production``/``service``), ``None`` when not readable."""
        if self.plc is None or self.plc.state is not ConnectionState.CONNECTED:
            return None
        try:
            return str((await self.read("mode")).value)
        except BatchError:
            return None

    async def wait_state(self, states: set[str]) -> str:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.plc_command_timeout_s
        while True:
            state = await self.state()
            if state in states:
                return state
            if loop.time() >= deadline:
                raise PlcCommandFailed(
                    f"the blender did not reach {' or '.join(sorted(states))} (it is {state})"
                )
            await asyncio.sleep(_STATE_POLL_S)

    async def wait_state_leaves(self, states: set[str]) -> str:
        """Wait until the PLC reports a state outside ``states`` (after it accepted a command,
        its state still reads the old one for up to a scan); return the new state."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.plc_command_timeout_s
        while True:
            state = await self.state()
            if state not in states:
                return state
            if loop.time() >= deadline:
                raise PlcCommandFailed(f"the blender stayed {state}")
            await asyncio.sleep(_STATE_POLL_S)

    async def command(
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
            return ", ".join(text_of(v) for v in result) or "accepted"

        await self._action(
            actor, batch_id, step_index, method, {"args": [plain(a) for a in args]}, call, then
        )
        return outputs[0] if outputs else ()

    async def write(
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
            text = text_of(update_.value)
            if capture is not None:
                capture["value"] = text
            return f"confirmed {text}"

        await self._action(
            actor, batch_id, step_index, "write", {"tag": tag, "value": str(value)}, write, then
        )
        return confirmed[0]

    async def _action(
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
            "arguments": plain(dict(arguments)),
        }
        with self.audit.transaction() as conn:
            result = conn.execute(
                insert(plc_command).values(
                    batch_id=batch_id,
                    step_index=step_index,
                    command=command,
                    arguments=canonical.dumps(plain(dict(arguments))),
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
        if self.journal is not None:
            try:
                self.journal.sending(command_id)
            except JournalError as exc:
                self._record_result(actor, command_id, "failed", f"nothing sent: {exc}",
                                    entity_details, None)  # fmt: skip
                raise PlcCommandFailed(f"PLC {command}: nothing sent: {exc}") from exc
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
        journaled = False
        if self.journal is not None:
            with contextlib.suppress(JournalError):  # the database below is the record
                self.journal.outcome(command_id, outcome, detail)
                journaled = True
        try:
            self._record_result(
                actor, command_id, outcome, detail, entity_details,
                then if failure is None else None,
            )  # fmt: skip
        except AuditWriteError as exc:
            if not journaled:
                self.unrecorded[command_id] = Journaled(True, outcome, detail, IN_MEMORY)
            raise ResultNotRecorded(
                f"PLC {command}: {said(outcome, detail)}. The record of it could not be"
                f" written ({exc}); the terminal keeps it and records it before anything else"
                " is done on this batch"
            ) from exc
        if failure is not None:
            raise PlcCommandFailed(f"PLC {command}: {failure}") from failure

    def _record_result(
        self,
        actor: Actor,
        command_id: int,
        outcome: str,
        detail: str,
        entity_details: Mapping[str, Any],
        then: Callable[[Connection], None] | None,
    ) -> None:
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
            if then is not None:
                then(conn)


def said(outcome: str, detail: str) -> str:
    """What the PLC did, as a sentence part (for a result that could not be recorded)."""
    return {
        "ok": f"the PLC accepted it ({detail})" if detail else "the PLC accepted it",
        "rejected": f"the PLC refused it ({detail})",
        "unknown": f"whether the PLC did it is not known ({detail})",
    }.get(outcome, f"it failed ({detail})")
