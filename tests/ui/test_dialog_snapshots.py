"""One snapshot per modal dialog at 80x24 and 120x40 (fixed clock, fixed time zone, fixed
TOTP secret, no PLC so nothing moves). Each dialog is reached the way a person reaches it
where that needs no equipment (quit, menu, forms, password change, authenticator enrolment);
the batch dialogs (deviation, signatures, co-signature) are opened on a real deviation record
or a real signature made by the signature service.

Update with ``pytest tests/ui/test_dialog_snapshots.py --snapshot-update``."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.screen import ModalScreen
from textual.widgets import Checkbox, DataTable, Input

from hmi.auth.roles import Meaning
from hmi.auth.signatures import RecordRef
from hmi.batch.model import DeviationInfo, DeviationKind, DeviationStatus
from hmi.screens.context import DemoAccount
from hmi.screens.modals.confirm import ConfirmDialog
from hmi.screens.modals.cosign import CosignDialog
from hmi.screens.modals.deviation import DeviationDialog
from hmi.screens.modals.esignature import ESignatureDialog
from hmi.screens.modals.form import FormDialog
from hmi.screens.modals.menu import MenuDialog
from hmi.screens.modals.password_change import PasswordChangeDialog
from hmi.screens.modals.totp_enrolment import TotpEnrolmentDialog
from hmi.screens.users import UsersScreen
from tests.ui.conftest import Kiosk
from tests.ui.helpers import login, settle, type_into

SIZES = {"80x24": (80, 24), "120x40": (120, 40)}
FIXED_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
TEMPORARY = "Temporary-Pass-2026"
STEP = RecordRef("batch_step", "B-2026-0001.3", hashlib.sha256(b"step 3 record").hexdigest())
STEP_TEXT = "Batch B-2026-0001, step 3 (Blend 15 min at 12 rpm): performed as instructed"

BANNER = (
    DemoAccount("operator", "operator", "copper-lantern-meadow-42"),
    DemoAccount("supervisor", "supervisor", "violet-harbor-engine-7", FIXED_SECRET),
)
"""The login screen's demo banner (under the password change dialog) with fixed secrets."""

Run = Callable[[Pilot[None]], Awaitable[None]]


@pytest.fixture(autouse=True)
def steady_cursor(monkeypatch: pytest.MonkeyPatch) -> None:
    """A blinking cursor is caught on or off at random: keep it on for the pictures."""
    monkeypatch.setattr(Input, "_toggle_cursor", lambda self: None)


@pytest.fixture(autouse=True)
def fixed_totp_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """The enrolment QR code and key are drawn from a fixed secret, not a random one."""
    monkeypatch.setattr("hmi.auth.users.new_secret", lambda: FIXED_SECRET)


def kiosk_of(pilot: Pilot[None]) -> Kiosk:
    return pilot.app.kiosk  # type: ignore[attr-defined,no-any-return]


async def as_user(pilot: Pilot[None], user_id: str) -> None:
    kiosk = kiosk_of(pilot)
    code = ""
    if kiosk.users[user_id].totp_secret:
        kiosk.site.clock.advance(30)  # type: ignore[attr-defined]
        code = kiosk.code(user_id)
    await login(pilot, user_id, kiosk.users[user_id].password, code)
    await settle(pilot)
    # under load the home screen's first query can outlast settle(): wait for its rows
    for _ in range(200):
        screen = pilot.app.screen
        if not isinstance(screen, UsersScreen) or screen.rows:
            break
        await pilot.pause(0.05)
    await settle(pilot)


async def shown(pilot: Pilot[None], kind: type[ModalScreen[Any]]) -> None:
    """Let the dialog's own thread work finish and be painted, and check it is on top."""
    await settle(pilot)
    assert isinstance(pilot.app.screen, kind), pilot.app.screen


def deviation_record(kiosk: Kiosk) -> DeviationInfo:
    """A critical out-of-tolerance deviation as the batch engine reports it."""
    return DeviationInfo(
        deviation_id="DEV-B-2026-0001-01",
        batch_id="B-2026-0001",
        seq=1,
        step_index=2,
        step_id="blend",
        kind=DeviationKind.OUT_OF_TOLERANCE,
        parameter="blender speed",
        expected="12.0 +/- 0.5",
        actual="13.4",
        unit="rpm",
        critical=True,
        description="blender speed outside the recipe's tolerance during step 3 (Blend)",
        opened_at=datetime(2026, 3, 2, 7, 30, tzinfo=UTC),
        opened_by="operator",
        ended_at=None,
        requires_cosign=True,
        status=DeviationStatus.OPEN,
        reason_code=None,
        reason_text=None,
        reason_by=None,
        reason_at=None,
        request_signature_id=None,
        cosign_signature_id=None,
        cosigned_by=None,
        cosigned_at=None,
        action=None,
        action_done=False,
        alarm_id=None,
        disposition=None,
        disposition_comment=None,
        disposition_by=None,
        disposition_at=None,
    )


# -- how each dialog is reached -----------------------------------------------------------------


