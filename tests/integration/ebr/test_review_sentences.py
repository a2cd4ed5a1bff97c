"""The sentences a reviewer reads when the review service refuses: every screen gets them
from ``describe_error``, as the service wrote them for people."""

from __future__ import annotations

from datetime import timedelta

import pytest

from hmi.auth.errors import PermissionDenied
from hmi.auth.roles import Meaning
from hmi.auth.services import AuthServices
from hmi.clock import ManualClock, to_utc_text
from hmi.ebr.review import AuditReviews, RangeInvalid, ReviewRefused, parse_review_time
from hmi.screens.errors import describe_error
from hmi.site import Site
from tests.integration.batch.support import People


def _reviews(site: Site, auth: AuthServices) -> AuditReviews:
    return AuditReviews.for_site(site, auth)


def _refusal(call: object, kind: type[Exception]) -> Exception:
    with pytest.raises(kind) as caught:
        call()  # type: ignore[operator]
    return caught.value


def test_review_refusals_read_as_sentences(
    site: Site, auth: AuthServices, people: People, clock: ManualClock
) -> None:
    reviews = _reviews(site, auth)
    now = clock.now()

    typo = _refusal(lambda: parse_review_time("yesterday", name="From"), RangeInvalid)
    assert describe_error(typo) == (
        "From: 'yesterday' is not a date or time; use e.g. 2026-03-02 06:00 (local time)"
        " or 2026-03-02 06:00 +01:00."
    )

    ahead = to_utc_text(now + timedelta(hours=1))
    future = _refusal(
        lambda: reviews.prepare_range(to_utc_text(now - timedelta(hours=1)), ahead), RangeInvalid
    )
    sentence = describe_error(future)
    assert sentence.startswith("The range ends in the future (")
    assert sentence.endswith("so end it now or earlier.")

    empty_from = to_utc_text(now - timedelta(days=400))
    empty_to = to_utc_text(now - timedelta(days=399))
    empty = _refusal(lambda: reviews.prepare_range(empty_from, empty_to), ReviewRefused)
    assert describe_error(empty).startswith("No audit events between ")
    assert describe_error(empty).endswith("; there is nothing to review.")

    # Twice over the same events with the same kind: the sentence says where to start instead.
    start = "2026-01-01T00:00:00.000000Z"
    supervisor = people.login("sup1")
    scope = reviews.prepare_range(start, to_utc_text(now), kind="shift")
    reviews.sign_range_review(
        supervisor, scope, people.sign(supervisor, scope.ref, Meaning.REVIEWED), kind="shift"
    )
    again = _refusal(
        lambda: reviews.prepare_range(start, to_utc_text(now), kind="shift"), ReviewRefused
    )
    sentence = describe_error(again)
    assert sentence.startswith("KIOSK-01 seq 1-")
    assert "is already covered by the shift review signed by sup1" in sentence
    assert sentence.endswith("or later.")

    # A role outside the review's roles: the permission sentence, and it was recorded.
    refused = _refusal(lambda: reviews.authorize_reviewer(supervisor, "periodic"), PermissionDenied)
    sentence = describe_error(refused)
    assert sentence.startswith("Not allowed: ")
    assert "signed by qa, not by the role 'supervisor'" in sentence
    assert sentence.endswith("The attempt was recorded.")
