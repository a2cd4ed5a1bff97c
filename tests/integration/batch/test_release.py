"""QA review by exception: release is impossible while anything is open or changed."""

from __future__ import annotations

import pytest

from hmi.auth.roles import Meaning
from hmi.batch.engine import BatchEngine
from hmi.batch.errors import ReleaseBlocked, SignatureProblem, StepDataInvalid
from hmi.batch.model import BatchStatus, DeviationKind
from hmi.batch.report import render_record
from hmi.site import Site
from tests.integration.batch.support import Driver, audit_actions, monitoring, verify_chain

BATCH = "B-2026-0300"


async def test_release_refused_while_a_deviation_is_open_or_the_record_changed(
    site: Site, engine: BatchEngine, driver: Driver
) -> None:
    driver.start(BATCH)
    with monitoring(engine):
        await driver.run(BATCH)
    assert engine.get(BATCH).status is BatchStatus.AWAITING_REVIEW
    qa = driver.people.login("qa1")
    ref = engine.batch_record_ref(BATCH)
    engine.review_audit_trail(qa, BATCH, driver.people.sign(qa, ref, Meaning.AUDIT_TRAIL_REVIEWED))
    # A transcription error is found: the operator corrects a sample result after the review.
    operator = driver.people.login("op1")
    [top] = [v for v in engine.values(BATCH) if v.name == "result:TOP"]
    with pytest.raises(StepDataInvalid):  # PLC readings are originals
        [elapsed] = [v for v in engine.values(BATCH) if v.name == "elapsed_time"]
        engine.correct_value(operator, BATCH, elapsed.value_id, "1", "typo in the reading")
    corrected = engine.correct_value(
        operator, BATCH, top.value_id, "89.4", "transcription error: lab report says 89.4"
    )
    assert corrected.replaces_id == top.value_id and corrected.in_limits is False
    with pytest.raises(StepDataInvalid, match="already corrected"):
        engine.correct_value(operator, BATCH, top.value_id, "89.5", "second try on same value")
    [deviation] = engine.deviations(BATCH)
    assert deviation.kind is DeviationKind.OUT_OF_TOLERANCE and deviation.blocking
    qa = driver.people.login("qa1")
    with pytest.raises(ReleaseBlocked) as refused:
        engine.release(qa, BATCH, driver.people.sign(qa, ref, Meaning.RELEASED))
    assert any("still open" in p for p in refused.value.problems)
    assert any("changed after the audit trail review" in p for p in refused.value.problems)
    # A result out of specification: the operator's reason alone does not close it.
    await driver.handle_deviations(BATCH, "OPERATOR", "value typed wrongly; lab report attached")
    handled = engine.deviation(deviation.deviation_id)
    assert handled.requires_cosign and handled.cosigned_by == "sup1"
    assert handled.status.value == "closed"
    qa = driver.people.login("qa1")
    with pytest.raises(ReleaseBlocked, match="no QA disposition"):
        engine.release(qa, BATCH, driver.people.sign(qa, ref, Meaning.RELEASED))
    # A disposition is a signature over the decision: one meant for another decision, another
    # meaning or another comment is refused, recorded, and leaves the deviation undecided.
    comment = "retested: within limits"
    for_rejection = driver.people.sign(
        qa, engine.disposition_record(deviation.deviation_id, "rejected", comment), Meaning.REJECTED
    )
    with pytest.raises(SignatureProblem, match="'Approved' is needed"):
        engine.qa_disposition(qa, deviation.deviation_id, "accepted", comment, for_rejection)
    approved_other = driver.people.sign(
        qa, engine.disposition_record(deviation.deviation_id, "accepted", "other"), Meaning.APPROVED
    )
    with pytest.raises(SignatureProblem, match="covers other data"):
        engine.qa_disposition(qa, deviation.deviation_id, "accepted", comment, approved_other)
    assert engine.deviation(deviation.deviation_id).disposition is None
    assert len(audit_actions(site, "deviation.disposition.refused")) == 2
    driver.disposition(qa, deviation.deviation_id, "accepted", comment)
    stale = driver.people.sign(qa, ref, Meaning.RELEASED)
    with pytest.raises(ReleaseBlocked, match="review again"):
        engine.release(qa, BATCH, stale)
    fresh = engine.batch_record_ref(BATCH)
    assert fresh.sha256 != ref.sha256
    engine.review_audit_trail(
        qa, BATCH, driver.people.sign(qa, fresh, Meaning.AUDIT_TRAIL_REVIEWED)
    )
    released = engine.release(qa, BATCH, driver.people.sign(qa, fresh, Meaning.RELEASED))
    assert released.status is BatchStatus.RELEASED and released.decided_by == "qa1"
    refusals = [r for a, _e, r in audit_actions(site, "batch.release.refused")]
    assert len(refusals) == 3
    record = engine.record(BATCH)
    values = [v for v in record.values if v.name == "result:TOP"]
    assert [(v.value, v.current) for v in values] == [("99.4", False), ("89.4", True)]
    assert verify_chain(site).ok
    shown = "\n".join(render_record(record))
    assert "CHANGED AFTER FIRST ENTRY: was 99.4; reason: transcription error" in shown
    assert "QA disposition: accepted" in shown and "Audit trail reviewed" in shown


async def test_release_rechecks_under_the_write_lock(
    site: Site, engine: BatchEngine, driver: Driver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change that lands between the release checks and the release itself (say, from a
    second kiosk) is caught by the checks repeated inside the writing transaction."""
    number = "B-2026-0301"
    driver.start(number)
    with monitoring(engine):
        await driver.run(number)
    qa = driver.people.login("qa1")
    ref = engine.batch_record_ref(number)
    engine.review_audit_trail(qa, number, driver.people.sign(qa, ref, Meaning.AUDIT_TRAIL_REVIEWED))
    signature = driver.people.sign(qa, ref, Meaning.RELEASED)
    write = engine._write_decision

    def late_change(*args: object, **kwargs: object) -> None:
        operator = driver.people.login("op1")
        [top] = [v for v in engine.values(number) if v.name == "result:TOP"]
        engine.correct_value(operator, number, top.value_id, "99.9", "lab report says 99.9")
        write(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(engine, "_write_decision", late_change)
    with pytest.raises(ReleaseBlocked, match="changed after the audit trail review"):
        engine.release(qa, number, signature)
    assert engine.get(number).status is BatchStatus.AWAITING_REVIEW
    assert len(audit_actions(site, "batch.release.refused")) == 1
    assert verify_chain(site).ok
