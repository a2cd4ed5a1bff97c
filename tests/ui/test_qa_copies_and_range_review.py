"""QA review screen: the printable PDF and the electronic true copy of the selected batch
record (F7, F8: in a thread, into the site's exports/ folder, never overwriting, recorded in
the audit trail), and a signed review of a time range of the audit trail (F9)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from sqlalchemy import select
from textual.pilot import Pilot
from textual.widgets import Checkbox, Input

from hmi.app import HmiApp
from hmi.audit.store import trusted_keys
from hmi.audit.tables import audit_event
from hmi.auth.errors import PermissionDenied
from hmi.auth.roles import Meaning
from hmi.auth.sessions import Session
from hmi.auth.signatures import RecordRef, Signature
from hmi.batch.engine import BatchEngine
from hmi.ebr.bundle import read_batch_bundle
from hmi.ebr.copies import BatchRecordCopies
from hmi.ebr.review import AuditReviews, audit_review
from hmi.screens.modals.esignature import ESignatureDialog
from hmi.screens.modals.range_review import RangeReviewDialog
from hmi.screens.qa_review import QaReviewScreen
from tests.ui.conftest import Kiosk
from tests.ui.helpers import login, settle, text_of

BATCH = "B-UI-0003"


def _login(kiosk: Kiosk, user_id: str) -> Session:
    kiosk.site.clock.advance(30)  # type: ignore[attr-defined]
    code = kiosk.code(user_id) if kiosk.users[user_id].totp_secret else None
    return kiosk.auth.sessions.login(user_id, kiosk.users[user_id].password, code)


async def _cosigned(
    kiosk: Kiosk, batches: BatchEngine, session: Session, deviation_id: str, by: str
) -> None:
    who = kiosk.users[session.user_id]
    needs = kiosk.auth.signatures.components_needed(session, Meaning.REQUESTED)
    kiosk.site.clock.advance(30)  # type: ignore[attr-defined]
    request = kiosk.auth.signatures.sign(
        session,
        batches.deviation_record(deviation_id),
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


async def _aborted_batch(kiosk: Kiosk, app: HmiApp) -> None:
    """A batch started, then aborted by a supervisor (co-signed by QA): it waits for QA."""
    batches, recipes = app.ctx.batches, app.ctx.recipes
    assert batches is not None and recipes is not None
    operator = _login(kiosk, "operator")
    recipe = recipes.effective("PARA500-FB").info
    batches.start_batch(operator, recipe.recipe_id, recipe.version, BATCH)
    kiosk.auth.sessions.logout(operator)
    supervisor = _login(kiosk, "supervisor")
    await batches.abort(supervisor, BATCH, "EQUIPMENT", "drive bearing failing")
    await _cosigned(kiosk, batches, supervisor, batches.deviations(BATCH)[-1].deviation_id, "qa")
    kiosk.auth.sessions.logout(supervisor)


async def _open_qa_screen(pilot: Pilot[None], kiosk: Kiosk) -> QaReviewScreen:
    kiosk.site.clock.advance(30)  # type: ignore[attr-defined]  # a fresh TOTP time step
    await login(pilot, "qa", kiosk.users["qa"].password, kiosk.code("qa"))
    await pilot.app.run_action("menu")
    await pilot.pause()
    await pilot.press("5")  # QA review
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, QaReviewScreen)
    return screen


def _events(kiosk: Kiosk, action: str) -> list[dict[str, object]]:
    t = audit_event.c
    with kiosk.site.engine.connect() as conn:
        rows = conn.execute(
            select(t.details, t.actor_id, t.entity_id).where(t.action == action).order_by(t.id)
        ).all()
    return [
        {**json.loads(details or "{}"), "actor": actor, "entity": entity}
        for details, actor, entity in rows
    ]


def _verified(kiosk: Kiosk, bundle: Path) -> str:
    """The real offline verifier, trusting the site's published key only."""
    read = read_batch_bundle(bundle, trust=trusted_keys([kiosk.site.settings.public_key_path]))
    assert read.ok, [p.message for p in read.report.problems]
    assert read.record is not None and read.record.header.batch_id == BATCH
    return read.sha256


