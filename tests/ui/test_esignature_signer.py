"""The e-signature dialog shows the signer's own user ID filled in and fixed, on the first
signing of a session (user ID + password, 21 CFR 11.200(a)(1)(i)) and on later ones (password
only, (a)(1)(ii)) alike: the only field to type into is the password field, so a password is
never typed into an ID field. A co-signer, another person, still types their own ID."""

from __future__ import annotations

import hashlib
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Checkbox, Input, Static

from hmi.auth.roles import Meaning
from hmi.auth.signatures import RecordRef
from hmi.screens.modals.cosign import CosignDialog
from hmi.screens.modals.esignature import ESignatureDialog
from tests.ui.conftest import Kiosk
from tests.ui.helpers import login, settle, text_of

STEPS = [
    RecordRef("batch_step", f"B-2026-0001.{n}", hashlib.sha256(f"step {n}".encode()).hexdigest())
    for n in (1, 2)
]


async def _open(pilot: Pilot[None], record: RecordRef) -> ESignatureDialog:
    app: Any = pilot.app
    app.push_screen(ESignatureDialog(app.ctx, record, Meaning.PERFORMED, f"Step {record.id}"))
    await settle(pilot)
    dialog = app.screen
    assert isinstance(dialog, ESignatureDialog)
    return dialog


async def _focus_ring(pilot: Pilot[None]) -> list[str]:
    """Every widget Tab reaches, once round."""
    seen: list[str] = []
    for _ in range(12):
        focused = pilot.app.focused
        name = f"{type(focused).__name__}#{focused.id}" if focused else "none"
        if name in seen:
            break
        seen.append(name)
        await pilot.press("tab")
    return seen


async def test_the_signers_id_is_fixed_on_every_signing_of_a_session(kiosk: Kiosk) -> None:
    password = kiosk.users["operator"].password
    app = kiosk.app()
    async with app.run_test(size=(120, 40)) as pilot:
        await login(pilot, "operator", password)
        session = kiosk.auth.sessions.current
        assert session is not None
        looks = []
        for record, needed in zip(STEPS, [("user_id", "password"), ("password",)], strict=True):
            assert kiosk.auth.signatures.components_needed(session, Meaning.PERFORMED) == needed
            dialog = await _open(pilot, record)
            signer = dialog.query_one("#sign-signer", Static)
            assert text_of(pilot, "#sign-signer") == "operator (Olga Operator)"
            assert not signer.can_focus, "the signer's ID is shown, not edited"
            assert [i.id for i in dialog.query(Input)] == ["sign-password"]
            assert pilot.app.focused is not None
            ring = await _focus_ring(pilot)
            assert not any("signer" in name for name in ring), ring
            assert "Input#sign-password" in ring
            looks.append([w.id for w in dialog.query("*") if w.id])
            if dialog.query_one("#accept", Checkbox).display:
                dialog.query_one("#accept", Checkbox).value = True
            dialog.query_one("#sign-password", Input).value = password
            await pilot.press("f2")
            await settle(pilot)
            assert dialog.signature is not None, text_of(pilot, "#sign-message")
            assert dialog.signature.components == needed
            assert dialog.signature.signer_id == "operator"
            await pilot.press("f2")
            await settle(pilot)
        assert looks[0] == looks[1], "both signings look the same to the operator"


async def test_a_cosigner_still_types_their_own_id(kiosk: Kiosk) -> None:
    password = kiosk.users["operator"].password
    app = kiosk.app()
    async with app.run_test(size=(120, 40)) as pilot:
        await login(pilot, "operator", password)
        session = kiosk.auth.sessions.current
        assert session is not None
        request = kiosk.auth.signatures.sign(
            session,
            STEPS[0],
            Meaning.REQUESTED,
            password=password,
            user_id="operator",
            accept_statement=True,
        )
        screen: Any = pilot.app
        screen.push_screen(CosignDialog(screen.ctx, request, "skip", Meaning.COSIGNED, "QA"))
        await settle(pilot)
        dialog = pilot.app.screen
        assert isinstance(dialog, CosignDialog)
        field = dialog.query_one("#cosign-user", Input)
        assert field.value == "" and pilot.app.focused is field
        assert not dialog.query("#sign-signer")
