"""The worked example in docs/audit-format.md is recomputed from the product's own code, so the
specification an independent verifier is built from can never drift from what we write."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hmi.audit import canonical, hashing
from hmi.audit.chain import seal_event
from hmi.audit.checkpoint import Checkpoint, make_checkpoint
from hmi.audit.keys import Signer

DOC = (Path(__file__).parents[3] / "docs" / "audit-format.md").read_text(encoding="utf-8")


def _value(label: str) -> str:
    match = re.search(rf"{label}: `([0-9a-f]+)`", DOC)
    assert match, label
    return match.group(1)


def test_worked_example_matches_the_code() -> None:
    seed = bytes.fromhex(_value(r"Private key seed \(for this example only\)"))
    signer = Signer(Ed25519PrivateKey.from_private_bytes(seed))
    assert signer.public.raw.hex() == _value(r"public key \(raw\)")
    assert signer.key_id == _value("key_id")
    content_line = DOC.split("Content (canonical JSON", 1)[1].split("```\n", 2)[1].strip()
    fields = json.loads(content_line)
    row = seal_event(signer, "KIOSK-01", 2, "ab" * 32, {**fields, "details": fields["details"]})
    content = canonical.canonical_bytes(hashing.content_object(row))
    assert content.decode("utf-8") == content_line
    assert f"{len(content)} bytes" in DOC
    hash_input = hashing.hash_input("KIOSK-01", 2, "ab" * 32, content)
    assert hashlib.sha256(hash_input).hexdigest() == _value("row_hash") == row["row_hash"]
    assert row["signature"] == _value("signature")
    assert hash_input[:69].hex() == (
        "484d492d41554449542d4556454e542d76310000084b494f534b2d30310000000000000002" + "ab" * 32
    )
    line = DOC.split("reason `interval`:", 1)[1].split("```\n", 2)[1].strip()
    documented = Checkpoint.from_json(json.loads(line))
    rebuilt = make_checkpoint(signer, "KIOSK-01", 2, row["row_hash"], documented.ts, "interval")
    assert canonical.dumps(rebuilt.to_json()) == line
    assert documented.signature_valid(signer.public)


def test_row_binding_example_and_table_list_match_the_code() -> None:
    from hmi.audit import binding

    section = DOC.split("## 7. Business rows bound to the trail", 1)[1]
    content_line = section.split("has the content", 1)[1].split("```\n", 2)[1].strip()
    content = json.loads(content_line)
    assert canonical.canonical_bytes(content).decode("utf-8") == content_line
    assert f"({len(content_line.encode('utf-8'))} bytes;" in section
    row = dict(content["row"])
    assert binding.row_content(content["table"], {**row, "reason_text": None}) == content
    assert binding.row_digest(content["table"], row) == _value("row digest")
    assert binding.ROW_TAG == b"HMI-AUDIT-ROW-v1\x00"
    listed = dict(re.findall(r"`(\w+)`\s+\(`(\w+)`\)", section.split("**Row content", 1)[0]))
    assert listed == binding.BOUND_TABLES
