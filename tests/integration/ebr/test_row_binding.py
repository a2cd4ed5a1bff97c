"""The business-row tamper matrix: on a copy of a real site holding a full batch (deviations,
co-signatures, a corrected value, an alarm, PLC commands, QA disposition and release), one row
of every bound table is edited, deleted or inserted with the audit table untouched, as someone
holding the database file would. ``hmi audit verify`` names the kind, the table, the row and
the event that recorded it; ``hmi batch show`` and the copies refuse the record with that
sentence, and no refused copy is left on disk. A bundle re-signed with the terminal's own key
after an edited or dropped row is caught by the row bindings of its events."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest

from hmi import cli
from hmi.alarms.service import AlarmService
from hmi.audit import canonical
from hmi.audit.binding import BOUND_TABLES
from hmi.audit.bundle import BUNDLE_TAG
from hmi.audit.chain import Actor
from hmi.batch.engine import BatchEngine
from hmi.ebr.bundle import manifest_message, read_batch_bundle
from hmi.ebr.copies import BatchRecordCopies
from hmi.site import Site
from tests.integration.batch.support import Driver
from tests.integration.ebr.scenario import batch_with_deviations

BATCH = "B-2026-0900"

#: The tables whose rows make up the printed batch record (refused by ``hmi batch show``).
RECORD_TABLES = (
    "batch", "batch_step", "batch_value", "deviation", "batch_signature", "plc_command",
    "alarm", "esignature", "recipe_version",
)  # fmt: skip


#: What an inserted copy of a row changes besides its key, so the table's own unique
#: constraints let it in (one row per step, one effective version of a recipe).
INSERT_CHANGES: dict[str, dict[str, object]] = {
    "batch_step": {"step_index": None},
    "deviation": {"seq": None},
    "batch_value": {"replaces_id": None},
    "alarm": {"active": 0},
    "recipe_version": {"version": None, "status": "draft", "approved_by": None,
                       "approved_at": None, "approval_ref": None},
}  # fmt: skip


@dataclass(frozen=True)
class Attack:
    table: str
    what: str  # edit / delete / insert
    key: str
    expected: str  # the problem kind


def _attacker(db: Path) -> sqlite3.Connection:
    """A raw connection with every guard trigger dropped, except the audit table's own (the
    audit table is left untouched by these attacks)."""
    conn = sqlite3.connect(db, isolation_level=None)
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        conn.execute(f'DROP TRIGGER "{name}"')
    return conn


def _columns(conn: sqlite3.Connection, table: str) -> list[tuple[str, str]]:
    return [(str(r[1]), str(r[2]).upper()) for r in conn.execute(f"PRAGMA table_info({table})")]


def _pick(conn: sqlite3.Connection, table: str) -> tuple[str, dict[str, object]]:
    key = BOUND_TABLES[table]
    where = {"esignature": f"WHERE record_id LIKE '{BATCH}%'"}.get(table, "")
    if not where and "batch_id" in {name for name, _kind in _columns(conn, table)}:
        where = f"WHERE batch_id = '{BATCH}'"
    cur = conn.execute(f"SELECT * FROM {table} {where} ORDER BY {key} DESC LIMIT 1")
    names = [d[0] for d in cur.description]
    found = cur.fetchone()
    assert found is not None, f"the scenario wrote no {table} row"
    row = dict(zip(names, found, strict=True))
    return str(row[key]), row


def _attack(db: Path, table: str, what: str) -> Attack:
    conn = _attacker(db)
    key_column = BOUND_TABLES[table]
    key, row = _pick(conn, table)
    if what == "delete":
        conn.execute(f"DELETE FROM {table} WHERE {key_column} = ?", (row[key_column],))
        return Attack(table, what, key, "row_deleted")
    if what == "edit":
        for name, kind in _columns(conn, table):
            if name == key_column or row[name] is None:
                continue
            new: object = int(row[name]) + 1 if "INT" in kind else f"{row[name]}-edited"  # type: ignore[call-overload]
            conn.execute(
                f"UPDATE {table} SET {name} = ? WHERE {key_column} = ?", (new, row[key_column])
            )
            return Attack(table, what, key, "row_edited")
        raise AssertionError(f"no column of {table} to edit")
    copy = {**row, **INSERT_CHANGES.get(table, {})}
    for name in ("step_index", "version", "seq"):
        if name in INSERT_CHANGES.get(table, {}):
            copy[name] = int(row[name]) + 100  # type: ignore[call-overload]
    original = row[key_column]
    copy[key_column] = int(original) + 1000 if isinstance(original, int) else f"{original}X"  # type: ignore[call-overload]
    names = ", ".join(copy)
    conn.execute(
        f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' for _ in copy)})",
        list(copy.values()),
    )
    return Attack(table, what, str(copy[key_column]), "row_inserted")


def _verify_json(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, list[dict[str, object]]]:
    capsys.readouterr()
    status = cli.main(["audit", "verify", "--data", str(data), "--json", "--workers", "1"])
    out = capsys.readouterr().out
    report = json.loads(out[out.index("{") :])
    return status, list(report["problems"])


def _resign(path: Path, site: Site, edit: object) -> bytes:
    """The bundle with its lines changed by ``edit(lines)``, the manifest and the bundle
    re-signed with the terminal's own key (an insider holding the key)."""
    lines = [json.loads(raw) for raw in path.read_bytes().split(b"\n")[:-2]]
    edit(lines)  # type: ignore[operator]
    records = [n for n, line in enumerate(lines) if str(line["type"]).startswith("ebr.")]
    for number, n in enumerate(records[:-1], start=1):
        lines[n]["n"] = number
    manifest = lines[records[-1]]
    manifest["lines"] = len(records) - 1
    manifest["sha256"] = [
        hashlib.sha256(canonical.canonical_bytes(lines[n])).hexdigest() for n in records[:-1]
    ]
    manifest["sig"] = site.signer.sign(manifest_message(manifest)).hex()
    header = lines[0]
    header["records"] = len(records)
    body = b"".join(canonical.canonical_bytes(line) + b"\n" for line in lines)
    digest = hashlib.sha256(body).digest()
    trailer = {
        "type": "bundle_signature",
        "key_id": site.signer.key_id,
        "sha256": digest.hex(),
        "signature": site.signer.sign(BUNDLE_TAG + digest).hex(),
    }
    return body + canonical.canonical_bytes(trailer) + b"\n"


