"""Audit trail screen (filter, detail, background verify) and the users screen (create an
account, enrol its authenticator with the QR code on screen)."""

from __future__ import annotations

from textual.widgets import DataTable, Input

from hmi.auth.totp import code_at
from hmi.screens.audit_trail import AuditTrailScreen
from hmi.screens.modals.form import FormDialog
from hmi.screens.modals.totp_enrolment import TotpEnrolmentDialog
from hmi.screens.users import UsersScreen
from tests.ui.conftest import Kiosk
from tests.ui.helpers import login, settle, text_of


async def test_audit_trail_filters_and_verifies(kiosk: Kiosk) -> None:
    app = kiosk.app()
    async with app.run_test(size=(120, 40)) as pilot:
        kiosk.site.clock.advance(30)  # type: ignore[attr-defined]
        await login(pilot, "qa", kiosk.users["qa"].password, kiosk.code("qa"))
        await app.run_action("menu")
        await pilot.pause()
        await pilot.press("7")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, AuditTrailScreen)
        assert text_of(pilot, "#verify-status").startswith("Chain: VERIFIED")
        screen.query_one("#f-action", Input).value = "recipe.approved"
        await pilot.press("f2")
        await settle(pilot)
        assert screen.rows and all(r["action"] == "recipe.approved" for r in screen.rows)
        assert len(screen.rows) == 3
        screen.query_one("#f-from", Input).value = "yesterday"
        await pilot.press("f2")
        await settle(pilot)
        notes = [n.message for n in app._notifications]  # type: ignore[attr-defined]
        assert "'yesterday' is not a date: use YYYY-MM-DD or YYYY-MM-DD HH:MM" in notes
        screen.query_one("#f-from", Input).value = ""
        screen.query_one("#f-action", Input).value = "auth.login"
        screen.query_one("#f-user", Input).value = "qa"
        await pilot.press("f2")
        await settle(pilot)
        table = screen.query_one(DataTable)
        table.move_cursor(row=0)
        await pilot.pause()
        assert "auth.login.succeeded  by qa (qa)" in text_of(pilot, "#audit-detail")


async def test_admin_creates_user_and_enrols_totp(kiosk: Kiosk) -> None:
    app = kiosk.app()
    async with app.run_test(size=(120, 40)) as pilot:
        kiosk.site.clock.advance(30)  # type: ignore[attr-defined]
        await login(pilot, "admin", kiosk.users["admin"].password, kiosk.code("admin"))
        assert isinstance(app.screen, UsersScreen)
        await pilot.press("f2")
        await pilot.pause()
        assert isinstance(app.screen, FormDialog)
        for name, value in {
            "user_id": "sue",
            "full_name": "Sue Second-Supervisor",
            "roles": "supervisor",
            "password": "harbor-lamp-violet-91",
            "verified_by": "HR desk",
            "method": "ID card checked",
            "reason": "new starter",
        }.items():
            app.screen.query_one(f"#field-{name}", Input).value = value
        await pilot.press("f2")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, UsersScreen)
        ids = [r.user_id for r in screen.rows]
        assert "sue" in ids
        screen.query_one(DataTable).move_cursor(row=ids.index("sue"))
        await pilot.press("f3")
        await pilot.pause()
        app.screen.query_one("#field-reason", Input).value = "new starter"
        await pilot.press("f2")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, TotpEnrolmentDialog)
        assert "█" in text_of(pilot, "#qr") or "▀" in text_of(pilot, "#qr")
        dialog.query_one("#totp-code", Input).value = "000000"
        await pilot.press("enter")
        await settle(pilot)
        assert "does not match" in text_of(pilot, "#totp-message")
        code = code_at(dialog.pending.secret, kiosk.site.clock.now())
        dialog.query_one("#totp-code", Input).value = code
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, UsersScreen)
        sue = next(r for r in app.screen.rows if r.user_id == "sue")
        assert sue.totp.value == "active"
    actions = kiosk.actions()
    assert "user.created" in actions and "user.totp.enrolled" in actions
