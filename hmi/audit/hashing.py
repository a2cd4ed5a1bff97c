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


_BEFORE_DETAILS = ("action", "actor_id", "actor_role")
_AFTER_DETAILS = (
    "entity_id", "entity_type", "field", "meaning", "new_value", "old_value", "reason",
    "session_id", "ts",
)  # fmt: skip


def content_bytes(fields: Mapping[str, Any], details_text: str) -> bytes:
    """The canonical content bytes, built directly (the hot path of appending and verifying).

    Equal to ``canonical.canonical_bytes(content_object(...))`` when every column is text or
    null and ``details_text`` is the canonical JSON of the details object: the keys are
    written in their sorted order and strings escaped exactly as canonical JSON does.
    Anything else takes the general path.
    """
    parts = ["{"]
    for name in _BEFORE_DETAILS:
        value = fields[name]
        if value is None:
            parts.append(f'"{name}":null,')
        elif type(value) is str:
            parts.append(f'"{name}":{_encode_string(value)},')
        else:
            return _general(fields, details_text)
    parts.append(f'"details":{details_text}')
    for name in _AFTER_DETAILS:
        value = fields[name]
        if value is None:
            parts.append(f',"{name}":null')
        elif type(value) is str:
            parts.append(f',"{name}":{_encode_string(value)}')
        else:
            return _general(fields, details_text)
    parts.append("}")
    try:
        return "".join(parts).encode("utf-8")
    except UnicodeEncodeError:
        return _general(fields, details_text)  # raises, naming the bad text


def _general(fields: Mapping[str, Any], details_text: str) -> bytes:
    return canonical.canonical_bytes(content_object({**fields, "details": details_text}))


def hash_input(terminal_id: str, seq: int, prev_hash_hex: str, content: bytes) -> bytes:
    """Domain tag ‖ u16 len ‖ terminal (UTF-8) ‖ u64 seq ‖ previous hash (32 bytes) ‖ content."""
    terminal = terminal_id.encode("utf-8")
    prev = bytes.fromhex(prev_hash_hex)
    if len(prev) != 32:
        raise ValueError("previous hash must be 32 bytes")
    return (
        EVENT_TAG
        + struct.pack(">H", len(terminal))
        + terminal
        + struct.pack(">Q", seq)
        + prev
        + content
    )


def row_hash(terminal_id: str, seq: int, prev_hash_hex: str, content: bytes) -> bytes:
    return hashlib.sha256(hash_input(terminal_id, seq, prev_hash_hex, content)).digest()


def checkpoint_message(body: Mapping[str, Any]) -> bytes:
    """What a checkpoint signature covers: tag ‖ canonical JSON of the checkpoint body."""
    return CHECKPOINT_TAG + canonical.canonical_bytes(dict(body))
