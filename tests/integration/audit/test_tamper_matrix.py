"""The inspector's tamper matrix against a real SQLite file: each attack is reported with the
right kind at the right sequence number."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hmi.audit.chain import seal_event
from hmi.audit.keys import Signer
from hmi.audit.verify import Kind
from hmi.clock import ManualClock
from hmi.site import Site
from tests.helpers.audit import add_events, attacker, kinds_at, verify

HEAD = 23  # the chain fixture's last seq

COLUMNS = (
    "terminal_id, seq, ts, actor_id, actor_role, session_id, action, entity_type, entity_id, "
    "field, old_value, new_value, reason, meaning, details, prev_hash, row_hash, key_id, signature"
)


@pytest.fixture
def chain(site: Site, clock: ManualClock) -> Site:
    """A chain of 23 events (seq 1-23: the genesis, the key enrolment, the site set-up and 20
    more) with a witnessed checkpoint at its head."""
    for _ in range(20):
        clock.advance(1)
        add_events(site, 1)
    site.audit.checkpoint("test")
    assert verify(site).ok
    return site


def db(site: Site) -> sqlite3.Connection:
    return attacker(site.data_dir / "hmi.db")


def row(conn: sqlite3.Connection, seq: int) -> tuple[object, ...]:
    return conn.execute(f"SELECT {COLUMNS} FROM audit_event WHERE seq = ?", (seq,)).fetchone()


def test_intact_chain_verifies(chain: Site) -> None:
    report = verify(chain)
    assert report.ok, report.problems
    assert report.rows_checked == HEAD
    assert report.chains["KIOSK-01"].last_seq == HEAD


def test_changed_field_is_reported_as_modified(chain: Site) -> None:
    db(chain).execute("UPDATE audit_event SET new_value = '999' WHERE seq = 10")
    report = verify(chain)
    assert kinds_at(report) == {(Kind.MODIFIED, 10)}


def test_deleted_middle_row_is_a_gap_and_a_broken_link(chain: Site) -> None:
    db(chain).execute("DELETE FROM audit_event WHERE seq = 12")
    found = kinds_at(verify(chain))
    assert (Kind.GAP, 12) in found
    assert (Kind.BROKEN_LINK, 13) in found


def test_forged_row_appended_without_the_key_has_a_bad_signature(chain: Site) -> None:
    conn = db(chain)
    head = row(conn, HEAD)
    forged = seal_event(
        Signer(Ed25519PrivateKey.generate()), "KIOSK-01", HEAD + 1, str(head[16]),
        {"ts": "2026-03-02T08:00:00.000000Z", "actor_id": "op1", "actor_role": "operator",
         "action": "batch.released", "details": "{}"},
    )  # fmt: skip
    forged["key_id"] = head[17]  # pretend to be the terminal's key
    conn.execute(
        f"INSERT INTO audit_event ({COLUMNS}) VALUES ({','.join('?' * 19)})",
        [forged[c.strip()] for c in COLUMNS.split(",")],
    )
    assert kinds_at(verify(chain)) == {(Kind.BAD_SIGNATURE, HEAD + 1)}


def test_row_inserted_in_the_middle_is_caught(chain: Site) -> None:
    conn = db(chain)
    before = row(conn, 9)
    # Make room: shift later rows up by one (the attacker has dropped the triggers).
    conn.execute("UPDATE audit_event SET seq = seq + 1000 WHERE seq >= 10")
    conn.execute("UPDATE audit_event SET seq = seq - 999 WHERE seq >= 1010")
    forged = seal_event(
        Signer(Ed25519PrivateKey.generate()), "KIOSK-01", 10, str(before[16]),
        {"ts": str(before[2]), "actor_id": "qa1", "actor_role": "qa", "action": "batch.released"},
    )  # fmt: skip
    forged["key_id"] = before[17]
    conn.execute(
        f"INSERT INTO audit_event ({COLUMNS}) VALUES ({','.join('?' * 19)})",
        [forged[c.strip()] for c in COLUMNS.split(",")],
    )
    found = kinds_at(verify(chain))
    assert (Kind.BAD_SIGNATURE, 10) in found
    assert (Kind.MODIFIED, 11) in found  # the shifted original row no longer matches its seq
    assert (Kind.FORKED, HEAD) in found  # the witnessed head is no longer at its seq


def test_swapped_rows_are_caught(chain: Site) -> None:
    conn = db(chain)
    conn.execute("UPDATE audit_event SET seq = -1 WHERE seq = 5")
    conn.execute("UPDATE audit_event SET seq = 5 WHERE seq = 6")
    conn.execute("UPDATE audit_event SET seq = 6 WHERE seq = -1")
    found = kinds_at(verify(chain))
    assert {(Kind.MODIFIED, 5), (Kind.MODIFIED, 6)} <= found
    assert (Kind.BROKEN_LINK, 5) in found


def test_truncated_tail_after_a_checkpoint(chain: Site) -> None:
    db(chain).execute("DELETE FROM audit_event WHERE seq > 18")
    report = verify(chain)
    assert kinds_at(report) == {(Kind.TRUNCATED, 19)}
    assert f"witnessed seq {HEAD}" in report.problems[0].message


def test_truncated_then_forged_tail(chain: Site) -> None:
    conn = db(chain)
    conn.execute("DELETE FROM audit_event WHERE seq > 18")
    prev = str(row(conn, 18)[16])
    fake = Signer(Ed25519PrivateKey.generate())
    for seq in range(19, 24):
        forged = seal_event(
            fake, "KIOSK-01", seq, prev,
            {"ts": "2026-03-02T09:00:00.000000Z", "actor_id": "op1", "actor_role": "operator",
             "action": "batch.step.completed"},
        )  # fmt: skip
        conn.execute(
            f"INSERT INTO audit_event ({COLUMNS}) VALUES ({','.join('?' * 19)})",
            [forged[c.strip()] for c in COLUMNS.split(",")],
        )
        prev = forged["row_hash"]
    found = kinds_at(verify(chain))
    assert {(Kind.UNKNOWN_KEY, seq) for seq in range(19, 24)} <= found
    assert (Kind.FORKED, HEAD) in found


def test_signature_copied_from_another_row(chain: Site) -> None:
    conn = db(chain)
    signature = row(conn, 3)[18]
    conn.execute("UPDATE audit_event SET signature = ? WHERE seq = 15", (signature,))
    assert kinds_at(verify(chain)) == {(Kind.BAD_SIGNATURE, 15)}


def test_recomputed_hash_without_the_key_breaks_signature_and_link(chain: Site) -> None:
    from hmi.audit import hashing

    conn = db(chain)
    original = row(conn, 7)
    fields = dict(zip([c.strip() for c in COLUMNS.split(",")], original, strict=True))
    fields["reason"] = "changed afterwards"
    content = hashing.canonical.canonical_bytes(hashing.content_object(fields))
    new_hash = hashing.row_hash("KIOSK-01", 7, str(fields["prev_hash"]), content).hex()
    conn.execute(
        "UPDATE audit_event SET reason = ?, row_hash = ? WHERE seq = 7",
        ("changed afterwards", new_hash),
    )
    assert kinds_at(verify(chain)) == {(Kind.BAD_SIGNATURE, 7), (Kind.BROKEN_LINK, 8)}


def test_history_rewritten_with_another_key(chain: Site) -> None:
    """The attacker re-signs the whole chain with a key of their own: the trusted key and the
    witnessed checkpoint both expose it."""
    conn = db(chain)
    rows = conn.execute(f"SELECT {COLUMNS} FROM audit_event ORDER BY seq").fetchall()
    fake = Signer(Ed25519PrivateKey.generate())
    conn.execute("DELETE FROM audit_event")
    prev = "00" * 32
    names = [c.strip() for c in COLUMNS.split(",")]
    for original in rows:
        fields = dict(zip(names, original, strict=True))
        if fields["seq"] == 10:
            fields["new_value"] = "rewritten"
        content = {k: fields[k] for k in names[2:15]}
        sealed = seal_event(fake, "KIOSK-01", int(fields["seq"]), prev, content)
        conn.execute(
            f"INSERT INTO audit_event ({COLUMNS}) VALUES ({','.join('?' * 19)})",
            [sealed[n] for n in names],
        )
        prev = sealed["row_hash"]
    found = kinds_at(verify(chain))
    assert (Kind.UNKNOWN_KEY, 1) in found
    assert (Kind.FORKED, HEAD) in found


def test_sequence_duplicate_is_reported(chain: Site) -> None:
    conn = db(chain)
    # Rebuild the table without its unique constraint, as an attacker with the file can.
    conn.execute("CREATE TABLE copy AS SELECT * FROM audit_event")
    conn.execute("DROP TABLE audit_event")
    conn.execute("ALTER TABLE copy RENAME TO audit_event")
    conn.execute("INSERT INTO audit_event SELECT * FROM audit_event WHERE seq = 8")
    found = kinds_at(verify(chain))
    assert (Kind.DUPLICATE, 8) in found


def test_time_going_backwards_is_reported(site: Site, clock: ManualClock) -> None:
    add_events(site, 3)
    clock.advance(timedelta(minutes=-10))
    add_events(site, 1)
    report = verify(site)
    assert kinds_at(report) == {(Kind.TIME_BACKWARDS, 7)}  # after seq 1-3 (set-up) and 4-6


def test_triggers_refuse_raw_update_and_delete(chain: Site) -> None:
    raw = sqlite3.connect(chain.data_dir / "hmi.db", isolation_level=None)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        raw.execute("UPDATE audit_event SET reason = 'x' WHERE seq = 3")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        raw.execute("DELETE FROM audit_event WHERE seq = 3")
    assert verify(chain).ok


def test_every_problem_is_reported_not_just_the_first(chain: Site) -> None:
    conn = db(chain)
    conn.execute("UPDATE audit_event SET reason = 'a' WHERE seq = 4")
    conn.execute("UPDATE audit_event SET reason = 'b' WHERE seq = 17")
    assert kinds_at(verify(chain)) == {(Kind.MODIFIED, 4), (Kind.MODIFIED, 17)}


def test_deleted_witness_file_is_reported(chain: Site) -> None:
    db(chain).execute("DELETE FROM audit_event WHERE seq > 18")
    chain.settings.witness_path.unlink()
    report = verify(chain)
    assert [(p.kind, p.seq) for p in report.problems] == [(Kind.WITNESS, None)]
    assert "missing, empty or was replaced" in report.problems[0].message
