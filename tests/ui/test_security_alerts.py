"""Security alerts screen: a lockout caused at the real login screen is listed for the
administrator (time with its UTC offset, kind, user, terminal, details) and can be acknowledged;
an operator's menu dims the screen and the service refuses the operator's query."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, OptionList

from hmi.audit.tables import audit_event
from hmi.auth.alerts import AlertState
from hmi.auth.errors import AuthenticationFailed, PermissionDenied
from hmi.screens.login import LoginScreen
from hmi.screens.messages import NavigateRequested
from hmi.screens.modals.menu import MenuDialog
from hmi.screens.overview import OverviewScreen
from hmi.screens.security_alerts import SecurityAlertsScreen
from tests.ui.conftest import Kiosk
from tests.ui.helpers import login, settle, text_of

WRONG = "not-the-password-at-all"


def _menu_number(key: str) -> str:
    from hmi.app import SCREENS

    return str(list(SCREENS).index(key) + 1)


async def _open_alerts(pilot: Pilot[None]) -> SecurityAlertsScreen:
    await pilot.press("f1")
    await pilot.pause()
    assert isinstance(pilot.app.screen, MenuDialog)
    await pilot.press(_menu_number("security"))
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, SecurityAlertsScreen), screen
    for _ in range(100):
        if not screen.loading:
            break
        await pilot.pause(0.05)
    await settle(pilot)
    return screen


def _cells(screen: SecurityAlertsScreen) -> list[list[str]]:
    table = screen.query_one(DataTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def test_lockout_at_the_login_screen_is_listed_for_the_admin_and_acknowledged(
    kiosk: Kiosk,
) -> None:
    app = kiosk.app()
    threshold = kiosk.site.settings.password.lockout_threshold
    async with app.run_test(size=(120, 40)) as pilot:
        for _ in range(threshold):
            await login(pilot, "operator", WRONG)
            assert isinstance(app.screen, LoginScreen)
        assert "locked" in text_of(pilot, "#login-message")

        kiosk.site.clock.advance(30)  # type: ignore[attr-defined]
        await login(pilot, "admin", kiosk.users["admin"].password, kiosk.code("admin"))
        screen = await _open_alerts(pilot)
        rows = _cells(screen)
        assert len(rows) == 1, rows
        raised, user, kind, status, terminal, details = rows[0]
        assert raised == "2026-03-02 07:30:00 +00:00"
        assert (kind, user, terminal, status) == ("Account locked", "operator", "KIOSK-01", "OPEN")
        assert details == "Account operator locked aft..."
        assert f"Account operator locked after {threshold} consecutive failed" in text_of(
            pilot, "#alert-detail"
        )
        assert "Not acknowledged yet" in text_of(pilot, "#alert-detail")
        assert "Unlock the account on the Users screen (F4)" in text_of(pilot, "#alert-detail")
        assert app.screen.check_action("acknowledge", ()) is True

        await pilot.press("f2")
        await settle(pilot)
        for _ in range(100):
            if _cells(screen)[0][3] != "OPEN":
                break
            await pilot.pause(0.05)
        assert _cells(screen)[0][3] == "Acknowledged: admin"
        assert "Acknowledged by admin at 2026-03-02 07:30:30 +00:00" in text_of(
            pilot, "#alert-detail"
        )
        assert app.screen.check_action("acknowledge", ()) is False

    actions = kiosk.actions()
    assert actions.count("auth.login.failed") == threshold
    assert "auth.account.locked" in actions and "auth.alert.raised" in actions
    assert actions.count("auth.alert.acknowledged") == 1


async def test_operator_cannot_open_security_alerts_and_the_service_refuses(kiosk: Kiosk) -> None:
    for _ in range(kiosk.site.settings.password.lockout_threshold):
        with pytest.raises(AuthenticationFailed):
            kiosk.auth.sessions.login("viewer", WRONG)
    app = kiosk.app()
    async with app.run_test(size=(120, 40)) as pilot:
        await login(pilot, "operator", kiosk.users["operator"].password)
        home = app.screen
        assert isinstance(home, OverviewScreen)
        await pilot.press("f1")
        await pilot.pause()
        menu = app.screen
        assert isinstance(menu, MenuDialog)
        option = menu.query_one(OptionList).get_option("security")
        assert option.disabled
        await pilot.press(_menu_number("security"))
        await pilot.pause()
        assert app.screen is menu  # a dimmed entry cannot be picked
        await pilot.press("escape")
        await pilot.pause()
        app.post_message(NavigateRequested("security"))
        await settle(pilot)
        assert app.screen is home
        notes = [n.message for n in app._notifications]  # type: ignore[attr-defined]
        assert "Your role may not open that screen." in notes

        session = kiosk.auth.sessions.current
        assert session is not None and session.user_id == "operator"
        with pytest.raises(PermissionDenied):
            kiosk.auth.alerts.history(session)
    with kiosk.site.engine.connect() as conn:
        denied = conn.execute(
            select(audit_event.c.actor_id, audit_event.c.details).where(
                audit_event.c.action == "auth.permission.denied"
            )
        ).all()
    assert [(u, json.loads(d)["action"]) for u, d in denied] == [
        ("operator", "security_alert.view")
    ]


# -- the picture ------------------------------------------------------------------------------


def _three_alerts(kiosk: Kiosk) -> None:
    """An unlocked (resolved) lockout, an acknowledged one and an open one."""
    clock: Any = kiosk.site.clock
    threshold = kiosk.site.settings.password.lockout_threshold
    for user_id in ("viewer", "maint", "operator"):
        for _ in range(threshold):
            with pytest.raises(AuthenticationFailed):
                kiosk.auth.sessions.login(user_id, WRONG, "000000")
        clock.advance(60)
    clock.advance(30)
    admin = kiosk.auth.sessions.login("admin", kiosk.users["admin"].password, kiosk.code("admin"))
    kiosk.auth.users.unlock(admin, "viewer", reason="identity checked at the desk")
    maint = next(a for a in kiosk.auth.alerts.alerts(admin) if a.subject_user_id == "maint")
    kiosk.auth.alerts.acknowledge(admin, maint.alert_id)
    states = sorted(a.state.value for a in kiosk.auth.alerts.history(admin))
    assert states == [AlertState.ACKNOWLEDGED, AlertState.OPEN, AlertState.RESOLVED]
    kiosk.auth.sessions.logout(admin)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_security_alerts_snapshot(
    size: tuple[int, int], kiosk: Kiosk, snap_compare: Callable[..., bool]
) -> None:
    _three_alerts(kiosk)

    async def run_before(pilot: Pilot[None]) -> None:
        pilot.app.screen.query_one("#user-id", Input)  # the login screen is up
        kiosk.site.clock.advance(30)  # type: ignore[attr-defined]
        await login(pilot, "admin", kiosk.users["admin"].password, kiosk.code("admin"))
        await _open_alerts(pilot)

    assert snap_compare(kiosk.app(), terminal_size=size, run_before=run_before)
