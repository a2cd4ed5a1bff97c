"""QA review: QA picks which deviation of a batch to disposition (the list of the batch's
deviations, F6 to move, F2 to disposition the selected one)."""

from __future__ import annotations

import sqlite3

from textual.widgets import DataTable, Input

from hmi.app import HmiApp
from hmi.auth.roles import Meaning
from hmi.auth.sessions import Session
from hmi.batch.engine import BatchEngine
from hmi.batch.model import BatchStatus
from hmi.screens.modals.esignature import ESignatureDialog
from hmi.screens.modals.form import FormDialog
from hmi.screens.qa_review import QaReviewScreen
from tests.ui.conftest import Kiosk
from tests.ui.helpers import login, settle, text_of
from tests.ui.test_batch_flow import sign, wait_until

BATCH = "B-UI-0002"


def _login(kiosk: Kiosk, user_id: str) -> Session:
    kiosk.site.clock.advance(30)  # type: ignore[attr-defined]
    code = kiosk.code(user_id) if kiosk.users[user_id].totp_secret else None
    return kiosk.auth.sessions.login(user_id, kiosk.users[user_id].password, code)


async def _cosigned(
    kiosk: Kiosk, batches: BatchEngine, session: Session, deviation_id: str, by: str
) -> None:
    who = kiosk.users[session.user_id]
    ref = batches.deviation_record(deviation_id)
    needs = kiosk.auth.signatures.components_needed(session, Meaning.REQUESTED)
    kiosk.site.clock.advance(30)  # type: ignore[attr-defined]
    request = kiosk.auth.signatures.sign(
        session,
        ref,
        Meaning.REQUESTED,
        password=who.password,
        user_id=who.user_id,
        totp=kiosk.code(who.user_id) if "totp" in needs else None,
        accept_statement=True,
    )
    kiosk.site.clock.advance(30)  # type: ignore[attr-defined]
    cosigned = kiosk.auth.signatures.cosign(
        session,
        request,
        cosigner_id=by,
        password=kiosk.users[by].password,
        totp=kiosk.code(by),
        meaning=Meaning.COSIGNED,
        accept_statement=True,
    )
    await batches.cosign_deviation(session, deviation_id, request, cosigned)


async def _aborted_batch_with_two_deviations(kiosk: Kiosk, app: HmiApp) -> list[str]:
    """Line clearance skipped under change control (co-signed), then the batch aborted
    (co-signed): two closed deviations waiting for QA."""
    batches, recipes = app.ctx.batches, app.ctx.recipes
    assert batches is not None and recipes is not None
    operator = _login(kiosk, "operator")
    recipe = recipes.effective("PARA500-FB").info
    batches.start_batch(operator, recipe.recipe_id, recipe.version, BATCH)
    skip = batches.request_skip(
        operator, BATCH, "line-clearance", "PLANNED", "line cleared under change control CC-12"
    )
    await _cosigned(kiosk, batches, operator, skip.deviation_id, "supervisor")
    supervisor = _login(kiosk, "supervisor")
    await batches.abort(supervisor, BATCH, "EQUIPMENT", "drive bearing failing")
    abort = batches.deviations(BATCH)[-1]
    await _cosigned(kiosk, batches, supervisor, abort.deviation_id, "qa")
    return [d.deviation_id for d in batches.deviations(BATCH)]


def _signing(app: HmiApp) -> Meaning:
    """The meaning the open e-signature dialog asks for."""
    dialog = app.screen
    assert isinstance(dialog, ESignatureDialog)
    return dialog.meaning


