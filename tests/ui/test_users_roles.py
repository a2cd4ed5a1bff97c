"""Users screen: an administrator changes an account's roles with a reason (F8); a refused
combination shows the service's sentence and changes nothing."""

from __future__ import annotations

from sqlalchemy import select
from textual.pilot import Pilot
from textual.widgets import DataTable, Input

from hmi.audit.tables import audit_event
from hmi.screens.modals.form import FormDialog
from hmi.screens.users import UsersScreen
from tests.ui.conftest import Kiosk
from tests.ui.helpers import login, settle


async def _set_roles(pilot: Pilot[None], user_id: str, roles: str, reason: str) -> None:
    screen = pilot.app.screen
    assert isinstance(screen, UsersScreen)
    ids = [r.user_id for r in screen.rows]
    screen.query_one(DataTable).move_cursor(row=ids.index(user_id))
    await pilot.press("f8")
    await pilot.pause()
    dialog = pilot.app.screen
    assert isinstance(dialog, FormDialog)
    dialog.query_one("#field-roles", Input).value = roles
    dialog.query_one("#field-reason", Input).value = reason
    await pilot.press("f2")
    await settle(pilot)


async def test_admin_sets_roles_and_refused_combination_changes_nothing(kiosk: Kiosk) -> None:
    app = kiosk.app()
    async with app.run_test(size=(120, 40)) as pilot:
        kiosk.site.clock.advance(30)  # type: ignore[attr-defined]
        await login(pilot, "admin", kiosk.users["admin"].password, kiosk.code("admin"))
        assert isinstance(app.screen, UsersScreen)
        await settle(pilot)
        operator = next(r for r in app.screen.rows if r.user_id == "operator")
        assert operator.roles[0].value == "operator"
        await pilot.press("f8")
        await pilot.pause()
        assert isinstance(app.screen, FormDialog)
        await pilot.press("escape")
        await pilot.pause()

        await _set_roles(pilot, "operator", "operator, supervisor", "promoted to shift lead")
        assert isinstance(app.screen, UsersScreen)
        operator = next(r for r in app.screen.rows if r.user_id == "operator")
        assert [r.value for r in operator.roles] == ["operator", "supervisor"]

        await _set_roles(pilot, "viewer", "admin,operator", "cover the night shift")
        assert isinstance(app.screen, UsersScreen)
        notes = [n.message for n in app._notifications]  # type: ignore[attr-defined]
        assert (
            "Segregation of duties: admin cannot be combined with production roles (operator)."
            in notes
        ), notes
        viewer = next(r for r in app.screen.rows if r.user_id == "viewer")
        assert [r.value for r in viewer.roles] == ["viewer"]

    with kiosk.site.engine.connect() as conn:
        changed = conn.execute(
            select(audit_event.c.entity_id, audit_event.c.new_value, audit_event.c.reason).where(
                audit_event.c.action == "user.roles.changed"
            )
        ).all()
    assert [tuple(r) for r in changed] == [
        ("operator", "operator,supervisor", "promoted to shift lead")
    ]
