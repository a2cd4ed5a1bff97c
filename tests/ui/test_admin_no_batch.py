"""An administrator cannot run a batch: the production screens are not offered to the role,
navigating there is turned away, and the engine itself refuses the admin's session and records
the refusal (the UI gates, the service enforces)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from hmi.audit.tables import audit_event
from hmi.auth.errors import PermissionDenied
from hmi.screens.batch_run import BatchRunScreen
from hmi.screens.messages import NavigateRequested
from hmi.screens.recipes import RecipesScreen
from tests.ui.conftest import Kiosk
from tests.ui.helpers import login, settle


def denials(kiosk: Kiosk) -> list[dict[str, object]]:
    with kiosk.site.engine.connect() as conn:
        rows = conn.execute(
            select(audit_event.c.actor_id, audit_event.c.details).where(
                audit_event.c.action == "auth.permission.denied"
            )
        ).all()
    out = []
    for user_id, details in rows:
        data = json.loads(details) if isinstance(details, str) else dict(details)
        out.append({"user_id": user_id, **data})
    return out


async def test_admin_sees_no_batch_screens_and_the_engine_refuses(kiosk: Kiosk) -> None:
    app = kiosk.app()
    async with app.run_test(size=(120, 40)) as pilot:
        kiosk.site.clock.advance(30)  # type: ignore[attr-defined]
        await login(pilot, "admin", kiosk.users["admin"].password, kiosk.code("admin"))
        session = app.ctx.session
        assert session is not None and session.role.value == "admin"
        entries = {e.key: e.enabled for e in app.menu_entries()}
        assert not entries["recipes"] and not entries["batch"] and not entries["overview"]
        assert entries["users"]  # logged in and working, just not in production
        for target in ("recipes", "batch"):
            app.post_message(NavigateRequested(target))
            await settle(pilot)
            assert not isinstance(app.screen, RecipesScreen | BatchRunScreen)
        assert not RecipesScreen(app.ctx).check_action("start_batch", ())
        assert BatchRunScreen(app.ctx).check_action("complete_step", ()) is False
        batches = app.ctx.batches
        assert batches is not None
        with pytest.raises(PermissionDenied):
            batches.start_batch(session, "PARA500-FB", 4, "B-UI-0009")
        with pytest.raises(PermissionDenied):
            await batches.start_step(session, "B-UI-0009", "line-clearance")
    assert batches.list_batches() == []
    refused = [d["action"] for d in denials(kiosk) if d["user_id"] == "admin"]
    assert refused == ["batch.start", "batch.step.complete"]
