"""Every export carries the signed chain head it was made from, and ``hmi audit verify
--against`` proves the trail still extends every copy held elsewhere: the attacks that read
INTACT against the site alone (a consistent truncation or rewrite of the database and its
witness; a bundle cut and re-signed with the terminal's own key) are caught by the copy QA
kept. Real sites, real keys, the real CLI."""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hmi.audit.bundle import read_bundle
from hmi.audit.checkpoint import Checkpoint, make_checkpoint
from hmi.audit.keys import Signer
from hmi.audit.store import trusted_keys
from hmi.cli import main
from hmi.clock import ManualClock
from hmi.site import Site
from tests.helpers.audit import add_events
from tests.helpers.insider import (
    bundle_lines,
    open_db,
    resign_bundle,
    rewrite_chain,
    rewrite_witness,
    rows_of,
)

from .conftest import Exporter


def verify_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["audit", "verify", *args, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


def kinds(report: dict[str, Any]) -> set[tuple[str, int | None]]:
    return {(p["kind"], p["seq"]) for p in report["problems"]}


def export(site: Site, out: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    assert main(["audit", "export", "--data", str(site.data_dir), "--out", str(out), *extra]) == 0
    return capsys.readouterr().out


def head_seq(site: Site) -> int:
    conn = open_db(site.data_dir / "hmi.db")
    try:
        return int(conn.execute("SELECT MAX(seq) FROM audit_event").fetchone()[0])
    finally:
        conn.close()


@pytest.fixture
def held(
    site: Site, tmp_path: Path, exporter: Exporter, clock: ManualClock,
    capsys: pytest.CaptureFixture[str],
) -> dict[str, Path]:  # fmt: skip
    """QA's copies, kept away from the site: a bundle and a copy of the witness file made at
    the same moment; then the site goes on recording."""
    for _ in range(10):
        clock.advance(1)
        add_events(site, 1)
    site.audit.checkpoint("test")
    qa = tmp_path / "qa"
    qa.mkdir()
    export(site, qa / "old.bundle", capsys)
    shutil.copy(site.settings.witness_path, qa / "witness-copy.jsonl")
    shutil.copy(site.settings.public_key_path, qa / "terminal.pub")
    for _ in range(10):
        clock.advance(1)
        add_events(site, 1)
    site.audit.checkpoint("test")
    site.close()
    return {
        "bundle": qa / "old.bundle",
        "witness": qa / "witness-copy.jsonl",
        "key": qa / "terminal.pub",
    }


def test_every_export_carries_its_signed_chain_head(
    site: Site, held: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report, contents = read_bundle(held["bundle"], trust=trusted_keys([held["key"]]))
    assert report.ok, report.problems
    header = contents.header
    assert header["version"] == 2 and header["ends_at_head"] is True
    [head] = [Checkpoint.from_json(item) for item in header["chain_heads"]]
    last = contents.events[-1]
    assert (head.terminal, head.seq, head.row_hash) == ("KIOSK-01", last["seq"], last["row_hash"])
    assert head.reason == "export" and head.signature_valid(site.signer.public)
    assert header["chains"] == {"KIOSK-01": [1, last["seq"]]}
    # The export's own event records the head it was made from.
    exported = next(
        e for e in rows_of(open_db(site.data_dir / "hmi.db")) if e["action"] == "audit.exported"
    )
    assert json.loads(exported["details"])["chain_heads"] == {"KIOSK-01": [head.seq, head.row_hash]}
    # A CSV export writes its signed heads beside it, usable with --against.
    sheet = tmp_path / "trail.csv"
    printed = export(site, sheet, capsys)
    sidecar = tmp_path / "trail.csv.head.jsonl"
    assert f"signed chain heads in {sidecar}" in printed
    with sheet.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    [csv_head] = [
        Checkpoint.from_json(json.loads(line)) for line in sidecar.read_text().splitlines()
    ]
    assert csv_head.seq == int(rows[-1]["seq"]) and csv_head.row_hash == rows[-1]["row_hash"]
    code, report_json = verify_json(
        capsys, "--data", str(site.data_dir), "--trust-key", str(held["key"]),
        "--against", str(sidecar), "--against", str(held["bundle"]),
    )  # fmt: skip
    assert code == 0, report_json["problems"]
    assert any("position(s) compared" in note for note in report_json["notes"])


def test_a_consistent_truncation_is_caught_against_a_copy_held_elsewhere(
    site: Site, tmp_path: Path, exporter: Exporter, clock: ManualClock,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """The database and its witness file put back together as they were earlier (an old
    backup restored over them: no key needed) agree with each other; the copies QA made
    since then show the trail no longer reaches what they hold."""
    add_events(site, 6)
    site.audit.checkpoint("test")
    backup = tmp_path / "backup"
    backup.mkdir()
    with (
        sqlite3.connect(site.data_dir / "hmi.db") as live,
        sqlite3.connect(backup / "hmi.db") as copy,
    ):
        live.backup(copy)
    shutil.copy(site.settings.witness_path, backup / "checkpoints.jsonl")
    restored_head = head_seq(site)
    clock.advance(60)
    qa = tmp_path / "qa"
    qa.mkdir()
    export(site, qa / "copy.bundle", capsys)
    add_events(site, 5)
    site.audit.checkpoint("test")
    shutil.copy(site.settings.witness_path, qa / "witness-copy.jsonl")
    shutil.copy(site.settings.public_key_path, qa / "terminal.pub")
    site.close()
    for stale in site.data_dir.glob("hmi.db*"):
        stale.unlink()
    shutil.copy(backup / "hmi.db", site.data_dir / "hmi.db")
    shutil.copy(backup / "checkpoints.jsonl", site.settings.witness_path)
    data = ["--data", str(site.data_dir), "--trust-key", str(qa / "terminal.pub")]
    # Against the site alone, the restored database and witness agree with each other.
    code, report = verify_json(capsys, *data)
    assert code == 0, report["problems"]
    assert report["chains"]["KIOSK-01"]["last_seq"] == restored_head
    for held_copy in (qa / "copy.bundle", qa / "witness-copy.jsonl"):
        code, report = verify_json(capsys, *data, "--against", str(held_copy))
        assert code == 1
        assert kinds(report) == {("truncated", restored_head + 1)}, report["problems"]
        message = report["problems"][0]["message"]
        assert message.startswith(f"against {held_copy}: the chain ends at seq {restored_head}")


def test_a_rewritten_history_is_caught_against_a_copy_held_elsewhere(
    site: Site, held: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    def edit(fields: dict[str, Any]) -> None:
        if fields["seq"] == 8:
            fields["new_value"] = "rewritten"

    hashes = rewrite_chain(site.data_dir / "hmi.db", site.signer, edit, from_seq=8)
    rewrite_witness(site.settings.witness_path, site.signer, hashes)
    data = ["--data", str(site.data_dir), "--trust-key", str(held["key"])]
    code, report = verify_json(capsys, *data)
    assert code == 0, report["problems"]  # the insider re-signed everything with the key
    code, report = verify_json(capsys, *data, "--against", str(held["bundle"]))
    assert code == 1
    assert kinds(report) == {("forked", 8)}
    message = report["problems"][0]["message"]
    assert message.startswith(f"against {held['bundle']}: the event at seq 8 is not the one")
    assert "later position(s) differ too" in message
    code, report = verify_json(capsys, *data, "--against", str(held["witness"]))
    assert code == 1 and {kind for kind, _ in kinds(report)} == {"forked"}


def _cut(
    bundle: Path, keep: int, *, fix_header: bool, keep_checkpoints: bool = False
) -> list[dict[str, Any]]:
    """The bundle with its events after seq ``keep`` (and the checkpoints past it) dropped."""
    lines = bundle_lines(bundle)
    out = []
    for line in lines:
        if line["type"] == "event" and line["seq"] > keep:
            continue
        if line["type"] == "checkpoint" and line["seq"] > keep and not keep_checkpoints:
            continue
        out.append(line)
    if fix_header:
        header = out[0]
        header["events"] = sum(1 for line in out if line["type"] == "event")
        header["checkpoints"] = sum(1 for line in out if line["type"] == "checkpoint")
        header["chains"] = {"KIOSK-01": [1, keep]}
    return out


@pytest.mark.parametrize("fix_header", [False, True])
def test_a_bundle_cut_and_resigned_is_reported(
    site: Site, held: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    fix_header: bool,
) -> None:  # fmt: skip
    head = json.loads(held["bundle"].read_text().splitlines()[0])["chain_heads"][0]["seq"]
    cut = tmp_path / "cut.bundle"
    cut.write_bytes(
        resign_bundle(_cut(held["bundle"], head - 3, fix_header=fix_header), site.signer)
    )
    code, report = verify_json(capsys, "--bundle", str(cut), "--trust-key", str(held["key"]))
    assert code == 1
    assert ("truncated", head - 2) in kinds(report)
    assert any("its tail was cut" in p["message"] for p in report["problems"])


def test_a_bundle_that_ends_before_its_own_checkpoint_is_reported(
    site: Site, held: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    head = json.loads(held["bundle"].read_text().splitlines()[0])["chain_heads"][0]["seq"]
    witnessed = [
        line["seq"] for line in bundle_lines(held["bundle"]) if line["type"] == "checkpoint"
    ]
    keep = max(witnessed) - 1
    lines = _cut(held["bundle"], keep, fix_header=True, keep_checkpoints=True)
    last = next(line for line in reversed(lines) if line["type"] == "event")
    # The insider also signs a new head at the new end: only the checkpoint still shows the cut.
    lines[0]["chain_heads"] = [
        make_checkpoint(site.signer, "KIOSK-01", keep, last["row_hash"],
                        "2026-03-02T08:00:00.000000Z", "export").to_json()
    ]  # fmt: skip
    cut = tmp_path / "cut.bundle"
    cut.write_bytes(resign_bundle(lines, site.signer))
    code, report = verify_json(capsys, "--bundle", str(cut), "--trust-key", str(held["key"]))
    assert code == 1
    assert kinds(report) == {("truncated", keep + 1)}
    assert f"witnessed seq {max(witnessed)}" in report["problems"][0]["message"]
    assert head >= max(witnessed)


def test_a_bundle_cut_with_a_forged_head_is_caught_against_an_older_copy(
    site: Site, held: dict[str, Path], tmp_path: Path, exporter: Exporter,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """A new export, cut and re-signed together with its head and checkpoints by someone
    holding the key, is consistent in itself; the copy QA made earlier still shows the cut."""
    site_again = tmp_path / "new.bundle"
    from hmi.site import open_site

    opened = open_site(site.data_dir, clock=site.clock)
    try:
        export(opened, site_again, capsys)
    finally:
        opened.close()
    old_head = json.loads(held["bundle"].read_text().splitlines()[0])["chain_heads"][0]["seq"]
    keep = old_head - 2
    lines = _cut(site_again, keep, fix_header=True)
    last = next(line for line in reversed(lines) if line["type"] == "event")
    lines[0]["chain_heads"] = [
        make_checkpoint(site.signer, "KIOSK-01", keep, last["row_hash"], lines[0]["created_at"],
                        "export").to_json()
    ]  # fmt: skip
    cut = tmp_path / "cut.bundle"
    cut.write_bytes(resign_bundle(lines, site.signer))
    trust = ["--trust-key", str(held["key"])]
    code, report = verify_json(capsys, "--bundle", str(cut), *trust)
    assert code == 0, report["problems"]
    code, report = verify_json(
        capsys, "--bundle", str(cut), *trust, "--against", str(held["bundle"])
    )
    assert code == 1
    assert kinds(report) == {("truncated", keep + 1)}
    assert report["problems"][0]["message"].startswith(f"against {held['bundle']}:")


def test_against_files_that_cannot_vouch(
    site: Site, held: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--data", str(site.data_dir), "--trust-key", str(held["key"])]
    # Missing, or not a bundle nor a checkpoint file: cannot verify as asked (exit 2).
    assert main(["audit", "verify", *data, "--against", str(tmp_path / "nothing")]) == 2
    assert "no such file" in capsys.readouterr().err
    junk = tmp_path / "junk.json"
    junk.write_text('{"hello": "world"}\n')
    assert main(["audit", "verify", *data, "--against", str(junk)]) == 2
    assert "neither a bundle nor a file of checkpoints" in capsys.readouterr().err
    # A copy signed by a key that is not trusted vouches for nothing: reported.
    stranger = Signer(Ed25519PrivateKey.generate())
    forged = tmp_path / "forged.bundle"
    forged.write_bytes(resign_bundle(bundle_lines(held["bundle"]), stranger))
    code, report = verify_json(capsys, *data, "--against", str(forged))
    assert code == 1 and kinds(report) == {("bundle", None)}
    assert "cannot vouch for any position" in report["problems"][-1]["message"]
    # A version this verifier does not know cannot be read as asked (exit 2).
    lines = bundle_lines(held["bundle"])
    lines[0]["version"] = 99
    future = tmp_path / "future.bundle"
    future.write_bytes(resign_bundle(lines, site.signer))
    assert main(["audit", "verify", *data, "--against", str(future)]) == 2
    assert "version 99, which this verifier does not know" in capsys.readouterr().err
    # A copy signed by the site's own key but with a line not in canonical form: it was
    # written by something else and signed again, so it vouches for nothing.
    raw = [json.dumps(x, separators=(",", ":"), sort_keys=True).encode() for x in lines[1:]]
    raw.insert(0, json.dumps({**lines[0], "version": 2}, indent=None).encode())
    from tests.helpers.insider import sign_bundle

    loose = tmp_path / "loose.bundle"
    loose.write_bytes(sign_bundle(raw, site.signer))
    code, report = verify_json(capsys, *data, "--against", str(loose))
    assert code == 1
    assert any("line 1 (header): not in canonical form" in p["message"] for p in report["problems"])
    assert "cannot vouch for any position" in report["problems"][-1]["message"]
    points = tmp_path / "points.jsonl"
    line = json.loads(held["witness"].read_text().splitlines()[-1])
    point = make_checkpoint(stranger, "KIOSK-01", line["seq"], line["row_hash"], line["ts"], "test")
    points.write_text(json.dumps(point.to_json(), separators=(",", ":"), sort_keys=True) + "\n")
    code, report = verify_json(capsys, *data, "--against", str(points))
    assert code == 1 and kinds(report) == {("bad_checkpoint", line["seq"])}
    assert "not a trusted key" in report["problems"][0]["message"]
    assert head_seq(site) > line["seq"]


def test_a_head_signed_by_a_trusted_key_no_chain_enrolled_vouches_for_nothing(
    site: Site, held: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """QA's anchor folder holds the keys of two sites: the other site's key may not sign this
    site's chain head or checkpoints, though it is trusted."""
    from tests.integration.audit.test_trust_anchors import public_pem_of

    anchors = tmp_path / "anchors"
    anchors.mkdir()
    shutil.copy(held["key"], anchors / "this-site.pub")
    other = Signer(Ed25519PrivateKey.generate())
    (anchors / "other-site.pub").write_bytes(public_pem_of(other))

    def by_other(data: dict[str, Any]) -> dict[str, Any]:
        point = Checkpoint.from_json(data)
        return make_checkpoint(
            other, point.terminal, point.seq, point.row_hash, point.ts, point.reason
        ).to_json()

    lines = [by_other(x) if x["type"] == "checkpoint" else x for x in bundle_lines(held["bundle"])]
    lines[0]["chain_heads"] = [by_other(h) for h in lines[0]["chain_heads"]]
    resigned = tmp_path / "resigned.bundle"
    resigned.write_bytes(resign_bundle(lines, site.signer))
    code, report = verify_json(capsys, "--bundle", str(resigned), "--trust-key", str(anchors))
    assert code == 1
    refused = [p for p in report["problems"] if p["kind"] == "bad_checkpoint"]
    assert any("chain head" in p["message"] for p in refused)
    assert len(refused) == 1 + sum(1 for x in lines if x["type"] == "checkpoint")
    assert all("no chain" in p["message"] and "enrolled" in p["message"] for p in refused)
    assert {p["kind"] for p in report["problems"]} == {"bad_checkpoint"}


def test_terminal_on_a_bundle_is_checked_and_applied(
    held: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    trust = ["--bundle", str(held["bundle"]), "--trust-key", str(held["key"])]
    code = main(["audit", "verify", *trust, "--terminal", "KIOSK-99"])
    assert code == 2
    err = capsys.readouterr().err
    assert "holds no chain for terminal KIOSK-99" in err and "KIOSK-01" in err
    code, report = verify_json(capsys, *trust, "--terminal", "KIOSK-01")
    assert code == 0, report["problems"]
    assert list(report["chains"]) == ["KIOSK-01"]


def test_a_bundle_of_two_terminals_carries_both_keys(
    site: Site, exporter: Exporter, clock: ManualClock, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """A site database shared by two kiosks: the export carries the key of every event it
    holds, so it verifies offline with the keys it holds (each printed with its fingerprint)."""
    from hmi.audit.chain import SYSTEM, AuditLog

    second = AuditLog(
        site.engine, terminal_id="KIOSK-02", signer=Signer(Ed25519PrivateKey.generate()),
        clock=clock, witness=None,
    )  # fmt: skip
    with site.engine.begin() as conn:
        second.register_terminal(conn)
    for n in range(3):
        clock.advance(1)
        second.record_now("test.second.kiosk", SYSTEM, details={"n": n})
    add_events(site, 2)
    out = tmp_path / "site.bundle"
    export(site, out, capsys)
    carried = {line["key_id"] for line in bundle_lines(out) if line["type"] == "key"}
    assert carried == {site.signer.key_id, second.signer.key_id}
    code, report = verify_json(capsys, "--bundle", str(out))
    assert code == 0, report["problems"]
    assert set(report["chains"]) == {"KIOSK-01", "KIOSK-02"}
    assert {k["key_id"] for k in report["trust"]["keys"]} == carried