async def test_qa_prints_and_exports_the_selected_batch_record(kiosk: Kiosk) -> None:
    app = kiosk.app()
    await _aborted_batch(kiosk, app)
    exports = kiosk.site.data_dir / "exports"
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open_qa_screen(pilot, kiosk)
        assert [b.batch_id for b in screen.batches_shown] == [BATCH]
        assert screen.check_action("print_record", ()) is True
        assert screen.check_action("export_copy", ()) is True
        shown = app.active_bindings
        assert all(shown[k].binding.show and shown[k].enabled for k in ("f7", "f8", "f9"))
        assert shown["f7"].binding.description == "PDF"

        # F7: the PDF, printed from the bundle written beside it in exports/.
        await pilot.press("f7")
        await settle(pilot)
        [pdf] = sorted(exports.glob("*.pdf"))
        [bundle] = sorted(exports.glob("*.bundle.jsonl"))
        assert pdf.name.startswith(f"{BATCH}_") and pdf.read_bytes().startswith(b"%PDF")
        assert bundle.name == pdf.name.removesuffix(".pdf") + ".bundle.jsonl"
        sha = _verified(kiosk, bundle)
        message = text_of(pilot, "#qa-message")
        assert str(pdf) in message and str(bundle) in message and sha in message
        printed = _events(kiosk, "ebr.printed")
        assert [(e["file"], e["bundle_sha256"], e["actor"]) for e in printed] == [
            (str(pdf), sha, "qa")
        ]
        assert _events(kiosk, "ebr.exported")[0]["file"] == str(bundle)

        # F8: the electronic true copy alone; twice, and the first is never overwritten.
        first_bytes = bundle.read_bytes()
        await pilot.press("f8")
        await settle(pilot)
        await pilot.press("f8")
        await settle(pilot)
        bundles = sorted(exports.glob("*.bundle.jsonl"))
        assert len(bundles) == 3 and bundle.read_bytes() == first_bytes
        copies = [b for b in bundles if b != bundle]
        shas = [_verified(kiosk, b) for b in copies]
        assert shas[0] != shas[1]  # a second copy names its own moment and file
        message = text_of(pilot, "#qa-message")
        assert "written and verified" in message and any(s in message for s in shas)
        exported = _events(kiosk, "ebr.exported")
        assert sorted(str(e["file"]) for e in exported) == sorted(str(b) for b in bundles)
        assert {e["sha256"] for e in exported} >= set(shas)
        assert all(e["entity"] == BATCH and e["actor"] == "qa" for e in exported)
        for copy, digest in zip(copies, shas, strict=True):
            body = copy.read_bytes().splitlines(keepends=True)
            assert hashlib.sha256(b"".join(body[:-1])).hexdigest() == digest
        assert not list(exports.glob("*.partial"))
        assert screen.copying == ""

    # The service re-checks: an operator (no key on any screen for it) is refused, recorded.
    batches = app.ctx.batches
    assert batches is not None
    operator = _login(kiosk, "operator")
    denied_before = kiosk.actions().count("auth.permission.denied")
    with pytest.raises(PermissionDenied):
        BatchRecordCopies.for_site(kiosk.site, batches).export_for(operator, BATCH)
    assert kiosk.actions().count("auth.permission.denied") == denied_before + 1
    assert len(list(exports.glob("*.bundle.jsonl"))) == 3


async def test_copy_keys_are_dimmed_when_there_is_no_batch(kiosk: Kiosk) -> None:
    app = kiosk.app()
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open_qa_screen(pilot, kiosk)
        assert screen.batches_shown == []
        assert screen.check_action("print_record", ()) is None  # dimmed, still listed
        assert screen.check_action("export_copy", ()) is None
        assert screen.check_action("range_review", ()) is True
        shown = app.active_bindings
        assert not shown["f7"].enabled and not shown["f8"].enabled and shown["f9"].enabled
        await pilot.press("f7")
        await settle(pilot)
        assert not (kiosk.site.data_dir / "exports").exists()


async def _fill_signature(pilot: Pilot[None], kiosk: Kiosk, user: str) -> None:
    dialog = pilot.app.screen
    assert isinstance(dialog, ESignatureDialog)
    await settle(pilot)
    dialog.query_one("#sign-password", Input).value = kiosk.users[user].password
    kiosk.site.clock.advance(30)  # type: ignore[attr-defined]  # a fresh authenticator code
    dialog.query_one("#sign-totp", Input).value = kiosk.code(user)
    if dialog.query_one("#accept", Checkbox).display:
        dialog.query_one("#accept", Checkbox).value = True
    await pilot.press("f2")
    await settle(pilot)


