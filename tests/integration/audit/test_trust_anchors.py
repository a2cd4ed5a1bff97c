"""Trust comes from outside the site: ``--trust-key`` is the only trust in every verify mode, an
anchor that cannot be read is an error (never a fallback), the report names the keys it trusts
when none was given, and a terminal's key enrolment is an event of its chain. Each attack is made
on a real site (SQLite file, real keys) and run through the real ``hmi audit verify``."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hmi.audit import canonical
from hmi.audit.keys import Signer, create_key_pair, public_pem
from hmi.cli import main
from hmi.site import Site
from tests.helpers.audit import add_events
from tests.helpers.insider import open_db, rewrite_chain, rewrite_witness

from .conftest import Exporter

HMI = str(Path(sys.executable).parent / "hmi")


def verify_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["audit", "verify", *args, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


def kinds(report: dict[str, Any]) -> set[tuple[str, int | None]]:
    return {(p["kind"], p["seq"]) for p in report["problems"]}


def other_key(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(public_pem(Ed25519PrivateKey.generate().public_key()))
    return path


@pytest.fixture
def published(site: Site, tmp_path: Path) -> Path:
    """QA's own copy of the terminal's public key, kept away from the site."""
    target = tmp_path / "qa" / "terminal.pub"
    target.parent.mkdir()
    shutil.copy(site.settings.public_key_path, target)
    return target


def test_an_unrelated_trust_key_fails_a_pristine_site(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    add_events(site, 3)
    site.audit.checkpoint("test")
    unrelated = other_key(tmp_path / "unrelated.pub")
    code, report = verify_json(capsys, "--data", str(site.data_dir), "--trust-key", str(unrelated))
    assert code == 1
    last = report["chains"]["KIOSK-01"]["last_seq"]
    found = kinds(report)
    assert {("unknown_key", seq) for seq in range(1, last + 1)} <= found
    assert ("untrusted_key", 1) in found and ("bad_checkpoint", last) in found
    assert report["trust"]["given"] is True
    assert [k["from"] for k in report["trust"]["keys"]] == [str(unrelated)]


def _rekey(site: Site) -> Signer:
    """Replace the site's key pair, its key and terminal tables, its whole chain and its
    witness with a new key, consistently: the site folder now vouches for the new key."""
    site.close()
    settings = site.settings
    settings.signing_key_path.unlink()
    settings.public_key_path.unlink()
    new = create_key_pair(settings.signing_key_path, settings.public_key_path)
    db = site.data_dir / "hmi.db"
    conn = open_db(db)
    conn.execute("DELETE FROM terminal")
    conn.execute("DELETE FROM audit_key")
    conn.execute(
        "INSERT INTO audit_key VALUES (?, 'KIOSK-01', 'ed25519', ?, '2026-03-02T07:30:00.000000Z')",
        (new.key_id, new.public.raw.hex()),
    )
    conn.execute(
        "INSERT INTO terminal VALUES ('KIOSK-01', ?, '2026-03-02T07:30:00.000000Z')", (new.key_id,)
    )
    conn.close()

    def rekeyed(fields: dict[str, Any]) -> None:
        if fields["action"] in {"audit.chain.started", "audit.key.enrolled"}:
            details = json.loads(fields["details"])
            details["key_id"] = new.key_id
            details["public_key"] = new.public.raw.hex()
            details.pop("public_key_sha256", None)
            fields["details"] = canonical.dumps(details)

    hashes = rewrite_chain(db, new, rekeyed)
    rewrite_witness(settings.witness_path, new, hashes)
    return new


def test_a_rekeyed_site_fails_against_the_published_key(
    site: Site, published: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    add_events(site, 4)
    site.audit.checkpoint("test")
    new = _rekey(site)
    data = str(site.data_dir)
    # Trusting what the site folder offers, the re-keyed site is consistent in itself...
    code, report = verify_json(capsys, "--data", data)
    assert code == 0, report["problems"]
    assert report["trust"]["given"] is False
    [shown] = report["trust"]["keys"]
    assert shown["key_id"] == new.key_id
    assert shown["sha256"] == hashlib.sha256(new.public.raw).hexdigest()
    # ...which is why the report prints the fingerprint: it is not the published one.
    assert main(["audit", "verify", "--data", data]) == 0
    human = capsys.readouterr().out
    first = human.splitlines()[:3]
    assert "no --trust-key given: trusting the keys found in the site folder" in " ".join(first)
    assert f"key {new.key_id}  SHA-256 {shown['sha256']}" in human
    # With the published key, every row and the genesis are reported.
    code, report = verify_json(capsys, "--data", data, "--trust-key", str(published))
    assert code == 1
    last = report["chains"]["KIOSK-01"]["last_seq"]
    assert {("unknown_key", seq) for seq in range(1, last + 1)} <= kinds(report)
    assert ("untrusted_key", 1) in kinds(report)
    assert report["trust"]["keys"][0]["from"] == str(published)


@pytest.mark.parametrize("anchor", ["empty folder", "missing file", "not a key", "private key"])
def test_an_anchor_that_cannot_be_read_is_an_error_never_a_fallback(
    site: Site,
    tmp_path: Path,
    exporter: Exporter,
    capsys: pytest.CaptureFixture[str],
    anchor: str,
) -> None:
    add_events(site, 2)
    bundle = tmp_path / "trail.bundle"
    assert main(["audit", "export", "--data", str(site.data_dir), "--out", str(bundle)]) == 0
    capsys.readouterr()
    path = tmp_path / "anchor"
    if anchor == "empty folder":
        path.mkdir()
        (path / "README.txt").write_text("the published keys go here")
        expected = "holds no public key"
    elif anchor == "missing file":
        expected = "does not exist"
    elif anchor == "not a key":
        path.write_text("-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n")
        expected = "cannot read public key"
    else:
        shutil.copy(site.settings.signing_key_path, path)
        expected = "cannot read public key"
    for source in (["--data", str(site.data_dir)], ["--bundle", str(bundle)]):
        assert main(["audit", "verify", *source, "--trust-key", str(path)]) == 2
        captured = capsys.readouterr()
        assert expected in captured.err and "INTACT" not in captured.out
    assert main(["ebr", "verify", str(bundle), "--trust-key", str(path)]) == 2
    assert expected in capsys.readouterr().err


def test_a_folder_of_published_keys_is_an_anchor(
    site: Site, tmp_path: Path, published: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other_key(published.parent / "kiosk-02.pub")
    add_events(site, 2)
    site.audit.checkpoint("test")
    code, report = verify_json(
        capsys, "--data", str(site.data_dir), "--trust-key", str(published.parent)
    )
    assert code == 0, report["problems"]
    assert len(report["trust"]["keys"]) == 2


def test_a_bundle_without_trust_key_names_its_own_keys(
    site: Site, tmp_path: Path, exporter: Exporter, capsys: pytest.CaptureFixture[str]
) -> None:
    add_events(site, 2)
    bundle = tmp_path / "trail.bundle"
    assert main(["audit", "export", "--data", str(site.data_dir), "--out", str(bundle)]) == 0
    capsys.readouterr()
    assert main(["audit", "verify", "--bundle", str(bundle)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "trusting the keys found in the bundle itself" in lines[1]
    fingerprint = hashlib.sha256(site.signer.public.raw).hexdigest()
    assert f"key {site.signer.key_id}  SHA-256 {fingerprint}  (the bundle)" in lines[2]


def test_init_prints_the_fingerprint_and_records_the_enrolment(tmp_path: Path) -> None:
    target = tmp_path / "plant"
    made = subprocess.run(
        [HMI, "init", "--data", str(target), "--terminal-id", "BLEND-2"],
        capture_output=True, text=True, timeout=120, env={**os.environ},
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    with sqlite3.connect(target / "hmi.db") as conn:
        first = conn.execute(
            "SELECT seq, action, key_id, details FROM audit_event ORDER BY seq LIMIT 3"
        ).fetchall()
    assert [row[1] for row in first] == [
        "audit.chain.started", "audit.key.enrolled", "site.initialised",
    ]  # fmt: skip
    enrolled = json.loads(first[1][3])
    key_id = first[1][2]
    assert enrolled["key_id"] == key_id and enrolled["terminal_id"] == "BLEND-2"
    raw = bytes.fromhex(enrolled["public_key"])
    assert enrolled["public_key_sha256"] == hashlib.sha256(raw).hexdigest()
    assert enrolled["public_key_file"] == "keys/terminal.ed25519.pub"
    assert f"key id {key_id}" in made.stdout
    assert f"fingerprint: SHA-256 {hashlib.sha256(raw).hexdigest()}" in made.stdout
    assert "Publish the public key and this fingerprint outside this computer" in made.stdout
    verified = subprocess.run(
        [HMI, "audit", "verify", "--data", str(target)],
        capture_output=True, text=True, timeout=120, env={**os.environ},
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_trusted_key_the_chain_never_enrolled_is_reported(
    site: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    """Another terminal's key is trusted at the site (keys/trusted/); rows of this chain
    re-signed with it are reported, unless the chain enrolled that key first."""
    add_events(site, 8)
    site.audit.checkpoint("test")
    site.close()
    trusted = site.data_dir / "keys" / "trusted"
    trusted.mkdir()
    other = Signer(Ed25519PrivateKey.generate())
    (trusted / "kiosk-02.pub").write_bytes(public_pem_of(other))
    db = site.data_dir / "hmi.db"
    hashes = rewrite_chain(db, other, from_seq=7)
    rewrite_witness(site.settings.witness_path, other, hashes)
    code, report = verify_json(capsys, "--data", str(site.data_dir))
    assert code == 1
    # the witness, re-signed with the same key, vouches for nothing: no chain enrolled it
    refused = [p for p in report["problems"] if p["kind"] == "bad_checkpoint"]
    assert refused and all("no chain verified here enrolled" in p["message"] for p in refused)
    assert kinds(report) == {("unenrolled_key", 7)} | {
        ("bad_checkpoint", p["seq"]) for p in refused
    }
    unenrolled = next(p for p in report["problems"] if p["kind"] == "unenrolled_key")
    assert "never enrolled" in unenrolled["message"]

    def enrol(fields: dict[str, Any]) -> None:
        if fields["seq"] == 7:
            fields["action"] = "audit.key.enrolled"
            fields["details"] = canonical.dumps(
                {"algorithm": "ed25519", "key_id": other.key_id,
                 "public_key": other.public.raw.hex(), "terminal_id": "KIOSK-01"}
            )  # fmt: skip

    # The other key cannot enrol itself: an enrolment it signs enrols nothing.
    hashes = rewrite_chain(db, other, enrol, from_seq=7)
    rewrite_witness(site.settings.witness_path, other, hashes)
    code, report = verify_json(capsys, "--data", str(site.data_dir))
    assert code == 1
    assert ("bad_enrolment", 7) in kinds(report)
    assert ("unenrolled_key", 7) in kinds(report)
    bad = next(p for p in report["problems"] if p["kind"] == "bad_enrolment")
    assert "signed by the key it enrols" in bad["message"]

    # A key change recorded as its own enrolment event, signed by the enrolled key, is accepted.
    rewrite_chain(db, site.signer, enrol, from_seq=7)
    hashes = rewrite_chain(db, other, from_seq=8)
    rewrite_witness(site.settings.witness_path, other, hashes)
    code, report = verify_json(capsys, "--data", str(site.data_dir))
    assert code == 0, report["problems"]
    assert report["chains"]["KIOSK-01"]["key_ids"] == sorted([site.signer.key_id, other.key_id])


def public_pem_of(signer: Signer) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return public_pem(Ed25519PublicKey.from_public_bytes(signer.public.raw))


def test_a_copy_of_the_site_without_its_private_key_is_verified(
    site: Site, published: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An inspector gets the site folder without the terminal's private key: verify reads the
    copy as it is, and a tampered copy is still reported."""
    add_events(site, 6)
    site.close()
    copy = tmp_path / "inspector-copy"
    shutil.copytree(site.data_dir, copy)
    private = copy / site.settings.signing_key_path.relative_to(site.data_dir)
    private.unlink()

    def contents() -> dict[str, str]:
        # SQLite's shared-memory index of a WAL database is made by any reader: not content
        return {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in copy.rglob("*")
            if p.is_file() and not p.name.endswith(("-shm", "-wal"))
        }

    before = contents()
    code, report = verify_json(capsys, "--data", str(copy), "--trust-key", str(published))
    assert code == 0, report["problems"]
    assert report["rows_checked"] == report["chains"]["KIOSK-01"]["events"] > 6
    assert contents() == before
    conn = open_db(copy / "hmi.db")
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        conn.execute(f'DROP TRIGGER "{name}"')
    conn.execute("UPDATE audit_event SET reason = 'edited' WHERE seq = 5")
    conn.close()
    code, report = verify_json(capsys, "--data", str(copy), "--trust-key", str(published))
    assert code == 1
    assert ("modified", 5) in kinds(report)
