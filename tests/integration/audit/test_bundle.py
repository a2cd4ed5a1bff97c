"""Exported bundles verify offline with no database; any edited byte is caught and located."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from hmi.audit.bundle import BundleError, read_bundle
from hmi.audit.store import trusted_keys
from hmi.audit.verify import Kind
from hmi.cli import main
from hmi.site import Site
from tests.helpers.audit import add_events

from .conftest import Exporter


@pytest.fixture
def bundle(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str], exporter: Exporter
) -> Path:
    add_events(site, 25)
    site.audit.checkpoint("test")
    (tmp_path / "export").mkdir()
    out = tmp_path / "export" / "trail.bundle"
    assert main(["audit", "export", "--data", str(site.data_dir), "--out", str(out)]) == 0
    assert "bundle SHA-256" in capsys.readouterr().out
    return out


def test_bundle_verifies_on_another_machine_without_the_database(
    site: Site, bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    elsewhere = tmp_path / "inspector"
    elsewhere.mkdir()
    copy = elsewhere / "trail.bundle"
    shutil.copy(bundle, copy)
    pub = elsewhere / "terminal.pub"
    shutil.copy(site.settings.public_key_path, pub)
    shutil.rmtree(site.data_dir)
    assert main(["audit", "verify", "--bundle", str(copy), "--trust-key", str(pub)]) == 0
    assert "INTACT" in capsys.readouterr().out
    report, contents = read_bundle(copy, trust=trusted_keys([pub]))
    assert report.ok
    assert len(contents.events) == contents.header["events"] >= 27 and contents.checkpoints
    assert contents.header["exported_by"]["user_id"] == "ada"


def test_every_line_edit_is_caught_and_located(bundle: Path) -> None:
    lines = bundle.read_bytes().split(b"\n")
    event_line = next(i for i, line in enumerate(lines) if b'"new_value":"10"' in line)
    seq = json.loads(lines[event_line])["seq"]
    lines[event_line] = lines[event_line].replace(b'"new_value":"10"', b'"new_value":"17"')
    bundle.write_bytes(b"\n".join(lines))
    report, _ = read_bundle(bundle)
    found = {(p.kind, p.seq) for p in report.problems}
    assert (Kind.MODIFIED, seq) in found
    assert any("does not match its signed SHA-256" in p.message for p in report.problems)


@pytest.mark.parametrize("position", [0.01, 0.2, 0.5, 0.8, 0.97, 0.999])
def test_any_single_byte_change_fails_verification(bundle: Path, position: float) -> None:
    data = bytearray(bundle.read_bytes())
    index = int(len(data) * position)
    data[index] = ord("0") if data[index] != ord("0") else ord("1")
    bundle.write_bytes(bytes(data))
    try:
        report, _ = read_bundle(bundle)
    except BundleError:
        return  # the header itself was destroyed: refused outright
    assert not report.ok
    assert any(p.message.startswith("line ") or p.seq is not None for p in report.problems)


def test_untrusted_key_is_flagged(bundle: Path, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from hmi.audit.keys import public_pem

    other = tmp_path / "other.pub"
    other.write_bytes(public_pem(Ed25519PrivateKey.generate().public_key()))
    report, _ = read_bundle(bundle, trust=trusted_keys([other]))
    kinds = {p.kind for p in report.problems}
    assert Kind.UNTRUSTED_KEY in kinds and Kind.UNKNOWN_KEY in kinds


def test_range_export_and_csv(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str], exporter: Exporter
) -> None:
    add_events(site, 5)
    out = tmp_path / "range.bundle"
    assert main(["audit", "export", "--data", str(site.data_dir), "--out", str(out),
                 "--from", "2026-03-02T07:30:00Z", "--to", "2026-12-31"]) == 0  # fmt: skip
    report, contents = read_bundle(out)
    assert report.ok, report.problems
    assert contents.header["scope"]["from"] == "2026-03-02T07:30:00.000000Z"
    sheet = tmp_path / "trail.csv"
    assert main(["audit", "export", "--data", str(site.data_dir), "--out", str(sheet)]) == 0
    with sheet.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["action"] == "audit.chain.started"
    assert {r["action"] for r in rows} >= {"site.initialised", "test.event", "audit.exported"}
    assert (
        main(
            [
                "audit",
                "export",
                "--data",
                str(site.data_dir),
                "--out",
                str(tmp_path / "later.bundle"),
                "--from",
                "2030-01-01",
            ]
        )
        == 1
    )
    assert "no audit events match" in capsys.readouterr().err
    assert main(["audit", "export", "--data", str(site.data_dir), "--out", str(out)]) == 2
    assert "never overwritten" in capsys.readouterr().err


def test_truncated_bundle_is_reported(bundle: Path) -> None:
    lines = bundle.read_bytes().split(b"\n")
    bundle.write_bytes(b"\n".join(lines[:10]) + b"\n")
    report, _ = read_bundle(bundle)
    messages = " ".join(p.message for p in report.problems)
    assert "signature line is missing" in messages
    assert "the header announces" in messages


def test_not_a_bundle(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bundle"
    junk.write_text(json.dumps({"format": "something else"}) + "\n")
    with pytest.raises(BundleError, match="not an audit bundle"):
        read_bundle(junk)


def test_export_is_attributed_to_the_logged_in_user(
    site: Site, tmp_path: Path, exporter: Exporter, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from sqlalchemy import text

    out = tmp_path / "who.bundle"
    assert main(["audit", "export", "--data", str(site.data_dir), "--out", str(out)]) == 0
    assert exporter.logins == 1
    with site.engine.connect() as conn:
        actor = conn.execute(
            text("SELECT actor_id FROM audit_event WHERE action = 'audit.exported'")
        ).scalar_one()
    assert actor == "ada"
    # A wrong password: no copy, and the failure is recorded.
    monkeypatch.setattr("hmi.commands.users.ask_secret", lambda _prompt: "not the password")
    denied = tmp_path / "denied.bundle"
    assert main(["audit", "export", "--data", str(site.data_dir), "--out", str(denied)]) == 1
    assert not denied.exists()
    assert "Traceback" not in capsys.readouterr().err
    with site.engine.connect() as conn:
        failed = conn.execute(
            text("SELECT COUNT(*) FROM audit_event WHERE action = 'auth.login.failed'")
        ).scalar()
    assert failed == 1
