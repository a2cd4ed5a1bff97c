"""Audit trail review of a time range as a signed, recorded activity, and the report of what
nobody has reviewed yet."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from hmi.audit.chain import SYSTEM, AuditLog
from hmi.audit.keys import Signer
from hmi.audit.store import trusted_keys, verify_database
from hmi.audit.tables import audit_event
from hmi.auth.errors import PermissionDenied
from hmi.auth.roles import Meaning
from hmi.auth.services import AuthServices
from hmi.clock import ManualClock, to_utc_text
from hmi.ebr.review import AuditReviews, RangeInvalid, ReviewRefused
from hmi.site import Site
from tests.integration.batch.support import People, audit_actions


def _reviews(site: Site, auth: AuthServices) -> AuditReviews:
    return AuditReviews(
        engine=site.engine,
        audit=site.audit,
        clock=site.clock,
        sessions=auth.sessions,
        signatures=auth.signatures,
    )


def _head(site: Site) -> int:
    with site.engine.connect() as conn:
        return int(
            conn.execute(select(audit_event.c.seq).order_by(audit_event.c.seq.desc())).first()[0]  # type: ignore[index]
        )


def test_range_reviews_are_signed_recorded_and_shrink_the_unreviewed_report(
    site: Site, auth: AuthServices, people: People, clock: ManualClock
) -> None:
    reviews = _reviews(site, auth)
    start = "2026-01-01T00:00:00.000000Z"
    before = reviews.unreviewed()
    assert [(r.terminal_id, r.from_seq) for r in before.ranges] == [("KIOSK-01", 1)]
    assert before.ranges[0].to_seq == _head(site)

    # A supervisor signs a shift review of everything so far.
    end = to_utc_text(clock.now())
    scope = reviews.scope(start, end)
    [chain] = scope.chains
    assert (chain.terminal_id, chain.from_seq) == ("KIOSK-01", 1)
    supervisor = people.login("sup1")
    signature = people.sign(supervisor, scope.ref, Meaning.REVIEWED)
    review_id = reviews.sign_range_review(
        supervisor, scope, signature, kind="shift", comment="shift A: nothing unusual"
    )
    after = reviews.unreviewed()
    assert all(r.from_seq > chain.to_seq for r in after.ranges)
    [signed] = [e for e in audit_actions(site, "audit.review.signed")]
    assert signed[1] == scope.ref.id and signed[2] == "shift A: nothing unusual"
    assert len(review_id) == 32

    # A periodic review needs QA: a supervisor is refused, and the refusal is recorded.
    clock.advance(60)
    later = reviews.scope(start, to_utc_text(clock.now()))
    with pytest.raises(PermissionDenied):
        reviews.sign_range_review(supervisor, later, signature, kind="periodic")
    qa = people.login("qa1")
    later = reviews.scope(start, to_utc_text(clock.now()))
    wrong = people.sign(qa, scope.ref, Meaning.AUDIT_TRAIL_REVIEWED)  # over the old range
    with pytest.raises(ReviewRefused, match="belongs to another record"):
        reviews.sign_range_review(qa, later, wrong, kind="periodic")
    refusals = [r for _a, _e, r in audit_actions(site, "audit.review.refused")]
    assert len(refusals) == 2 and "may not sign a periodic review" in (refusals[0] or "")
    # The range changed between showing and signing: another kiosk, whose clock lags behind,
    # recorded an event inside it, so the reviewer did not see it: refused.
    shown_at = clock.now()
    stale = reviews.scope(start, to_utc_text(shown_at))
    lagging = AuditLog(
        site.engine,
        terminal_id="KIOSK-02",
        signer=Signer(Ed25519PrivateKey.generate()),
        clock=ManualClock(shown_at - timedelta(seconds=5)),
        witness=None,
    )
    with site.engine.begin() as conn:
        lagging.register_terminal(conn)
    lagging.record_now("audit.verify.passed", SYSTEM, details={"marker": "in the range"})
    signature = people.sign(qa, stale.ref, Meaning.AUDIT_TRAIL_REVIEWED)
    with pytest.raises(ReviewRefused, match="changed since it was shown"):
        reviews.sign_range_review(qa, stale, signature, kind="periodic")
    # Shown and signed with nothing in between: recorded; the report is down to the tail.
    clock.advance(1)
    fresh = reviews.scope(start, to_utc_text(clock.now()))
    signature = people.sign(qa, fresh.ref, Meaning.AUDIT_TRAIL_REVIEWED)
    reviews.sign_range_review(qa, fresh, signature, kind="periodic")
    tail = reviews.unreviewed().ranges
    assert [r.from_seq for r in tail] == [fresh.chains[0].to_seq + 1]
    assert tail[0].to_seq == _head(site)
    trusted = {
        **trusted_keys([site.settings.public_key_path]),
        lagging.signer.key_id: lagging.signer.public,
    }
    assert verify_database(site.engine, trusted=trusted, witness=None, workers=1).ok


def test_uncovered_stretches_between_reviews() -> None:
    from hmi.ebr.review import _uncovered

    assert _uncovered(10, []) == [(1, 10)]
    assert _uncovered(10, [(1, 4), (7, 8)]) == [(5, 6), (9, 10)]
    assert _uncovered(10, [(3, 12)]) == [(1, 2)]
    assert _uncovered(10, [(1, 5), (2, 10)]) == []


def test_what_a_kind_of_review_has_not_covered_yet(
    site: Site, auth: AuthServices, people: People, clock: ManualClock
) -> None:
    """A supervisor's next shift review starts after the last shift review, whatever QA's
    periodic reviews cover; the report without a kind counts every review as cover."""
    reviews = _reviews(site, auth)
    start = "2026-01-01T00:00:00.000000Z"
    qa = people.login("qa1")
    periodic = reviews.scope(start, to_utc_text(clock.now()))
    reviews.sign_range_review(
        qa, periodic, people.sign(qa, periodic.ref, Meaning.AUDIT_TRAIL_REVIEWED)
    )
    reviewed_to = periodic.chains[0].to_seq
    clock.advance(60)

    assert [r.from_seq for r in reviews.unreviewed().ranges] == [reviewed_to + 1]
    assert [r.from_seq for r in reviews.unreviewed("periodic").ranges] == [reviewed_to + 1]
    shift = reviews.unreviewed("shift").ranges
    assert [(r.from_seq, r.to_seq) for r in shift] == [(1, _head(site))]

    supervisor = people.login("sup1")
    scope = reviews.scope(start, to_utc_text(clock.now()))
    reviews.sign_range_review(
        supervisor, scope, people.sign(supervisor, scope.ref, Meaning.REVIEWED), kind="shift"
    )
    assert [r.from_seq for r in reviews.unreviewed(" Shift ").ranges] == [
        scope.chains[0].to_seq + 1
    ]
    assert [r.from_seq for r in reviews.unreviewed("periodic").ranges] == [reviewed_to + 1]
    with pytest.raises(RangeInvalid, match="'shift' or 'periodic', not 'monthly'"):
        reviews.unreviewed("monthly")