async def test_qa_dispositions_the_second_deviation_first(kiosk: Kiosk) -> None:
    app = kiosk.app()
    batches = app.ctx.batches
    assert batches is not None
    first, second = await _aborted_batch_with_two_deviations(kiosk, app)
    assert batches.get(BATCH).status is BatchStatus.ABORTED
    async with app.run_test(size=(120, 40)) as pilot:
        kiosk.site.clock.advance(30)  # type: ignore[attr-defined]  # a fresh TOTP time step
        await login(pilot, "qa", kiosk.users["qa"].password, kiosk.code("qa"))
        await app.run_action("menu")
        await pilot.pause()
        await pilot.press("5")  # QA review
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, QaReviewScreen)
        assert [d.deviation_id for d in screen.deviations] == [first, second]
        assert text_of(pilot, "#qa-deviations") == "Deviations (2), 2 awaiting disposition"
        table = screen.query_one("#qa-deviation-table", DataTable)
        assert table.row_count == 2

        await pilot.press("f6")  # select the second deviation
        await pilot.pause()
        await pilot.press("f2")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, FormDialog)
        assert dialog.title_text == f"Disposition of {second}"
        assert dialog.query_one("#field-decision", Input).value == ""  # QA decides, no default
        dialog.query_one("#field-decision", Input).value = "rejected"
        dialog.query_one("#field-comment", Input).value = "abort investigated in QA-DEV-2026-09"
        await pilot.press("f2")
        await wait_until(pilot, lambda: isinstance(app.screen, ESignatureDialog), "e-signature")
        assert _signing(app) is Meaning.REJECTED
        await sign(pilot, kiosk, "qa")
        await settle(pilot)
        assert batches.deviation(second).disposition == "rejected"
        assert batches.deviation(first).disposition is None
        assert text_of(pilot, "#qa-deviations") == "Deviations (2), 1 awaiting disposition"

        screen.query_one("#qa-deviation-table", DataTable).move_cursor(row=0)
        await pilot.press("f2")
        await pilot.pause()
        dialog = app.screen
        assert isinstance(dialog, FormDialog)
        assert dialog.title_text == f"Disposition of {first}"
        dialog.query_one("#field-comment", Input).value = "skip under change control CC-12"
        await pilot.press("f2")  # no decision typed: refused, the dialog stays
        await pilot.pause()
        assert isinstance(app.screen, FormDialog)
        assert "Fill in: accepted or rejected" in text_of(pilot, "#form-message")
        dialog.query_one("#field-decision", Input).value = "accepted"
        await pilot.press("f2")
        await wait_until(pilot, lambda: isinstance(app.screen, ESignatureDialog), "e-signature")
        assert _signing(app) is Meaning.APPROVED
        await sign(pilot, kiosk, "qa")
        await settle(pilot)
        assert batches.deviation(first).disposition == "accepted"
        assert text_of(pilot, "#qa-deviations") == "Deviations (2), 0 awaiting disposition"
        # a deviation that has its disposition is not dispositioned twice
        await pilot.press("f2")
        await pilot.pause()
        assert isinstance(app.screen, QaReviewScreen)
    assert kiosk.actions().count("deviation.dispositioned") == 2
    signed = {s.meaning for s in batches.record(BATCH).signatures}
    assert {Meaning.APPROVED, Meaning.REJECTED} <= signed


async def test_qa_screen_refuses_a_record_edited_behind_the_product(kiosk: Kiosk) -> None:
    """A deviation's reason rewritten in the database file: the QA screen shows the sentence
    that says so instead of the batch's deviations, and nothing can be dispositioned."""
    app = kiosk.app()
    batches = app.ctx.batches
    assert batches is not None
    first, _second = await _aborted_batch_with_two_deviations(kiosk, app)
    outside = sqlite3.connect(kiosk.site.data_dir / "hmi.db", isolation_level=None)
    outside.execute("DROP TRIGGER deviation_reason_final")
    outside.execute(
        "UPDATE deviation SET reason_text = 'no change control needed' WHERE deviation_id = ?",
        (first,),
    )
    outside.close()
    async with app.run_test(size=(120, 40)) as pilot:
        kiosk.site.clock.advance(30)  # type: ignore[attr-defined]  # a fresh TOTP time step
        await login(pilot, "qa", kiosk.users["qa"].password, kiosk.code("qa"))
        await app.run_action("menu")
        await pilot.pause()
        await pilot.press("5")  # QA review
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, QaReviewScreen)
        shown = text_of(pilot, "#qa-deviations")
        assert f"record of batch {BATCH} does not match its audit trail" in shown
        assert f"deviation row {first} differs from what event" in shown
        assert screen.deviations == []
        assert screen.query_one("#qa-deviation-table", DataTable).row_count == 0
        await pilot.press("f2")  # nothing to disposition
        await pilot.pause()
        assert isinstance(app.screen, QaReviewScreen)
    assert "deviation.dispositioned" not in kiosk.actions()
