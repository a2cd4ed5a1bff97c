"""Training records (21 CFR 11.10(i)): who has been trained to execute which recipe.

A supervisor (or QA) records that a person was trained on a recipe, with the evidence (course,
document, date). Records are append-only: withdrawing a training is a newer row. The batch
engine's training gate reads the latest applicable row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, insert, select

from hmi.audit.chain import AuditLog
from hmi.auth.accounts import UserStatus, UserStore, normalise_user_id
from hmi.auth.errors import AccountStateError, InvalidUserInput, PermissionDenied, UnknownUser
from hmi.auth.sessions import Session, SessionService
from hmi.auth.tables import user_training
from hmi.clock import Clock, from_utc_text, to_utc_text

RECIPE_ID_MAX = 64
EVIDENCE_MIN = 5


@dataclass(frozen=True)
class TrainingRecord:
    """One row of a person's training history."""

    user_id: str
    recipe_id: str
    recipe_version: int | None
    status: str
    trained_by: str
    at: datetime
    evidence: str | None


class TrainingService:
    """Records and answers who is trained on which recipe."""

    def __init__(
        self,
        *,
        engine: Engine,
        audit: AuditLog,
        clock: Clock,
        sessions: SessionService,
        store: UserStore,
    ) -> None:
        self.engine = engine
        self.audit = audit
        self.clock = clock
        self.sessions = sessions
        self.store = store

    def record(
        self,
        session: Session,
        user_id: str,
        recipe_id: str,
        *,
        evidence: str,
        version: int | None = None,
        withdraw: bool = False,
    ) -> TrainingRecord:
        """Record (or withdraw) a person's training on a recipe, all versions or one."""
        typed, user_id = user_id, normalise_user_id(user_id)
        entity = ("user", user_id)
        actor = self.sessions.authorize(
            session, "training.record", entity=("user", self.store.audit_subject(typed))
        )
        recipe_id = recipe_id.strip()
        if not recipe_id or len(recipe_id) > RECIPE_ID_MAX:
            raise InvalidUserInput(f"recipe ID must be 1-{RECIPE_ID_MAX} characters")
        if version is not None and version < 1:
            raise InvalidUserInput("a recipe version is a whole number from 1")
        evidence = evidence.strip()
        if len(evidence) < EVIDENCE_MIN:
            raise InvalidUserInput(
                f"say what the training was (at least {EVIDENCE_MIN} characters)"
            )
        if user_id == session.user_id:
            self.audit.record_now(
                "training.record.refused", actor, entity=entity, reason="own training",
                details={"recipe_id": recipe_id},
            )  # fmt: skip
            raise PermissionDenied(
                "training.record", session.role.value, "nobody may record their own training"
            )
        now = self.clock.now()
        status = "withdrawn" if withdraw else "trained"
        with self.audit.transaction() as conn:
            user = self.store.get(conn, user_id)
            if user is None:
                raise UnknownUser(f"no account with the user ID {user_id!r}")
            if user.status == UserStatus.DISABLED and not withdraw:
                raise AccountStateError(f"{user_id} is disabled")
            conn.execute(
                insert(user_training).values(
                    user_id=user_id,
                    recipe_id=recipe_id,
                    recipe_version=None if version is None else str(version),
                    status=status,
                    trained_by=session.user_id,
                    ts=to_utc_text(now),
                    evidence=evidence,
                    session_id=session.session_id,
                    terminal_id=self.audit.terminal_id,
                )
            )
            self.audit.record(
                conn,
                "training.withdrawn" if withdraw else "training.recorded",
                actor,
                entity=entity,
                field=f"training:{recipe_id}",
                new_value=f"{status} ({'all versions' if version is None else f'v{version}'})",
                reason=evidence,
                details={"recipe_id": recipe_id, "recipe_version": version, "status": status},
            )
        return TrainingRecord(user_id, recipe_id, version, status, session.user_id, now, evidence)

    def history(self, user_id: str | None = None) -> list[TrainingRecord]:
        """Training rows, oldest first (one person's, or everyone's)."""
        query = select(user_training).order_by(user_training.c.id)
        if user_id is not None:
            query = query.where(user_training.c.user_id == normalise_user_id(user_id))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            TrainingRecord(
                row.user_id,
                row.recipe_id,
                None if row.recipe_version is None else int(row.recipe_version),
                row.status,
                row.trained_by,
                from_utc_text(row.ts),
                row.evidence,
            )
            for row in rows
        ]

    def is_trained(self, user_id: str, recipe_id: str, version: int) -> bool:
        """The latest row that covers this version decides."""
        for record in reversed(self.history(user_id)):
            if record.recipe_id == recipe_id and record.recipe_version in (None, version):
                return record.status == "trained"
        return False
