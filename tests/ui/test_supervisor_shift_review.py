"""A supervisor signs the review of a shift's audit trail on screen (the audit trail screen,
F4), and still cannot release, reject or copy a batch record: the QA review screen is not in
their menu, its keys are dimmed if it is shown anyway, and the services refuse."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from textual.widgets import Input, Select

from hmi.auth.errors import PermissionDenied
from hmi.auth.roles import Meaning
from hmi.ebr.copies import BatchRecordCopies
from hmi.ebr.review import AuditReviews, audit_review
from hmi.screens.audit_trail import AuditTrailScreen
from hmi.screens.messages import NavigateRequested
from hmi.screens.modals.esignature import ESignatureDialog
from hmi.screens.modals.range_review import RangeReviewDialog
from hmi.screens.qa_review import QaReviewScreen
from tests.ui.conftest import Kiosk
from tests.ui.helpers import login, settle, text_of
from tests.ui.test_qa_copies_and_range_review import (
    BATCH,
    _aborted_batch,
    _events,
    _fill_signature,
    _login,
)


def _qa_signs_a_periodic_review(kiosk: Kiosk) -> int:
    """QA's periodic review of everything so far (it does not cover a shift review)."""
    reviews = AuditReviews.for_site(kiosk.site, kiosk.auth)
    qa = _login(kiosk, "qa")
    scope = reviews.prepare_range("2026-01-01T00:00:00.000000Z", reviews.now_end(), kind="periodic")
    kiosk.site.clock.advance(30)  # type: ignore[attr-defined]
    signature = kiosk.auth.signatures.sign(
        qa,
        scope.ref,
        Meaning.AUDIT_TRAIL_REVIEWED,
        password=kiosk.users["qa"].password,
        user_id="qa",
        totp=kiosk.code("qa"),
        accept_statement=True,
    )
    reviews.sign_range_review(qa, scope, signature, kind="periodic", comment="none")
    kiosk.auth.sessions.logout(qa)
    kiosk.site.clock.advance(60)  # type: ignore[attr-defined]
    return scope.chains[0].to_seq


