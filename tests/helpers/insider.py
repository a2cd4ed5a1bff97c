"""An insider holding the site's files and its signing key: rewrites and re-signs the chain,
the witness file and exported bundles so that each is consistent in itself. What verify must
still catch (from the trust anchors and the copies held elsewhere) is what is left."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hmi.audit import canonical
from hmi.audit.bundle import BUNDLE_TAG
from hmi.audit.checkpoint import Checkpoint, make_checkpoint
from hmi.audit.hashing import GENESIS_PREV_HASH, chain_prefix, content_text
from hmi.audit.keys import Signer
from hmi.audit.verify import ROW_FIELDS

Fields = dict[str, Any]


def open_db(db_path: Path) -> sqlite3.Connection:
    """A raw connection with every append-only trigger dropped, as someone with the file can."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    for table in ("audit_event", "audit_key", "terminal"):
        for suffix in ("no_update", "no_delete"):
            conn.execute(f"DROP TRIGGER IF EXISTS {table}_{suffix}")
    return conn


def seal(signer: Signer, fields: Fields, prev_hash: str) -> Fields:
    """The row with its prev_hash, row_hash, key_id and signature made for its fields as they
    are stored (the details text byte for byte, whatever its form)."""
    content = content_text(
        fields["action"], fields["actor_id"], fields["actor_role"], fields["details"],
        fields["entity_id"], fields["entity_type"], fields["field"], fields["meaning"],
        fields["new_value"], fields["old_value"], fields["reason"], fields["session_id"],
        fields["ts"],
    )  # fmt: skip
    digest = hashlib.sha256(
        chain_prefix(fields["terminal_id"])
        + int(fields["seq"]).to_bytes(8, "big")
        + bytes.fromhex(prev_hash)
        + content.encode("utf-8")
    ).digest()
    return {
        **fields,
        "prev_hash": prev_hash,
        "row_hash": digest.hex(),
        "key_id": signer.key_id,
        "signature": signer.sign(digest).hex(),
    }


def rows_of(conn: sqlite3.Connection, terminal: str = "KIOSK-01") -> list[Fields]:
    names = ", ".join(ROW_FIELDS)
    found = conn.execute(
        f"SELECT id, {names} FROM audit_event WHERE terminal_id = ? ORDER BY seq", (terminal,)
    ).fetchall()
    return [{"id": row[0], **dict(zip(ROW_FIELDS, row[1:], strict=True))} for row in found]


def rewrite_chain(
    db_path: Path,
    signer: Signer,
    edit: Callable[[Fields], None] | None = None,
    *,
    from_seq: int = 1,
    terminal: str = "KIOSK-01",
) -> dict[int, str]:
    """Apply ``edit`` to every row from ``from_seq`` on and re-hash and re-sign the chain from
    there with ``signer``; return the new row hash of every seq."""
    conn = open_db(db_path)
    prev = GENESIS_PREV_HASH
    hashes: dict[int, str] = {}
    try:
        for fields in rows_of(conn, terminal):
            if int(fields["seq"]) >= from_seq:
                if edit is not None:
                    edit(fields)
                fields = seal(signer, fields, prev)
                sets = ", ".join(f"{name} = ?" for name in ROW_FIELDS)
                conn.execute(
                    f"UPDATE audit_event SET {sets} WHERE id = ?",
                    [*(fields[name] for name in ROW_FIELDS), fields["id"]],
                )
            prev = str(fields["row_hash"])
            hashes[int(fields["seq"])] = prev
    finally:
        conn.close()
    return hashes


def truncate_chain(db_path: Path, after_seq: int, terminal: str = "KIOSK-01") -> None:
    conn = open_db(db_path)
    try:
        conn.execute(
            "DELETE FROM audit_event WHERE terminal_id = ? AND seq > ?", (terminal, after_seq)
        )
    finally:
        conn.close()


def rewrite_witness(
    witness: Path, signer: Signer, hashes: dict[int, str], terminal: str = "KIOSK-01"
) -> None:
    """The witness file made consistent with the chain: checkpoints beyond its end dropped,
    the others given the chain's hash at their seq and re-signed."""
    out: list[str] = []
    for line in witness.read_text(encoding="utf-8").splitlines():
        point = Checkpoint.from_json(json.loads(line))
        if point.terminal == terminal:
            if point.seq not in hashes:
                continue
            point = make_checkpoint(
                signer, point.terminal, point.seq, hashes[point.seq], point.ts, point.reason
            )
        out.append(canonical.dumps(point.to_json()))
    witness.write_text("".join(line + "\n" for line in out), encoding="utf-8")


def bundle_lines(path: Path) -> list[dict[str, Any]]:
    """A bundle's lines without its signature line."""
    return [json.loads(raw) for raw in path.read_bytes().split(b"\n")[:-2]]


def sign_bundle(lines: list[bytes], signer: Signer) -> bytes:
    """A bundle of these exact lines, signed again (the insider's bundle signature)."""
    body = b"".join(line + b"\n" for line in lines)
    digest = hashlib.sha256(body).digest()
    trailer = {
        "type": "bundle_signature",
        "key_id": signer.key_id,
        "sha256": digest.hex(),
        "signature": signer.sign(BUNDLE_TAG + digest).hex(),
    }
    return body + canonical.canonical_bytes(trailer) + b"\n"


def resign_bundle(lines: list[dict[str, Any]], signer: Signer) -> bytes:
    """A bundle of these lines, each written in canonical form, signed again."""
    return sign_bundle([canonical.canonical_bytes(line) for line in lines], signer)
