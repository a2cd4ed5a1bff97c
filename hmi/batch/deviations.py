"""Deviations after they are opened: reasons, override and skip requests, and the two-person
co-signature that closes them and carries out what they asked for."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update

from hmi.audit.chain import SYSTEM, Actor
from hmi.auth.roles import Meaning, allowed
from hmi.auth.signatures import Signature
from hmi.batch.core import (
    BATCH_RECORD,
    EngineCore,
)
from hmi.batch.errors import (
    BatchError,
    BatchStateError,
    CosignRefused,
    SignatureProblem,
    StepOutOfOrder,
)
from hmi.batch.model import (
    ACTIVE_STATUSES,
    BatchStatus,
    DeviationInfo,
    DeviationKind,
    DeviationStatus,
    StepStatus,
)
from hmi.batch.outcome import DeviationSpec, NewValue
from hmi.batch.rows import (
    DEVIATION_RECORD,
    batch_info,
    deviation_ref,
    digest,
    plain,
    plc_to_parameter,
    text_of,
)
from hmi.batch.tables import (
    deviation,
)
from hmi.clock import to_utc_text


class DeviationHandling(EngineCore):
    """Reasons, override/skip requests and co-signatures of deviations."""

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
                    DeviationSpec(
                        kind,
                        f"step '{current.title}' {kind.value} requested",
                        critical=True,
                        action={
                            "type": kind.value,
                            "step_index": info.current_step,
                            "data": plain(dict(data or {})),
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
        ref = deviation_ref(info)
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
        current_batch = self.get(info.batch_id)
        recipe = self.recipe_of(current_batch)
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
                    values = [
                        NewValue(str(k), text_of(v), "entered") for k, v in sorted(data.items())
                    ]
                    self._finish_step(
                        conn,
                        Actor(request.signer_id, request.signer_role.value, request.session_id),
                        batch_info(row),
                        index,
                        step,
                        StepStatus.OVERRIDDEN if kind == "override" else StepStatus.SKIPPED,
                        values,
                        [],
                        digest(data),
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
            old = await self.link.read(parameter.write_tag)
            await self._apply_parameter(
                Actor(request.signer_id, request.signer_role.value, request.session_id),
                current_batch,
                int(info.step_index or 0),
                str(info.step_id),
                parameter,
                name,
                plc_to_parameter(parameter, old.value),
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
                # An event about the deviation: the record of its batch binds the row by it
                self.audit.record(
                    conn,
                    "deviation.action.done",
                    SYSTEM,
                    entity=entity,
                    field="action_done",
                    old_value="0",
                    new_value="1",
                    details={"batch_id": info.batch_id, "action": "parameter", "name": name},
                )
        self._changed()
        return self.deviation(deviation_id)
