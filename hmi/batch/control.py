"""Hold, resume and abort: the batch first (with its deviation), then the blender."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, select, update

from hmi.audit.chain import SYSTEM, Actor
from hmi.batch.core import (
    BATCH_RECORD,
)
from hmi.batch.errors import (
    BatchError,
    BatchStateError,
    DeviationOpen,
    PlcCommandFailed,
)
from hmi.batch.model import (
    ACTIVE_STATUSES,
    BatchInfo,
    BatchStatus,
    DeviationKind,
)
from hmi.batch.outcome import DeviationSpec
from hmi.batch.pending import PendingCommands
from hmi.batch.rows import batch_info
from hmi.batch.tables import (
    batch,
    plc_command,
)
from hmi.clock import to_utc_text
from hmi.db import read_only

#: PLC states from which Resume has something to do at the PLC: Unhold a held drum, or
#: restore a run the PLC no longer has (tripped, stopped, restarted).
_RESUMABLE_BY_PLC = frozenset(
    {
        "Holding",
        "Held",
        "Aborting",
        "Aborted",
        "Stopping",
        "Stopped",
        "Resetting",
        "Idle",
        "Clearing",
    }
)


class BatchControl(PendingCommands):
    """Hold, resume and abort a batch and the blender under it."""

    async def hold(
        self, session: Any, batch_id: str, code: str | None = None, text: str | None = None
    ) -> BatchInfo:
        """Hold the batch at once: the PLC first (the drum stops), then the batch, with a hold
        deviation. Given without a reason (one key at the kiosk), the deviation is opened
        without one and blocks everything until the reason is given; a reason given with the
        hold (the command line) is recorded with it."""
        entity = (BATCH_RECORD, batch_id)
        actor = self.sessions.authorize(session, "batch.hold", entity=entity)
        reason: tuple[str, str, str] | None = None
        if text is not None or code is not None:
            why = self._reason_text(actor, entity, text, "batch.hold.refused")
            code = self._reason_code(actor, entity, code or "", "batch.hold.refused")
            reason = (code, why, actor.user_id)
        info = self.get(batch_id)
        if info.status is not BatchStatus.RUNNING:
            self._refuse(actor, "batch.hold.refused", entity, f"batch {info.status}", None)
            raise BatchStateError(f"batch {batch_id} is {info.status.label}; it cannot be held")
        plc_refused: BatchError | None = None
        self._holding.add(batch_id)
        try:
            try:
                await self._hold_equipment(actor, info)
            except BatchError as exc:
                plc_refused = exc  # the batch is held all the same; the screen says why
            with self.audit.transaction() as conn:
                if self._batch_row(conn, batch_id)["status"] == BatchStatus.RUNNING.value:
                    told = reason[1] if reason else f"held by {actor.user_id}; reason to follow"
                    self._set_held(conn, actor, info, told)
                    self._open_deviation(
                        conn,
                        actor,
                        batch_id,
                        info.current_step,
                        self._step_id(info),
                        DeviationSpec(
                            DeviationKind.HOLD,
                            f"batch held: {reason[1]}" if reason else
                            f"batch held at the kiosk by {actor.user_id}",
                            reason=reason,
                        ),
                    )  # fmt: skip
        finally:
            self._holding.discard(batch_id)
        self._changed()
        if plc_refused is not None:
            raise plc_refused
        return self.get(batch_id)

    async def resume(self, session: Any, batch_id: str, text: str) -> BatchInfo:
        """A supervisor resumes a held batch once its deviations are handled (Unhold on the PLC)."""
        entity = (BATCH_RECORD, batch_id)
        actor = self.sessions.authorize(session, "batch.resume", entity=entity)
        why = self._reason_text(actor, entity, text, "batch.resume.refused")
        await self.settle_pending(self.get(batch_id))
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
        run_active = await self._run_in_progress(info)
        state = await self.link.state_or_none() if run_active else None
        if run_active and state is None:
            self._refuse(actor, "batch.resume.refused", entity, "PLC not reachable", None)
            raise PlcCommandFailed(
                "the PLC cannot be reached: the blend cannot be resumed until it is back"
            )
        restored: list[str] = []

        def resumed(conn: Connection) -> None:
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
                details={"plc_state": state, "plc_restored": list(restored)},
            )

        if not run_active or state not in _RESUMABLE_BY_PLC:
            with self.audit.transaction() as conn:
                resumed(conn)
        elif state in ("Holding", "Held"):
            self._plc_restoring = True
            try:
                if state == "Holding":  # the drum is still slowing down: unhold once it is held
                    await self.link.wait_state({"Held"})
                await self.link.command(actor, batch_id, info.current_step, "unhold", then=resumed)
            except PlcCommandFailed as exc:
                self._plc_restoring = False
                raise await self._resume_refused_by_plc(actor, info, "Unhold", exc) from exc
            try:
                await self._settle(info, {"Holding", "Held"}, "Unhold")
            finally:
                self._plc_restoring = False
        else:
            await self._restore_run(actor, info, str(state), restored, resumed)
        self._changed()
        return self.get(batch_id)

    async def _restore_run(
        self,
        actor: Actor,
        info: BatchInfo,
        state: str,
        restored: list[str],
        resumed: Callable[[Connection], None],
    ) -> None:
        """Resume a blend the PLC no longer runs (it tripped, or restarted and lost its state):
        bring the PLC back to Idle, write again the setpoints the batch last wrote (each with
        intent, read-back and result), then Start; the batch is running again only once the
        PLC accepted Start."""
        batch_id, index = info.batch_id, info.current_step
        self._plc_restoring = True
        try:
            if state == "Aborting":
                state = await self.link.wait_state({"Aborted"})
            if state == "Aborted":
                await self.link.command(actor, batch_id, index, "clear")
                restored.append("clear")
                state = await self.link.wait_state({"Stopped"})
            if state in ("Stopping", "Resetting", "Clearing"):
                state = await self.link.wait_state({"Stopped", "Idle"})
            if state in ("Stopped", "Complete"):
                await self.link.command(actor, batch_id, index, "reset")
                restored.append("reset")
                state = await self.link.wait_state({"Idle"})
            if state != "Idle":
                raise PlcCommandFailed(
                    f"the blender is {state}; it must be Idle to restart the blend"
                )
            for tag, value in self._setpoints_written(batch_id).items():
                await self.link.write(actor, batch_id, index, tag, value)
                restored.append(f"{tag}={value}")
            await self.link.command(actor, batch_id, index, "start", then=resumed)
            self._lost_runs.discard((batch_id, index))
            await self._settle(info, {"Idle"}, "Start")
        except PlcCommandFailed as exc:
            raise await self._resume_refused_by_plc(
                actor, info, "the restart of the blend", exc
            ) from exc
        finally:
            self._plc_restoring = False

    async def _settle(self, info: BatchInfo, before: set[str], what: str) -> None:
        """After the PLC accepted a Resume's command, wait until its state leaves the one it
        had before (the state read in between is the old one, not a new trip). A PLC that
        accepted but stays there is what the record says: the batch is held again."""
        try:
            await self.link.wait_state_leaves(before)
        except PlcCommandFailed as exc:
            with self.audit.transaction() as conn:
                row = self._batch_row(conn, info.batch_id)
                if row["status"] == BatchStatus.RUNNING.value:
                    self._set_held(
                        conn, SYSTEM, batch_info(row), f"the PLC accepted {what} but {exc}"
                    )
            self._changed()

    def _setpoints_written(self, batch_id: str) -> dict[str, Decimal]:
        """The last value the batch wrote to each setpoint tag and the PLC confirmed."""
        latest: dict[str, Decimal] = {}
        with read_only(self.engine) as conn:
            rows = conn.execute(
                select(plc_command.c.arguments)
                .where(
                    plc_command.c.batch_id == batch_id,
                    plc_command.c.command == "write",
                    plc_command.c.result.in_(("ok", "confirmed_on_recovery")),
                )
                .order_by(plc_command.c.id)
            ).all()
        for (arguments,) in rows:
            parsed = json.loads(str(arguments))
            latest[str(parsed["tag"])] = Decimal(str(parsed["value"]))
        return latest

    async def _resume_refused_by_plc(
        self, actor: Actor, info: BatchInfo, what: str, exc: PlcCommandFailed
    ) -> PlcCommandFailed:
        """The PLC refused: the batch stays held, and its hold reason is now the PLC's (the
        error to raise is returned)."""
        plc_reason: str | None = None
        with contextlib.suppress(BatchError):
            plc_reason = str((await self.link.read("last_command_result")).value)
        reason = f"the PLC refused {what}: {plc_reason or exc}"
        with self.audit.transaction() as conn:
            conn.execute(
                update(batch).where(batch.c.batch_id == info.batch_id).values(hold_reason=reason)
            )
            self.audit.record(
                conn,
                "batch.resume.refused",
                actor,
                entity=(BATCH_RECORD, info.batch_id),
                field="hold_reason",
                old_value=info.hold_reason,
                new_value=reason,
                reason=reason,
                details={"error": str(exc)},
            )
        self._changed()
        return PlcCommandFailed(f"{reason}; the batch stays held")

    async def abort(self, session: Any, batch_id: str, code: str, text: str) -> BatchInfo:
        """A supervisor aborts the batch now (and the blender if it runs); the abort deviation
        then needs a second person's co-signature before QA can close the record."""
        entity = (BATCH_RECORD, batch_id)
        actor = self.sessions.authorize(session, "batch.abort", entity=entity)
        why = self._reason_text(actor, entity, text, "batch.abort.refused")
        code = self._reason_code(actor, entity, code, "batch.abort.refused")
        await self.settle_pending(self.get(batch_id))
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
                DeviationSpec(
                    DeviationKind.ABORT,
                    f"batch aborted: {why}",
                    critical=True,
                    reason=(code, why, actor.user_id),
                ),
            )
        self._changed()
        if run_active:
            state = await self.link.state_or_none()
            if state is None:
                self._plc_unreachable(actor, batch_id, "abort")
            elif state not in ("Aborting", "Aborted"):
                await self.link.command(actor, batch_id, info.current_step, "abort")
        return self.get(batch_id)
