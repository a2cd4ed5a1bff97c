"""The password change and authenticator enrolment dialogs answer to the same keys as every
other dialog (F2 confirms, Esc cancels; both named on the buttons), so a gloved operator never
needs the mouse or Tab to reach a button."""

from __future__ import annotations

import pytest
from textual.pilot import Pilot
from textual.widgets import Button, DataTable

from hmi.auth.errors import PasswordChangeRequired
from hmi.auth.totp import code_at
from hmi.screens.login import LoginScreen
from hmi.screens.modals.form import FormDialog
from hmi.screens.modals.password_change import PasswordChangeDialog
from hmi.screens.modals.totp_enrolment import TotpEnrolmentDialog
from hmi.screens.users import UsersScreen
from tests.ui.conftest import Kiosk
from tests.ui.helpers import login, settle, text_of, type_into

TEMPORARY = "Temporary-Pass-2026"
CHOSEN = "amber-quarry-lantern-2031"


def _labels(pilot: Pilot[None]) -> list[str]:
    return [str(b.label) for b in pilot.app.screen.query(Button)]


async def _password_change_dialog(pilot: Pilot[None], kiosk: Kiosk) -> PasswordChangeDialog:
    kiosk.site.clock.advance(30)  # type: ignore[attr-defined]
    admin = kiosk.auth.sessions.login("admin", kiosk.users["admin"].password, kiosk.code("admin"))
    kiosk.auth.users.reset_password(admin, "operator", TEMPORARY, reason="forgotten password")
    kiosk.auth.sessions.logout(admin)
    await login(pilot, "operator", TEMPORARY)
    dialog = pilot.app.screen
    assert isinstance(dialog, PasswordChangeDialog)
    assert _labels(pilot) == ["Change password (F2)", "Cancel (Esc)"]
    return dialog


async def test_f2_changes_the_password_and_logs_in(kiosk: Kiosk) -> None:
    app = kiosk.app()
    async with app.run_test(size=(120, 40)) as pilot:
        await _password_change_dialog(pilot, kiosk)
        await type_into(pilot, "#new-password", CHOSEN)
        await type_into(pilot, "#repeat-password", CHOSEN[:-1])
        await pilot.press("f2")  # the two differ: said in the dialog, nothing changed
        await settle(pilot)
        assert isinstance(app.screen, PasswordChangeDialog)
        assert text_of(pilot, "#change-message") == "The two passwords are not the same."
        await type_into(pilot, "#repeat-password", CHOSEN)
        await type_into(pilot, "#new-password", CHOSEN)  # F2 works from either field
        await pilot.press("f2")
        await settle(pilot)
        assert not isinstance(app.screen, PasswordChangeDialog | LoginScreen)
        session = kiosk.auth.sessions.current
        assert session is not None and session.user_id == "operator"
    kiosk.auth.sessions.logout(session)
    again = kiosk.auth.sessions.login("operator", CHOSEN)
    assert again.user_id == "operator"


async def test_esc_leaves_the_temporary_password_in_place(kiosk: Kiosk) -> None:
    app = kiosk.app()
    async with app.run_test(size=(120, 40)) as pilot:
        await _password_change_dialog(pilot, kiosk)
        await type_into(pilot, "#new-password", CHOSEN)
        await type_into(pilot, "#repeat-password", CHOSEN)
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, LoginScreen)
        assert text_of(pilot, "#login-message").startswith("The password was not changed")
        assert kiosk.auth.sessions.current is None
    with pytest.raises(PasswordChangeRequired):
        kiosk.auth.sessions.login("operator", TEMPORARY)


async def _enrolment_dialog(pilot: Pilot[None], kiosk: Kiosk) -> TotpEnrolmentDialog:
    kiosk.site.clock.advance(30)  # type: ignore[attr-defined]
    await login(pilot, "admin", kiosk.users["admin"].password, kiosk.code("admin"))
    screen = pilot.app.screen
    assert isinstance(screen, UsersScreen)
    screen.query_one(DataTable).move_cursor(row=[r.user_id for r in screen.rows].index("viewer"))
    await pilot.press("f3")
    await settle(pilot)
    assert isinstance(pilot.app.screen, FormDialog)
    await type_into(pilot, "#field-reason", "new phone")
    await pilot.press("f2")
    await settle(pilot)
    dialog = pilot.app.screen
    assert isinstance(dialog, TotpEnrolmentDialog)
    assert _labels(pilot) == ["OK (F2)", "Cancel (Esc)"]
    return dialog


async def test_f2_confirms_the_enrolment(kiosk: Kiosk) -> None:
    app = kiosk.app()
    async with app.run_test(size=(120, 40)) as pilot:
        dialog = await _enrolment_dialog(pilot, kiosk)
        enrolled = kiosk.actions().count("user.totp.enrolled")
        right = code_at(dialog.pending.secret, kiosk.site.clock.now())
        await type_into(pilot, "#totp-code", "000000" if right != "000000" else "111111")
        await pilot.press("f2")  # a wrong code: said in the dialog, not enrolled
        await settle(pilot)
        assert isinstance(app.screen, TotpEnrolmentDialog)
        assert "does not match" in text_of(pilot, "#totp-message")
        assert kiosk.actions().count("user.totp.enrolled") == enrolled
        await type_into(pilot, "#totp-code", right)
        await pilot.press("f2")
        await settle(pilot)
        assert isinstance(app.screen, UsersScreen)
    assert kiosk.actions().count("user.totp.enrolled") == enrolled + 1
    viewer = kiosk.auth.users.store.load("viewer")
    assert viewer is not None and viewer.totp is not None


async def test_esc_cancels_the_enrolment(kiosk: Kiosk) -> None:
    app = kiosk.app()
    async with app.run_test(size=(120, 40)) as pilot:
        dialog = await _enrolment_dialog(pilot, kiosk)
        enrolled = kiosk.actions().count("user.totp.enrolled")
        await type_into(pilot, "#totp-code", code_at(dialog.pending.secret, kiosk.site.clock.now()))
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, UsersScreen)
    assert kiosk.actions().count("user.totp.enrolled") == enrolled
    viewer = kiosk.auth.users.store.load("viewer")
    assert viewer is not None and viewer.totp is None
