"""Hold, resume and abort: the batch first (with its deviation), then the blender."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from hmi.batch.core import (
    BATCH_RECORD,
    DeviationSpec,
    EngineCore,
)
from hmi.batch.errors import (
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
from hmi.batch.tables import (
    batch,
)
from hmi.clock import to_utc_text
from hmi.db import read_only


class BatchControl(EngineCore):
    """Hold, resume and abort a batch and the blender under it."""

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
                DeviationSpec(
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
        run_active = await self._run_in_progress(info)
        if run_active and await self.link.state_or_none() is None:
            self._refuse(actor, "batch.resume.refused", entity, "PLC not reachable", None)
            raise PlcCommandFailed(
                "the PLC cannot be reached: the blend cannot be resumed until it is back"
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
        if run_active:
            state = await self.link.state_or_none()
            if state == "Holding":  # the drum is still slowing down: unhold once it is held
                state = await self.link.wait_state({"Held"})
            if state == "Held":
                await self.link.command(actor, batch_id, info.current_step, "unhold")
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
                DeviationSpec(
                    DeviationKind.ABORT,
                    f"batch aborted: {why}",
                    critical=True,
                    requires_cosign=True,
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
