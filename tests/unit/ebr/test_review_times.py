"""Times a reviewer types for a range review: local unless they carry an offset, the form the
screens show accepted as it is, and a wrong one named by its field."""

from __future__ import annotations

from datetime import UTC, timedelta, timezone

import pytest

from hmi.ebr.review import RangeInvalid, local_text, parse_review_time

CET = timezone(timedelta(hours=1))


@pytest.mark.parametrize(
    ("typed", "end", "stored"),
    [
        ("2026-03-02 06:00", False, "2026-03-02T05:00:00.000000Z"),  # local (CET)
        ("2026-03-02 06:00:00 +01:00", False, "2026-03-02T05:00:00.000000Z"),  # as shown
        ("2026-03-02T06:00:00+00:00", False, "2026-03-02T06:00:00.000000Z"),
        ("2026-03-02T06:00Z", False, "2026-03-02T06:00:00.000000Z"),
        ("2026-03-02", False, "2026-03-01T23:00:00.000000Z"),  # a date starts at midnight
        ("2026-03-02", True, "2026-03-02T23:00:00.000000Z"),  # ends where the next day starts
        ("  2026-03-02 06:00 -05:00 ", True, "2026-03-02T11:00:00.000000Z"),
    ],
)
def test_typed_times_become_stored_utc(typed: str, end: bool, stored: str) -> None:
    assert parse_review_time(typed, name="From", end=end, tz=CET) == stored


def test_what_the_screen_shows_reads_back_as_the_same_moment() -> None:
    shown = local_text("2026-03-02T05:00:00.000000Z", CET)
    assert shown == "2026-03-02 06:00:00 +01:00"
    assert parse_review_time(shown, name="To", tz=UTC) == "2026-03-02T05:00:00.000000Z"


@pytest.mark.parametrize("typed", ["tomorrow", "2026-02-30", "06:00", "2026-03-02 25:00", ""])
def test_a_wrong_time_names_its_field(typed: str) -> None:
    with pytest.raises(RangeInvalid, match=f"^--to: '{typed}' is not a date or time; use e.g."):
        parse_review_time(typed, name="--to", tz=CET)
