"""Login, failures and lockout, idle lock and unlock, quitting (Pilot, real services)."""

from __future__ import annotations

from datetime import timedelta

from hmi.auth.sessions import SessionState
from hmi.screens.lock import LockScreen
from hmi.screens.login import LoginScreen
from hmi.screens.modals.confirm import ConfirmDialog
from hmi.screens.overview import OverviewScreen
from hmi.screens.users import UsersScreen
from tests.ui.conftest import Kiosk
from tests.ui.helpers import login, settle, text_of, type_into


async def test_wrong_password_then_lockout(kiosk: Kiosk) -> None:
    app = kiosk.app()
    async with app.run_test(size=(100, 34)) as pilot:
        assert isinstance(app.screen, LoginScreen)
        await login(pilot, "operator", "not-the-password")
        assert text_of(pilot, "#login-message") == "User ID or password is not correct."
        assert app.screen.query_one("#password").value == ""  # type: ignore[attr-defined]
        for _ in range(4):
            await login(pilot, "operator", "not-the-password")
        assert "now locked" in text_of(pilot, "#login-message")
        await login(pilot, "operator", kiosk.users["operator"].password)
        assert "locked after repeated failed attempts" in text_of(pilot, "#login-message")
        assert isinstance(app.screen, LoginScreen)
    actions = kiosk.actions()
    assert actions.count("auth.login.failed") >= 5


async def test_totp_needed_for_supervisor_then_login(kiosk: Kiosk) -> None:
    app = kiosk.app()
    async with app.run_test(size=(100, 34)) as pilot:
        await login(pilot, "supervisor", kiosk.users["supervisor"].password)
        assert text_of(pilot, "#login-message") == (
            "Enter the 6-digit code from your authenticator."
        )
        assert app.screen.focused is app.screen.query_one("#totp")
        await type_into(pilot, "#password", kiosk.users["supervisor"].password)
        await type_into(pilot, "#totp", "000000")
        await pilot.press("f2")
        await settle(pilot)
        assert text_of(pilot, "#login-message") in {
            "The authenticator code is not correct.",
        }
        await login(
            pilot, "supervisor", kiosk.users["supervisor"].password, kiosk.code("supervisor")
        )
        assert isinstance(app.screen, OverviewScreen)
        header = str(app.screen.query_one("#header-text").render())
        assert "supervisor (supervisor)" in header


async def test_idle_warning_lock_and_unlock(kiosk: Kiosk) -> None:
    app = kiosk.app()
    clock = kiosk.site.clock
    async with app.run_test(size=(100, 34)) as pilot:
        await login(pilot, "operator", kiosk.users["operator"].password)
        assert isinstance(app.screen, OverviewScreen)
        limit = kiosk.site.settings.session.idle_lock_minutes * 60
        clock.advance(limit - 10)  # type: ignore[attr-defined]
        app.check_idle_lock()
        await pilot.pause()
        assert "Locking in 10 s" in str(app.screen.query_one("#header-text").render())
        clock.advance(11)  # type: ignore[attr-defined]
        app.check_idle_lock()
        await settle(pilot)
        assert isinstance(app.screen, LockScreen)
        session = kiosk.auth.sessions.current
        assert session is not None and session.state is SessionState.LOCKED
        header = str(app.screen.query_one("#header-text").render())
        assert "User: locked" in header
        assert not app.screen.query("#tiles")  # no process data while locked
        await type_into(pilot, "#unlock-password", "wrong-password-here")
        await pilot.press("enter")
        await settle(pilot)
        assert text_of(pilot, "#lock-message") == "The password is not correct."
        assert app.focused is app.screen.query_one("#unlock-password")  # ready to retype
        await type_into(pilot, "#unlock-password", kiosk.users["operator"].password)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, OverviewScreen)
        assert session.state is SessionState.ACTIVE
    actions = kiosk.actions()
    assert "auth.session.locked" in actions and "auth.session.unlocked" in actions


async def test_manual_lock_then_switch_user(kiosk: Kiosk) -> None:
    app = kiosk.app()
    async with app.run_test(size=(100, 34)) as pilot:
        await login(pilot, "operator", kiosk.users["operator"].password)
        await pilot.press("f12")
        await settle(pilot)
        assert isinstance(app.screen, LockScreen)
        await pilot.press("f3")
        await settle(pilot)
        assert isinstance(app.screen, LoginScreen)
        kiosk.site.clock.advance(timedelta(seconds=30))  # type: ignore[attr-defined]
        await login(pilot, "viewer", kiosk.users["viewer"].password)
        assert isinstance(app.screen, OverviewScreen)
        assert "viewer (viewer)" in str(app.screen.query_one("#header-text").render())


async def test_quit_asks_and_records_logout(kiosk: Kiosk) -> None:
    app = kiosk.app()
    async with app.run_test(size=(100, 34)) as pilot:
        await login(pilot, "operator", kiosk.users["operator"].password)
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, OverviewScreen)
        await pilot.press("ctrl+q")
        await pilot.pause()
        await pilot.press("f2")
        await settle(pilot)
    actions = kiosk.actions()
    assert actions[-2:] == ["auth.session.ended", "terminal.ui.stopped"]


async def test_admin_lands_on_users_and_cannot_open_production(kiosk: Kiosk) -> None:
    app = kiosk.app()
    async with app.run_test(size=(100, 34)) as pilot:
        await login(pilot, "admin", kiosk.users["admin"].password, kiosk.code("admin"))
        assert isinstance(app.screen, UsersScreen)
        entries = {e.key: e.enabled for e in app.menu_entries()}
        assert entries == {
            "overview": False,
            "recipes": False,
            "batch": False,
            "alarms": False,
            "qa": False,
            "service": False,
            "audit": True,
            "users": True,
            "security": True,
        }
        await pilot.press("f1")
        await pilot.pause()
        await pilot.press("3")  # Batch execution: dimmed, nothing happens
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, UsersScreen)


async def test_tab_moves_on_before_the_next_keys_reach_the_field(kiosk: Kiosk) -> None:
    """Keys typed right after Tab belong to the next field: a fast typist's password must
    never land, readable, in the user ID field."""
    from textual.widgets import Input

    app = kiosk.app()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, LoginScreen)
        app.screen.query_one("#user-id", Input).focus()
        await pilot.pause()
        for key in ("a", "b", "tab", "x", "y", "shift+tab"):
            await pilot.press(key)
        assert app.screen.query_one("#user-id", Input).value == "ab"
        assert app.screen.query_one("#password", Input).value == "xy"
        assert app.focused is app.screen.query_one("#user-id", Input)
        tab = next(b for b in app.screen.BINDINGS if getattr(b, "key", "") == "tab")
        assert getattr(tab, "priority", False)