async def test_every_business_row_is_bound_to_its_event_both_ways(
    site: Site, engine: BatchEngine, driver: Driver, alarms: AlarmService, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    await batch_with_deviations(driver, engine, BATCH, alarms=alarms, release=True)
    copies = BatchRecordCopies.for_site(site, engine)
    bundle = tmp_path / "record.bundle.jsonl"
    copies.export(BATCH, bundle, actor=Actor("qa1", "qa"), generated_by="Quinn Quality (qa1)")
    site.audit.checkpoint("test")
    site.close()
    status, problems = _verify_json(site.data_dir, capsys)
    assert (status, problems) == (0, [])

    counts = sqlite3.connect(site.data_dir / "hmi.db")
    present = {t for t in BOUND_TABLES if counts.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]}
    # The scenario writes every table a batch record is printed from, and the accounts'.
    assert set(RECORD_TABLES) | {"auth_user", "user_training", "auth_totp"} <= present
    for table in sorted(present):
        for what in ("edit", "delete", "insert"):
            copy = tmp_path / f"{table}-{what}"
            shutil.copytree(site.data_dir, copy)
            attack = _attack(copy / "hmi.db", table, what)
            status, problems = _verify_json(copy, capsys)
            assert status == 1, attack
            named = [
                p for p in problems
                if p["kind"] == attack.expected and f"{table} row {attack.key}" in str(p["message"])
            ]  # fmt: skip
            assert named, (attack, problems)
            if what != "insert":  # the event that recorded the row is named
                assert named[0]["seq"] is not None and named[0]["terminal"] == "KIOSK-01", named
            # Nothing else is accused: the audit chain itself is intact.
            assert {p["kind"] for p in problems} <= {attack.expected, "row_unlinked"}, problems
            shown = attack.key if (table, what) == ("batch", "insert") else BATCH
            capsys.readouterr()
            status = cli.main(["batch", "show", shown, "--data", str(copy)])
            captured = capsys.readouterr()
            # A row of the record refuses it; another recipe version, or an account's row,
            # leaves this batch's record as it is (verify above still names the row).
            if table in RECORD_TABLES and (table, what) != ("recipe_version", "insert"):
                assert status == 1, attack
                assert f"the record of batch {shown} does not match its audit trail" in captured.err
                assert captured.out == "", "no part of the refused record is printed"
            else:
                assert status == 0 and f"Batch {BATCH}" in captured.out, (attack, captured.err)