async def test_supervisor_signs_a_shift_review_on_the_audit_trail_screen(kiosk: Kiosk) -> None:
    app = kiosk.app()
    await _aborted_batch(kiosk, app)  # a batch waits for QA: not the supervisor's to decide
    periodic_to = _qa_signs_a_periodic_review(kiosk)
    async with app.run_test(size=(120, 40)) as pilot:
        kiosk.site.clock.advance(30)  # type: ignore[attr-defined]
        await login(
            pilot, "supervisor", kiosk.users["supervisor"].password, kiosk.code("supervisor")
        )
        entries = {e.key: e for e in app.menu_entries()}
        assert entries["audit"].enabled and not entries["qa"].enabled
        await pilot.app.run_action("menu")
        await pilot.pause()
        await pilot.press(str(list(entries).index("audit") + 1))
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, AuditTrailScreen)
        assert screen.check_action("range_review", ()) is True
        f4 = app.active_bindings["f4"]
        assert f4.enabled and f4.binding.show and f4.binding.description == "Review range"

        await pilot.press("f4")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, RangeReviewDialog)
        assert dialog.kinds == ("shift",)  # a supervisor signs shift reviews only
        assert dialog.query_one("#range-kind", Select).value == "shift"
        # QA's periodic review does not count: the shift review starts at the first event.
        assert "without a shift review" in text_of(pilot, "#range-note")
        end = dialog.query_one("#range-to", Input).value
        assert end == f"{kiosk.site.clock.now():%Y-%m-%d %H:%M:%S} +00:00"
        await pilot.press("f2")  # no findings yet: refused in the dialog, nothing signed
        await settle(pilot)
        assert "Write your findings" in text_of(pilot, "#range-message")
        assert isinstance(app.screen, RangeReviewDialog)
        dialog.query_one("#range-comment", Input).value = "night shift: abort of B-UI-0003 only"
        await pilot.press("f2")
        await settle(pilot)

        signing = app.screen
        assert isinstance(signing, ESignatureDialog)
        assert signing.meaning is Meaning.REVIEWED
        assert text_of(pilot, "#esign-record").startswith("Shift review. Audit trail from")
        await _fill_signature(pilot, kiosk, "supervisor")
        assert "Signed:" in text_of(pilot, "#sign-message")
        await pilot.press("f2")  # close the manifestation
        await settle(pilot)
        assert app.screen is screen
        message = text_of(pilot, "#audit-message")
        assert message.startswith("Shift review ") and " signed over " in message
        assert screen.query_one("#audit-message").display

        # The QA review screen is refused by navigation; shown anyway (a script), its
        # decision and copy keys are not usable, and the range review is.
        app.post_message(NavigateRequested("qa"))
        await settle(pilot)
        assert app.screen is screen
        qa_screen = QaReviewScreen(app.ctx)
        await app.push_screen(qa_screen)
        await settle(pilot)
        assert [b.batch_id for b in qa_screen.batches_shown] == [BATCH]
        for action in ("release", "reject", "disposition", "review"):
            assert not qa_screen.check_action(action, ()), action
        for action in ("print_record", "export_copy"):
            assert qa_screen.check_action(action, ()) is None, action  # dimmed
        shown = app.active_bindings
        assert not any(k in shown and shown[k].enabled for k in ("f2", "f3", "f4", "f5"))
        assert not shown["f7"].enabled and not shown["f8"].enabled and shown["f9"].enabled
        await pilot.press("f7")
        await settle(pilot)
        assert not (kiosk.site.data_dir / "exports").exists()

    with kiosk.site.engine.connect() as conn:
        rows = conn.execute(select(audit_review).order_by(audit_review.c.id)).mappings().all()
    assert [(r["kind"], r["reviewed_by"]) for r in rows] == [
        ("periodic", "qa"),
        ("shift", "supervisor"),
    ]
    shift = rows[1]
    assert (shift["from_seq"], shift["comment"]) == (1, "night shift: abort of B-UI-0003 only")
    assert shift["to_seq"] > periodic_to and shift["reviewed_role"] == "supervisor"
    signed = _events(kiosk, "audit.review.signed")
    assert [(e["actor"], e["kind"]) for e in signed] == [
        ("qa", "periodic"),
        ("supervisor", "shift"),
    ]
    assert signed[1]["review_id"] == shift["review_id"]

    # The services refuse a supervisor's release, reject, copy and periodic review, recorded.
    batches = app.ctx.batches
    assert batches is not None
    supervisor = _login(kiosk, "supervisor")
    kiosk.site.clock.advance(30)  # type: ignore[attr-defined]
    signature = kiosk.auth.signatures.sign(
        supervisor,
        batches.batch_record_ref(BATCH),
        Meaning.REVIEWED,
        password=kiosk.users["supervisor"].password,
        user_id="supervisor",
        totp=kiosk.code("supervisor"),
    )
    denied = kiosk.actions().count("auth.permission.denied")
    with pytest.raises(PermissionDenied):
        batches.release(supervisor, BATCH, signature)
    with pytest.raises(PermissionDenied):
        batches.reject(supervisor, BATCH, signature, "not mine to decide")
    with pytest.raises(PermissionDenied):
        BatchRecordCopies.for_site(kiosk.site, batches).export_for(supervisor, BATCH)
    assert kiosk.actions().count("auth.permission.denied") == denied + 3
    reviews = AuditReviews.for_site(kiosk.site, kiosk.auth)
    refused = kiosk.actions().count("audit.review.refused")
    with pytest.raises(PermissionDenied):
        reviews.authorize_reviewer(supervisor, "periodic")
    assert kiosk.actions().count("audit.review.refused") == refused + 1
    assert batches.get(BATCH).status.value == "aborted"


async def test_range_review_key_is_dimmed_for_roles_that_sign_no_review(kiosk: Kiosk) -> None:
    app = kiosk.app()
    async with app.run_test(size=(120, 40)) as pilot:
        kiosk.site.clock.advance(30)  # type: ignore[attr-defined]
        await login(pilot, "admin", kiosk.users["admin"].password, kiosk.code("admin"))
        app.post_message(NavigateRequested("audit"))
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, AuditTrailScreen)
        assert screen.check_action("range_review", ()) is None
        f4 = app.active_bindings["f4"]
        assert f4.binding.show and not f4.enabled
        await pilot.press("f4")
        await settle(pilot)
        assert app.screen is screen  # no dialog
    with kiosk.site.engine.connect() as conn:
        assert conn.execute(select(audit_review)).first() is None
