"""A skip or override request reads as a request until a supervisor co-signs it; the stored kind
and description (old records included) are left as recorded, only the wording follows."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from hmi.batch.model import DeviationInfo, DeviationKind, DeviationStatus


def requested(kind: DeviationKind, description: str) -> DeviationInfo:
    """A request as the engine stores it: reason given, waiting for the co-signature."""
    return DeviationInfo(
        deviation_id="DEV-B-1-01",
        batch_id="B-1",
        seq=1,
        step_index=0,
        step_id="line-clearance",
        kind=kind,
        parameter=None,
        expected=None,
        actual=None,
        unit=None,
        critical=True,
        description=description,
        opened_at=datetime(2026, 3, 2, 7, 30, tzinfo=UTC),
        opened_by="operator",
        ended_at=None,
        requires_cosign=True,
        status=DeviationStatus.AWAITING_COSIGN,
        reason_code="PROCESS",
        reason_text="line cleared and checked by the previous shift",
        reason_by="operator",
        reason_at=datetime(2026, 3, 2, 7, 30, tzinfo=UTC),
        request_signature_id=None,
        cosign_signature_id=None,
        cosigned_by=None,
        cosigned_at=None,
        action={"type": kind.value, "step_index": 0, "data": {}},
        action_done=False,
        alarm_id=None,
        disposition=None,
        disposition_comment=None,
        disposition_by=None,
        disposition_at=None,
    )


SKIP = requested(DeviationKind.SKIP, "step 'Line clearance' skip requested")


def test_a_skip_waiting_for_the_cosignature_is_a_request() -> None:
    assert SKIP.summary == (
        "Skip requested for step 'Line clearance' (needs a supervisor's co-signature)"
    )
    assert "skipped" not in SKIP.summary
    assert replace(SKIP, status=DeviationStatus.OPEN).summary == SKIP.summary


def test_a_cosigned_skip_says_the_step_was_skipped() -> None:
    done = replace(SKIP, status=DeviationStatus.CLOSED, action_done=True, cosigned_by="sup")
    assert done.summary == "Step 'Line clearance' skipped (requested and co-signed)"


def test_a_closed_skip_that_never_happened_says_so() -> None:
    closed = replace(SKIP, status=DeviationStatus.CLOSED)
    assert closed.summary == "Skip requested for step 'Line clearance' (not carried out)"


def test_overrides_read_the_same_way() -> None:
    override = requested(DeviationKind.OVERRIDE, "step 'Blend' override requested")
    assert override.summary == (
        "Override requested for step 'Blend' (needs a supervisor's co-signature)"
    )
    done = replace(override, status=DeviationStatus.CLOSED, action_done=True)
    assert done.summary == "Step 'Blend' overridden (requested and co-signed)"


@pytest.mark.parametrize(
    ("kind", "description"),
    [
        (DeviationKind.SKIP, "skipped by hand"),  # not the engine's wording: shown as stored
        (DeviationKind.HOLD, "batch held: PROCESS"),
    ],
)
def test_other_deviations_keep_kind_and_description(kind: DeviationKind, description: str) -> None:
    info = requested(kind, description)
    assert info.summary == f"{kind.label.capitalize()}: {description}"


def test_stored_codes_and_kind_labels_are_unchanged() -> None:
    assert (DeviationKind.SKIP.value, DeviationKind.SKIP.label) == ("skip", "step skipped")
    assert SKIP.description == "step 'Line clearance' skip requested"
