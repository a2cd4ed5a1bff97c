"""The demo site records its operators' and supervisors' training through the training
service: by the demo QA account (nobody records their own), visible in the audit trail."""

from __future__ import annotations

from sqlalchemy import select

from hmi.audit.tables import audit_event
from hmi.auth.tables import user_training
from hmi.batch.training import is_trained
from tests.ui.conftest import Kiosk


def test_demo_training_is_recorded_by_qa_through_the_service(kiosk: Kiosk) -> None:
    """QA records the operators' and supervisors' training; the supervisor records QA's (QA
    signs a recipe's review step), since nobody records their own."""
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
        assert is_trained(conn, "qa", "CLV-BLENDER-01", 2)
    assert trainees and recipe_ids
    assert {e.entity_id for e in events} == trainees | {"qa"}
    assert len(events) == len(rows) == (len(trainees) + 1) * len(recipe_ids)
    by = {(e.entity_id, e.actor_id, e.actor_role) for e in events}
    assert by == {(t, "qa", "qa") for t in trainees} | {("qa", "supervisor", "supervisor")}
    assert all(trained_by != user for user, trained_by in rows)
    assert "training.record.refused" not in kiosk.actions()
