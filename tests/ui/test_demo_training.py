"""The demo site records its operators' and supervisors' training through the training
service: by the demo QA account (nobody records their own), visible in the audit trail."""

from __future__ import annotations

from sqlalchemy import select

from hmi.audit.tables import audit_event
from hmi.auth.tables import user_training
from hmi.batch.training import is_trained
from tests.ui.conftest import Kiosk


def test_demo_training_is_recorded_by_qa_through_the_service(kiosk: Kiosk) -> None:
    trainees = {u.user_id for u in kiosk.users.values() if u.role in ("operator", "supervisor")}
    with kiosk.site.engine.connect() as conn:
        events = conn.execute(
            select(audit_event.c.actor_id, audit_event.c.actor_role, audit_event.c.entity_id).where(
                audit_event.c.action == "training.recorded"
            )
        ).all()
        rows = conn.execute(select(user_training.c.user_id, user_training.c.trained_by)).all()
        recipe_ids = {
            r[0] for r in conn.execute(select(user_training.c.recipe_id).distinct()).all()
        }
        assert is_trained(conn, "operator", "PARA500-FB", 4)
    assert trainees and recipe_ids
    assert {e.entity_id for e in events} == trainees
    assert len(events) == len(rows) == len(trainees) * len(recipe_ids)
    assert {(e.actor_id, e.actor_role) for e in events} == {("qa", "qa")}
    assert all(trained_by == "qa" and user != "qa" for user, trained_by in rows)
    assert "training.record.refused" not in kiosk.actions()
