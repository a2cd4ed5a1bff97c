"""The parallel verification of an SQLite file (every core reads its own share of the rows and
the chains are walked as the shares arrive) reports exactly what the one-process walk of the
sorted rows reports, for an intact chain and for attacks that put rows out of storage order."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hmi.audit.chain import seal_event
from hmi.audit.checkpoint import WitnessFile
from hmi.audit.keys import Signer
from hmi.audit.store import _PARALLEL_FROM, load_rows, trusted_keys, verify_database
from hmi.audit.verify import Kind, VerifyReport, verify_rows
from hmi.db import make_engine
from hmi.site import Site, init_site
from tests.helpers.audit import OPERATOR, attacker

EVENTS = _PARALLEL_FROM + 400
COLUMNS = (
    "terminal_id, seq, ts, actor_id, actor_role, session_id, action, entity_type, entity_id, "
    "field, old_value, new_value, reason, meaning, details, prev_hash, row_hash, key_id, signature"
)


@pytest.fixture(scope="module")
def big_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site whose chain is long enough for the parallel path, built once for the module."""
    data = tmp_path_factory.mktemp("big") / "site"
    site: Site = init_site(data)
    try:
        for start in range(0, EVENTS, 1000):
            with site.audit.transaction() as conn:
                for index in range(start, min(EVENTS, start + 1000)):
                    site.audit.record(
                        conn, "test.event", OPERATOR, field="weight", new_value=str(index),
                        details={"index": index},
                    )  # fmt: skip
        site.audit.checkpoint("test")
    finally:
        site.close()
    return data


def _both(data: Path) -> tuple[VerifyReport, VerifyReport]:
    engine = make_engine(f"sqlite:///{data / 'hmi.db'}")
    trusted = trusted_keys([data / "keys" / "terminal.ed25519.pub"])
    witness = WitnessFile(data / "witness" / "checkpoints.jsonl")
    try:
        parallel = verify_database(engine, trusted=trusted, witness=witness, workers=2)
        checkpoints, _unreadable = witness.read()
        serial = verify_rows(load_rows(engine), trusted=trusted, checkpoints=checkpoints, workers=1)
    finally:
        engine.dispose()
    return parallel, serial


def _swap(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE audit_event SET seq = -1 WHERE seq = 500")
    conn.execute("UPDATE audit_event SET seq = 500 WHERE seq = 7000")
    conn.execute("UPDATE audit_event SET seq = 7000 WHERE seq = -1")


def _insert_forged(conn: sqlite3.Connection) -> None:
    before = conn.execute(f"SELECT {COLUMNS} FROM audit_event WHERE seq = 3000").fetchone()
    conn.execute("DELETE FROM audit_event WHERE seq = 3001")  # replaced by a forgery at the end
    forged = seal_event(
        Signer(Ed25519PrivateKey.generate()), "KIOSK-01", 3001, str(before[16]),
        {"ts": str(before[2]), "actor_id": "qa1", "actor_role": "qa", "action": "batch.released"},
    )  # fmt: skip
    forged["key_id"] = before[17]
    conn.execute(
        f"INSERT INTO audit_event ({COLUMNS}) VALUES ({','.join('?' * 19)})",
        [forged[c.strip()] for c in COLUMNS.split(",")],
    )


def _edit(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE audit_event SET new_value = '999' WHERE seq = 6543")
    conn.execute("DELETE FROM audit_event WHERE seq = 100")


@pytest.mark.parametrize(
    ("attack", "expected"),
    [
        (None, set()),
        (_swap, {(Kind.MODIFIED, 500), (Kind.MODIFIED, 7000), (Kind.BROKEN_LINK, 500)}),
        (_insert_forged, {(Kind.BAD_SIGNATURE, 3001)}),
        (_edit, {(Kind.MODIFIED, 6543), (Kind.GAP, 100), (Kind.BROKEN_LINK, 101)}),
    ],
)
def test_parallel_file_walk_reports_what_the_sorted_walk_reports(
    big_site: Path,
    tmp_path: Path,
    attack: Callable[[sqlite3.Connection], None] | None,
    expected: set[tuple[Kind, int]],
) -> None:
    data = tmp_path / "site"
    shutil.copytree(big_site, data)
    if attack is not None:
        conn = attacker(data / "hmi.db")
        attack(conn)
        conn.close()
    parallel, serial = _both(data)
    assert parallel.rows_checked == serial.rows_checked > _PARALLEL_FROM
    assert [p.to_json() for p in parallel.problems] == [p.to_json() for p in serial.problems]
    assert expected <= {(p.kind, p.seq) for p in parallel.problems}
    assert parallel.ok is (attack is None)
    summary, reference = parallel.chains["KIOSK-01"], serial.chains["KIOSK-01"]
    assert (summary.first_seq, summary.last_seq, summary.last_hash, summary.events) == (
        reference.first_seq, reference.last_seq, reference.last_hash, reference.events,
    )  # fmt: skip