async def quit_confirm(pilot: Pilot[None]) -> None:
    await as_user(pilot, "operator")
    await pilot.press("ctrl+q")
    await shown(pilot, ConfirmDialog)


async def admin_menu(pilot: Pilot[None]) -> None:
    await as_user(pilot, "admin")
    await pilot.press("f1")
    await shown(pilot, MenuDialog)


async def new_user_form(pilot: Pilot[None]) -> None:
    await as_user(pilot, "admin")
    assert isinstance(pilot.app.screen, UsersScreen)
    await pilot.press("f2")
    await shown(pilot, FormDialog)
    await type_into(pilot, "#field-user_id", "new.operator")
    await type_into(pilot, "#field-full_name", "Nina Newcomer")
    await shown(pilot, FormDialog)  # the typed values checked and painted


async def password_change(pilot: Pilot[None]) -> None:
    kiosk = kiosk_of(pilot)
    kiosk.site.clock.advance(30)  # type: ignore[attr-defined]
    admin = kiosk.auth.sessions.login("admin", kiosk.users["admin"].password, kiosk.code("admin"))
    kiosk.auth.users.reset_password(admin, "operator", TEMPORARY, reason="forgotten password")
    kiosk.auth.sessions.logout(admin)
    screen: Any = pilot.app.screen
    screen.refresh_header()  # the header shows the advanced clock before the dialog covers it
    await pilot.pause()
    await login(pilot, "operator", TEMPORARY)
    await shown(pilot, PasswordChangeDialog)


async def totp_enrolment(pilot: Pilot[None]) -> None:
    await as_user(pilot, "admin")
    screen = pilot.app.screen
    assert isinstance(screen, UsersScreen)
    ids = [r.user_id for r in screen.rows]
    screen.query_one(DataTable).move_cursor(row=ids.index("viewer"))
    await pilot.press("f3")
    await shown(pilot, FormDialog)
    await type_into(pilot, "#field-reason", "new phone")
    await pilot.press("f2")
    await shown(pilot, TotpEnrolmentDialog)


async def deviation(pilot: Pilot[None]) -> None:
    await as_user(pilot, "operator")
    kiosk = kiosk_of(pilot)
    app: Any = pilot.app
    codes = kiosk.site.settings.batch.reason_codes
    app.push_screen(DeviationDialog(app.ctx, deviation_record(kiosk), codes))
    await shown(pilot, DeviationDialog)


async def first_signature(pilot: Pilot[None]) -> None:
    await as_user(pilot, "operator")
    app: Any = pilot.app
    app.push_screen(ESignatureDialog(app.ctx, STEP, Meaning.PERFORMED, STEP_TEXT))
    await shown(pilot, ESignatureDialog)
    assert pilot.app.screen.query_one("#statement").display, "first signature: statement shown"
    accept = pilot.app.screen.query_one("#accept", Checkbox)
    assert pilot.app.focused is accept, "the statement is answered before the credentials"
    assert "X" not in str(accept.render()), "an unticked statement must not look accepted"
    accept.value = True
    assert "X" in str(accept.render())
    accept.value = False


async def signed(pilot: Pilot[None]) -> None:
    await first_signature(pilot)
    kiosk = kiosk_of(pilot)
    pilot.app.screen.query_one("#accept", Checkbox).value = True
    await type_into(pilot, "#sign-password", kiosk.users["operator"].password)
    await pilot.press("f2")
    await shown(pilot, ESignatureDialog)
    assert pilot.app.screen.signature is not None  # type: ignore[attr-defined]
    assert not pilot.app.screen.query_one("#cancel").display, "a signature is not cancelled"


async def cosign(pilot: Pilot[None]) -> None:
    await as_user(pilot, "operator")
    kiosk = kiosk_of(pilot)
    session = kiosk.auth.sessions.current
    assert session is not None
    request = kiosk.auth.signatures.sign(
        session,
        STEP,
        Meaning.REQUESTED,
        password=kiosk.users["operator"].password,
        user_id="operator",
        accept_statement=True,
    )
    app: Any = pilot.app
    what = "Override: skip the sieve check of step 2 (sieve out of service, spare fitted)"
    app.push_screen(CosignDialog(app.ctx, request, what, Meaning.COSIGNED, "supervisor"))
    await shown(pilot, CosignDialog)


DIALOGS: dict[str, Run] = {
    "confirm_quit": quit_confirm,
    "menu_admin": admin_menu,
    "form_new_user": new_user_form,
    "password_change": password_change,
    "totp_enrolment": totp_enrolment,
    "deviation": deviation,
    "esignature_first": first_signature,
    "esignature_signed": signed,
    "cosign": cosign,
}


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("dialog", list(DIALOGS))
def test_dialog(dialog: str, size: str, kiosk: Kiosk, snap_compare: Callable[..., bool]) -> None:
    app = kiosk.app(demo_accounts=BANNER)
    app.kiosk = kiosk  # type: ignore[attr-defined]
    assert snap_compare(app, terminal_size=SIZES[size], run_before=DIALOGS[dialog])
