"""QA review by exception: dispositions, the signed audit trail review, release and rejection."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select, update

from hmi.auth.roles import Meaning
from hmi.auth.signatures import RecordRef, Signature
from hmi.batch.core import (
    BATCH_RECORD,
    EngineCore,
    one_line,
)
from hmi.batch.errors import (
    BatchError,
    BatchStateError,
    ReleaseBlocked,
    SignatureProblem,
)
from hmi.batch.model import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    BatchInfo,
    BatchStatus,
    DeviationInfo,
    DeviationStatus,
)
from hmi.batch.rows import (
    DEVIATION_RECORD,
    batch_info,
    deviation_info,
    disposition_ref,
)
from hmi.batch.tables import (
    batch,
    deviation,
)
from hmi.clock import to_utc_text
from hmi.db import read_only

#: What a QA disposition's signature means, by decision: the one rule (engine, screen, record).
DISPOSITION_MEANINGS: dict[str, Meaning] = {
    "accepted": Meaning.APPROVED,
    "rejected": Meaning.REJECTED,
}


class QaReview(EngineCore):
    """QA dispositions, audit trail review, release and rejection."""

    def disposition_record(self, deviation_id: str, disposition: str, comment: str) -> RecordRef:
        """What QA signs to disposition a deviation: its facts, the decision and the comment
        (written as it will be stored: runs of white space made one space)."""
        return disposition_ref(self.deviation(deviation_id), disposition, one_line(comment))

    def qa_disposition(
        self,
        session: Any,
        deviation_id: str,
        disposition: str,
        comment: str,
        signature: Signature,
    ) -> DeviationInfo:
        """QA's disposition of a handled deviation, as an e-signature over the decision:
        ``accepted`` (no impact on quality, or an acceptable one; meaning "Approved") or
        ``rejected`` (the batch cannot be released; meaning "Rejected")."""
        entity = (DEVIATION_RECORD, deviation_id)
        actor = self.sessions.authorize(session, "deviation.disposition", entity=entity)
        why = self._reason_text(actor, entity, comment, "deviation.disposition.refused")
        meaning = DISPOSITION_MEANINGS.get(disposition)
        refusal: BatchError | None = None
        if meaning is None:
            refusal = BatchStateError("the disposition is 'accepted' or 'rejected'")
        else:
            # The signature is checked before the write lock is taken, against the deviation as
            # it is now; under the lock the deviation must still be exactly what was signed.
            try:
                signed = disposition_ref(self.deviation(deviation_id), disposition, why)
                self._require_valid(signature, signed, meaning)
                if signature.signer_id != actor.user_id:
                    raise SignatureProblem(
                        "the disposition must be signed by the logged-in QA user"
                    )
            except BatchError as exc:
                refusal = exc
        with self.audit.transaction() as conn:
            row = self._deviation_row(conn, deviation_id) if refusal is None else None
            if row is not None:
                status = batch_info(self._batch_row(conn, str(row["batch_id"]))).status
                if row["status"] != DeviationStatus.CLOSED.value:
                    refusal = BatchStateError(
                        f"deviation {deviation_id} still needs its reason or co-signature"
                    )
                elif row["disposition"] is not None:
                    refusal = BatchStateError(f"deviation {deviation_id} already has a disposition")
                elif status in ACTIVE_STATUSES or status in FINAL_STATUSES:
                    refusal = BatchStateError(
                        f"batch {row['batch_id']} is {status.label}; QA reviews it after completion"
                    )
                elif disposition_ref(deviation_info(row), disposition, why) != signed:
                    refusal = SignatureProblem(
                        f"deviation {deviation_id} changed while it was being signed; sign again"
                    )
            if refusal is not None:
                self.audit.record(
                    conn, "deviation.disposition.refused", actor, entity=entity, reason=str(refusal)
                )
            else:
                assert row is not None and meaning is not None
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
                self._link_signature(
                    conn,
                    str(row["batch_id"]),
                    signature,
                    "deviation.disposition",
                    deviation_id=deviation_id,
                )
                self.audit.record(
                    conn,
                    "deviation.dispositioned",
                    actor,
                    entity=entity,
                    field="disposition",
                    new_value=disposition,
                    reason=why,
                    meaning=meaning.value,
                    details={"batch_id": row["batch_id"], "signature_id": signature.signature_id},
                )
        if refusal is not None:
            raise refusal
        return self.deviation(deviation_id)

    def review_audit_trail(self, session: Any, batch_id: str, signature: Signature) -> BatchInfo:
        """QA signs 'audit trail reviewed' over the batch record (a documented, signed review)."""
        entity = (BATCH_RECORD, batch_id)
        actor = self.sessions.authorize(session, "batch.review", entity=entity)
        with read_only(self.engine) as conn:
            info = batch_info(self._batch_row(conn, batch_id))
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
            info, ref, problems = self._decision_state(conn, batch_id, release=release)
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
        try:
            self._write_decision(
                actor, batch_id, signature, ref, status, info, why, release=release
            )
        except ReleaseBlocked as exc:
            self._refuse(
                actor, f"batch.{verb}.refused", entity, str(exc), {"problems": exc.problems}
            )
            raise
        return self.get(batch_id)

    def _write_decision(
        self,
        actor: Any,
        batch_id: str,
        signature: Signature,
        ref: Any,
        status: BatchStatus,
        info: BatchInfo,
        why: str | None,
        *,
        release: bool,
    ) -> None:
        verb = "release" if release else "reject"
        entity = (BATCH_RECORD, batch_id)
        meaning = Meaning.RELEASED if release else Meaning.REJECTED
        with self.audit.transaction() as conn:
            # The checks again, under the write lock: nothing may have changed since they ran.
            _, now_ref, now_problems = self._decision_state(conn, batch_id, release=release)
            if now_problems or now_ref.sha256 != ref.sha256:
                changed = now_problems or ["the batch record changed while it was being signed"]
                raise ReleaseBlocked(changed)
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

    def _decision_state(
        self, conn: Connection, batch_id: str, *, release: bool
    ) -> tuple[BatchInfo, Any, list[str]]:
        """The batch, the record reference a decision signs, and what blocks the decision."""
        info = batch_info(self._batch_row(conn, batch_id))
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
        return info, ref, problems

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
