"""Row hash and checkpoint message construction (``docs/audit-format.md`` is the specification)."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from json.encoder import encode_basestring as _encode_string
from typing import Any

from hmi.audit import canonical

EVENT_TAG = b"HMI-AUDIT-EVENT-v1\x00"
CHECKPOINT_TAG = b"HMI-AUDIT-CHECKPOINT-v1\x00"
GENESIS_PREV_HASH = "00" * 32


def content_object(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The signed content of an event: its stored columns, ``details`` as a JSON object."""
    details = fields["details"]
    if isinstance(details, str):
        details = canonical.loads(details)
    return {
        "action": fields["action"],
        "actor_id": fields["actor_id"],
        "actor_role": fields["actor_role"],
        "details": details,
        "entity_id": fields["entity_id"],
        "entity_type": fields["entity_type"],
        "field": fields["field"],
        "meaning": fields["meaning"],
        "new_value": fields["new_value"],
        "old_value": fields["old_value"],
        "reason": fields["reason"],
        "session_id": fields["session_id"],
        "ts": fields["ts"],
    }


#: The content object's keys in canonical (sorted) order, ``details`` in fourth place.
CONTENT_TEMPLATE = (
    '{"action":%s,"actor_id":%s,"actor_role":%s,"details":%s,"entity_id":%s,'
    '"entity_type":%s,"field":%s,"meaning":%s,"new_value":%s,"old_value":%s,"reason":%s,'
    '"session_id":%s,"ts":%s}'
)


def content_bytes(fields: Mapping[str, Any], details_text: str) -> bytes:
    """The canonical content bytes, built directly (the hot path of appending and verifying).

    Equal to ``canonical.canonical_bytes(content_object(...))`` when every column is text or
    null and ``details_text`` is the canonical JSON of the details object: the keys are
    written in their sorted order and strings escaped exactly as canonical JSON does.
    Anything else takes the general path.
    """
    try:
        return content_text(
            fields["action"], fields["actor_id"], fields["actor_role"], details_text,
            fields["entity_id"], fields["entity_type"], fields["field"], fields["meaning"],
            fields["new_value"], fields["old_value"], fields["reason"], fields["session_id"],
            fields["ts"],
        ).encode("utf-8")  # fmt: skip
    except (TypeError, UnicodeEncodeError):  # not text: the general path encodes or explains
        return _general(fields, details_text)


def content_text(
    action: str | None, actor_id: str | None, actor_role: str | None, details_text: str,
    entity_id: str | None, entity_type: str | None, field: str | None, meaning: str | None,
    new_value: str | None, old_value: str | None, reason: str | None, session_id: str | None,
    ts: str | None,
) -> str:  # fmt: skip
    """The content as text, every column null or an escaped JSON string, in key order (the
    append and verify hot paths call this once per event). Raises ``TypeError`` for a column
    that is not text."""
    enc = _encode_string
    return CONTENT_TEMPLATE % (
        "null" if action is None else enc(action),
        "null" if actor_id is None else enc(actor_id),
        "null" if actor_role is None else enc(actor_role),
        details_text,
        "null" if entity_id is None else enc(entity_id),
        "null" if entity_type is None else enc(entity_type),
        "null" if field is None else enc(field),
        "null" if meaning is None else enc(meaning),
        "null" if new_value is None else enc(new_value),
        "null" if old_value is None else enc(old_value),
        "null" if reason is None else enc(reason),
        "null" if session_id is None else enc(session_id),
        "null" if ts is None else enc(ts),
    )


def _general(fields: Mapping[str, Any], details_text: str) -> bytes:
    return canonical.canonical_bytes(content_object({**fields, "details": details_text}))


def chain_prefix(terminal_id: str) -> bytes:
    """The start of every hash input of a terminal's chain: domain tag ‖ u16 len ‖ terminal."""
    terminal = terminal_id.encode("utf-8")
    return EVENT_TAG + struct.pack(">H", len(terminal)) + terminal


def hash_input(terminal_id: str, seq: int, prev_hash_hex: str, content: bytes) -> bytes:
    """Domain tag ‖ u16 len ‖ terminal (UTF-8) ‖ u64 seq ‖ previous hash (32 bytes) ‖ content."""
    prev = bytes.fromhex(prev_hash_hex)
    if len(prev) != 32:
        raise ValueError("previous hash must be 32 bytes")
    return chain_prefix(terminal_id) + struct.pack(">Q", seq) + prev + content


def row_hash(terminal_id: str, seq: int, prev_hash_hex: str, content: bytes) -> bytes:
    return hashlib.sha256(hash_input(terminal_id, seq, prev_hash_hex, content)).digest()


def checkpoint_message(body: Mapping[str, Any]) -> bytes:
    """What a checkpoint signature covers: tag ‖ canonical JSON of the checkpoint body."""
    return CHECKPOINT_TAG + canonical.canonical_bytes(dict(body))