async def test_a_refused_copy_is_never_left_on_disk(
    site: Site, engine: BatchEngine, driver: Driver, alarms: AlarmService, tmp_path: Path
) -> None:
    await batch_with_deviations(driver, engine, BATCH, alarms=alarms, release=False)
    db = _attacker(site.data_dir / "hmi.db")
    db.execute("UPDATE deviation SET reason_text = 'nothing happened' WHERE seq = 2")
    copies = BatchRecordCopies.for_site(site, engine)
    folder = tmp_path / "copies"
    folder.mkdir()
    out = folder / "copy.bundle.jsonl"
    pdf = folder / "copy.pdf"
    with pytest.raises(Exception, match="does not match its audit trail") as refused:
        copies.export(BATCH, out, actor=Actor("qa1", "qa"), generated_by="Quinn Quality (qa1)")
    assert "deviation row" in str(refused.value) and "edited outside the product" in str(
        refused.value
    )
    with pytest.raises(Exception, match="does not match its audit trail"):
        copies.report(BATCH, pdf, actor=Actor("qa1", "qa"), generated_by="Quinn Quality (qa1)")
    assert sorted(p.name for p in folder.iterdir()) == []
    # The refusal itself is recorded.
    actions = [
        r[0]
        for r in db.execute(
            "SELECT action FROM audit_event WHERE entity_id = ? ORDER BY seq", (BATCH,)
        )
    ]
    assert actions.count("ebr.export.refused") == 2


async def test_a_resigned_bundle_with_an_edited_or_dropped_row_is_caught(
    site: Site, engine: BatchEngine, driver: Driver, alarms: AlarmService, tmp_path: Path
) -> None:
    await batch_with_deviations(driver, engine, BATCH, alarms=alarms, release=True)
    copies = BatchRecordCopies.for_site(site, engine)
    bundle = tmp_path / "record.bundle.jsonl"
    copies.export(BATCH, bundle, actor=Actor("qa1", "qa"), generated_by="Quinn Quality (qa1)")
    read = read_batch_bundle(bundle)
    assert read.ok, read.report.problems

    def rows_of(lines: list[dict[str, object]], table: str) -> list[dict[str, object]]:
        return [
            line for line in lines
            if line["type"] == "ebr.row" and line["data"]["table"] == table  # type: ignore[index]
        ]  # fmt: skip

    def edit_reason(lines: list[dict[str, object]]) -> None:
        """The printed deviation and its row both changed, consistently."""
        for line in lines:
            data = line.get("data")
            if line["type"] == "ebr.deviation" and isinstance(data, dict) and data["reason_text"]:
                data["reason_text"] = "nothing to report"
                for row_line in rows_of(lines, "deviation"):
                    row = row_line["data"]["row"]  # type: ignore[index]
                    if row["deviation_id"] == data["deviation_id"]:
                        row["reason_text"] = "nothing to report"
                return

    def drop_command(lines: list[dict[str, object]]) -> None:
        """A PLC command dropped from the printed record and from the rows."""
        command = next(line for line in lines if line["type"] == "ebr.plc_command")
        command_id = command["data"]["command_id"]  # type: ignore[index]
        row = next(r for r in rows_of(lines, "plc_command") if r["data"]["key"] == str(command_id))  # type: ignore[index]
        lines.remove(command)
        lines.remove(row)

    def edit_performer(lines: list[dict[str, object]]) -> None:
        """Only the printed line changed: the row it comes from says otherwise."""
        step = next(
            line for line in lines
            if line["type"] == "ebr.step" and line["data"]["performed_by"]  # type: ignore[index]
        )  # fmt: skip
        step["data"]["performed_by"] = "mallory"  # type: ignore[index]

    for name, edit, expected in (
        ("reason", edit_reason, "row_edited"),
        ("command", drop_command, "row_deleted"),
        ("performer", edit_performer, "bundle"),
    ):
        forged = tmp_path / f"{name}.bundle.jsonl"
        forged.write_bytes(_resign(bundle, site, edit))
        result = read_batch_bundle(forged)
        assert not result.ok, name
        kinds = {str(p.kind) for p in result.report.problems}
        assert expected in kinds, (name, result.report.problems)
        if name == "performer":
            assert any("performed_by differs from the stored batch_step row" in p.message
                       for p in result.report.problems)  # fmt: skip
