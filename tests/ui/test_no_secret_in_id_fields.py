"""Through the screens, as people do it: every demo password typed into the login form's user-ID
field and into the co-signer's user-ID field (the e-signature dialog has none: the signer's ID
is fixed), each refused with the same sentence as a wrong password; then the site's database
(file, WAL, every table) holds none of the passwords, only the keyed digests of what was typed."""

from __future__ import annotations

from typing import Any

from textual.widgets import Input

from hmi.auth.roles import Meaning
from hmi.auth.signatures import RecordRef
from hmi.demo import DEMO_USERS
from hmi.screens.login import LoginScreen
from hmi.screens.modals.cosign import CosignDialog
from tests.helpers.secrets import contents, files_under, secrets_found
from tests.ui.conftest import Kiosk
from tests.ui.helpers import login, settle, text_of, type_into

PASSWORDS = [u.password for u in DEMO_USERS]
NOT_CORRECT = "User ID or password is not correct."


async def test_passwords_typed_as_user_ids_reach_neither_the_trail_nor_the_database(
    kiosk: Kiosk,
) -> None:
    assert sorted(u.password for u in kiosk.users.values()) == sorted(PASSWORDS)
    app = kiosk.app()
    async with app.run_test(size=(120, 40)) as pilot:
        for typed in PASSWORDS:
            await login(pilot, typed, typed)
            assert isinstance(app.screen, LoginScreen)
            assert text_of(pilot, "#login-message") == NOT_CORRECT
            assert app.screen.query_one("#password", Input).value == ""
            # what was typed as the ID is not left on the shared screen either
            assert app.screen.query_one("#user-id", Input).value == ""
            assert typed not in app.export_screenshot()
        operator = kiosk.users["operator"]
        await login(pilot, "operator", operator.password)
        session = kiosk.auth.sessions.current
        assert session is not None and session.user_id == "operator"
        request = kiosk.auth.signatures.sign(
            session,
            RecordRef.of("batch_step", "B-UI-0009.2", {"step": 2}),
            Meaning.REQUESTED,
            password=operator.password,
            user_id="operator",
            accept_statement=True,
        )
        screen: Any = app
        what = "Override: skip the sieve check of step 2"
        screen.push_screen(CosignDialog(screen.ctx, request, what, Meaning.COSIGNED, "supervisor"))
        await settle(pilot)
        assert isinstance(app.screen, CosignDialog)
        for typed in PASSWORDS:
            await type_into(pilot, "#cosign-user", typed)
            await type_into(pilot, "#cosign-password", typed)
            await type_into(pilot, "#cosign-totp", "123456")
            await pilot.press("f2")
            await settle(pilot)
            assert isinstance(app.screen, CosignDialog)
            assert text_of(pilot, "#cosign-message") == f"Refused: {NOT_CORRECT}"
            assert app.screen.query_one("#cosign-password", Input).value == ""
            assert app.screen.query_one("#cosign-user", Input).value == ""
            assert typed not in app.export_screenshot()

    refusals = kiosk.actions()
    assert refusals.count("auth.login.failed") >= len(PASSWORDS)
    assert refusals.count("esignature.cosign.refused") == len(PASSWORDS)
    database = b"".join(contents(kiosk.site.data_dir / "hmi.db"))
    for typed in PASSWORDS:  # what was typed is there only as its digest, and it correlates
        digest = kiosk.auth.store.audit_subject(typed)
        assert digest.startswith("uid-hmac:") and database.count(digest.encode()) >= 2
    found = secrets_found(files_under(kiosk.site.data_dir), PASSWORDS)
    assert found == []
