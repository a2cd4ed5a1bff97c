"""What a signature shows (11.50) and what it is bound to (11.70), without a database."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from hmi.auth.roles import Meaning, Role
from hmi.auth.signatures import RecordRef, Signature, binding_sha256, manifestation


def make_signature() -> Signature:
    record = RecordRef.of("batch_step", "B-2026-001:3", {"weight_kg": "180.0", "lot": "L7"})
    fields = dict(
        signature_id="0" * 32,
        record=record,
        meaning=Meaning.VERIFIED,
        signer_id="sam",
        signer_name="Sam Süpervisor",
        signer_role=Role.SUPERVISOR,
        signed_at=datetime(2026, 3, 2, 7, 30, 5, tzinfo=UTC),
        session_id="s" * 32,
        terminal_id="KIOSK-01",
        components=("user_id", "password", "totp"),
        cosign_of=None,
        binding_sha256="",
        audit_terminal_id="KIOSK-01",
        audit_seq=7,
    )
    draft = Signature(**fields)  # type: ignore[arg-type]
    return replace(draft, binding_sha256=binding_sha256(draft.binding_fields()))


def test_manifestation_shows_name_id_local_time_with_offset_utc_and_meaning() -> None:
    text = manifestation(make_signature(), tz=timezone(timedelta(hours=1)))
    assert text == (
        "Sam Süpervisor (sam) - Verified - 2026-03-02 08:30:05 +01:00 (UTC 2026-03-02 07:30:05)"
    )
    west = manifestation(make_signature(), tz=timezone(timedelta(hours=-5)))
    assert "2026-03-02 02:30:05 -05:00" in west


def test_binding_changes_with_every_signed_fact() -> None:
    signature = make_signature()
    base = binding_sha256(signature.binding_fields())
    assert base == signature.binding_sha256
    other_record = RecordRef.of("batch_step", "B-2026-002:3", {"weight_kg": "180.0", "lot": "L7"})
    for changed in (
        replace(signature, record=other_record),
        replace(signature, meaning=Meaning.APPROVED),
        replace(signature, signer_name="Sam Other"),
        replace(signature, signed_at=signature.signed_at + timedelta(seconds=1)),
        replace(signature, components=("password",)),
        replace(signature, cosign_of="1" * 32),
    ):
        assert binding_sha256(changed.binding_fields()) != base


def test_record_reference_hashes_canonical_content() -> None:
    first = RecordRef.of("recipe_version", "PARA-500:3", {"b": "2", "a": "1"})
    second = RecordRef.of("recipe_version", "PARA-500:3", {"a": "1", "b": "2"})
    assert first == second and len(first.sha256) == 64
    assert RecordRef.of("recipe_version", "PARA-500:3", {"a": "1", "b": "3"}) != first
    with pytest.raises(ValueError):
        RecordRef("Batch", "B1", first.sha256)
    with pytest.raises(ValueError):
        RecordRef("batch", "B 1", first.sha256)
    with pytest.raises(ValueError):
        RecordRef("batch", "B1", "ABC")