async def test_qa_signs_a_range_review_on_screen(kiosk: Kiosk) -> None:
    app = kiosk.app()
    reviews = AuditReviews.for_site(kiosk.site, kiosk.auth)
    assert reviews.unreviewed().ranges  # everything so far waits for a review
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open_qa_screen(pilot, kiosk)
        assert "Audit trail not yet reviewed" in text_of(pilot, "#qa-unreviewed")
        await pilot.press("f9")
        await settle(pilot)
        dialog = app.screen
        assert isinstance(dialog, RangeReviewDialog)
        start = dialog.query_one("#range-from", Input).value
        end = dialog.query_one("#range-to", Input).value
        now = kiosk.site.clock.now()
        assert end == f"{now:%Y-%m-%d %H:%M:%S} +00:00"  # now, local time with its offset
        assert start.endswith("+00:00") and start < end

        # Wrong input is named and nothing is signed.
        dialog.query_one("#range-from", Input).value = "yesterday morning"
        await pilot.pause()
        assert "From: 'yesterday morning' is not a date or time" in text_of(pilot, "#range-message")
        dialog.query_one("#range-from", Input).value = end
        dialog.query_one("#range-to", Input).value = start
        dialog.query_one("#range-comment", Input).value = "none"
        await pilot.press("f2")
        await settle(pilot)
        assert "The range ends before it starts" in text_of(pilot, "#range-message")
        dialog.query_one("#range-from", Input).value = start
        dialog.query_one("#range-to", Input).value = "2026-03-02 09:00 +00:00"
        await pilot.press("f2")
        await settle(pilot)
        assert "The range ends in the future" in text_of(pilot, "#range-message")
        assert isinstance(app.screen, RangeReviewDialog)

        # The range as proposed: checked, shown in the signature dialog, signed.
        dialog.query_one("#range-to", Input).value = end
        dialog.query_one("#range-comment", Input).value = "shift A and B: no findings"
        await pilot.press("f2")
        await settle(pilot)
        signing = app.screen
        assert isinstance(signing, ESignatureDialog)
        assert signing.meaning is Meaning.AUDIT_TRAIL_REVIEWED
        assert "Periodic review. Audit trail from" in text_of(pilot, "#esign-record")
        await _fill_signature(pilot, kiosk, "qa")
        assert "Signed:" in text_of(pilot, "#sign-message")
        await pilot.press("f2")  # close the manifestation
        await settle(pilot)
        assert app.screen is screen
        message = text_of(pilot, "#qa-message")
        assert message.startswith("Periodic review ") and " signed over " in message

    with kiosk.site.engine.connect() as conn:
        [row] = conn.execute(select(audit_review)).mappings().all()
    assert (row["terminal_id"], row["from_seq"], row["kind"]) == ("KIOSK-01", 1, "periodic")
    assert row["reviewed_by"] == "qa" and row["comment"] == "shift A and B: no findings"
    [signed] = _events(kiosk, "audit.review.signed")
    assert signed["review_id"] == row["review_id"] and signed["actor"] == "qa"
    assert signed["chains"] == [
        {
            "terminal_id": "KIOSK-01",
            "from_seq": 1,
            "to_seq": row["to_seq"],
            "first_hash": row["first_hash"],
            "last_hash": row["last_hash"],
            "events": row["events"],
        }
    ]
    # The unreviewed report no longer lists that range: only what came after it.
    after = reviews.unreviewed().ranges
    assert after and all(r.from_seq > int(row["to_seq"]) for r in after)


def _signed(kiosk: Kiosk, session: Session, ref: RecordRef, meaning: Meaning) -> Signature:
    who = kiosk.users[session.user_id]
    kiosk.site.clock.advance(30)  # type: ignore[attr-defined]
    return kiosk.auth.signatures.sign(
        session, ref, meaning, password=who.password, user_id=who.user_id,
        totp=kiosk.code(who.user_id), accept_statement=True,
    )  # fmt: skip


async def test_a_decided_batch_is_listed_with_f10_and_prints(kiosk: Kiosk) -> None:
    """Once rejected (or released) a batch leaves the list of what waits for QA; F10 lists every
    finished batch, and the decided one prints from there."""
    app = kiosk.app()
    await _aborted_batch(kiosk, app)
    batches = app.ctx.batches
    assert batches is not None
    qa = _login(kiosk, "qa")
    [abort] = batches.deviations(BATCH)
    comment = "abort investigated in QA-DEV-2026-11"
    ref = batches.disposition_record(abort.deviation_id, "rejected", comment)
    batches.qa_disposition(
        qa, abort.deviation_id, "rejected", comment, _signed(kiosk, qa, ref, Meaning.REJECTED)
    )
    record = batches.batch_record_ref(BATCH)
    review = _signed(kiosk, qa, record, Meaning.AUDIT_TRAIL_REVIEWED)
    batches.review_audit_trail(qa, BATCH, review)
    batches.reject(qa, BATCH, _signed(kiosk, qa, record, Meaning.REJECTED), "aborted batch")
    kiosk.auth.sessions.logout(qa)
    exports = kiosk.site.data_dir / "exports"
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await _open_qa_screen(pilot, kiosk)
        assert screen.batches_shown == []
        assert text_of(pilot, "#qa-deviations") == "Nothing waits for review."
        assert screen.check_action("print_record", ()) is None  # nothing selected to print
        await pilot.press("f10")
        await settle(pilot)
        assert [(b.batch_id, b.status.value) for b in screen.batches_shown] == [(BATCH, "rejected")]
        assert text_of(pilot, "#qa-title").startswith("All finished batches")
        await pilot.press("f7")
        await settle(pilot)
        [pdf] = sorted(exports.glob("*.pdf"))
        [bundle] = sorted(exports.glob("*.bundle.jsonl"))
        assert pdf.read_bytes().startswith(b"%PDF")
        _verified(kiosk, bundle)
        await pilot.press("f10")  # back to what waits for QA
        await settle(pilot)
        assert screen.batches_shown == []
