"""Verify is exactly as strict as docs/audit-format.md: a stored field or a bundle line that is
not in its canonical form is reported even when re-signed with the terminal's own key; unknown
versions are refused; the genesis must be well formed; the witness file's edge cases are
defined; an unknown terminal is an error; exit 0 intact, 1 problems, 2 cannot verify; and
verify writes nothing to the database it checks. Real sites, the real CLI."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hmi.audit import canonical
from hmi.audit.checkpoint import Checkpoint, WitnessFile, make_checkpoint
from hmi.audit.keys import Signer
from hmi.cli import main
from hmi.clock import ManualClock
from hmi.site import Site
from tests.helpers.audit import add_events, attacker
from tests.helpers.insider import (
    bundle_lines,
    resign_bundle,
    rewrite_chain,
    rewrite_witness,
    sign_bundle,
)

from .conftest import Exporter


def verify_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["audit", "verify", *args, "--json"])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else {}


def kinds(report: dict[str, Any]) -> set[tuple[str, int | None]]:
    return {(p["kind"], p["seq"]) for p in report["problems"]}


@pytest.fixture
def chain(site: Site, clock: ManualClock) -> Site:
    """Ten more events (seq 4-13) and a witnessed head; the site closed, as an insider finds it."""
    for _ in range(10):
        clock.advance(1)
        add_events(site, 1)
    site.audit.checkpoint("test")
    site.close()
    return site


def resign(site: Site, seq: int, edit: Any) -> None:
    """The insider's edit of one row, the chain re-signed from there and the witness too."""

    def at(fields: dict[str, Any]) -> None:
        if fields["seq"] == seq:
            edit(fields)

    hashes = rewrite_chain(site.data_dir / "hmi.db", site.signer, at, from_seq=seq)
    rewrite_witness(site.settings.witness_path, site.signer, hashes)


def details_of(fields: dict[str, Any]) -> dict[str, Any]:
    value = json.loads(fields["details"])
    assert isinstance(value, dict)
    return value


@pytest.mark.parametrize(
    "rewrite",
    [
        pytest.param(lambda d: json.dumps(d, indent=1), id="re-indented"),
        pytest.param(lambda d: canonical.dumps(d).replace(":", ": ", 1), id="a space"),
        pytest.param(
            lambda d: json.dumps(dict([*d.items(), ("a", 1)]), separators=(",", ":")),
            id="keys reordered",
        ),
        pytest.param(
            lambda d: json.dumps({**d, "index": 1.5}, separators=(",", ":"), sort_keys=True),
            id="a float",
        ),
        pytest.param(lambda d: '{"index":1,"index":1}', id="a key twice"),
        pytest.param(
            lambda d: json.dumps({**d, "n": 2**60}, separators=(",", ":"), sort_keys=True),
            id="an integer beyond 2^53",
        ),
        pytest.param(lambda d: '["not an object"]', id="not an object"),
        pytest.param(lambda d: canonical.dumps(d) + " ", id="trailing space"),
        pytest.param(
            lambda d: canonical.dumps(d).replace("index", "\\u0069ndex"),
            id="an escaped letter",
        ),
    ],
)
def test_non_canonical_details_are_reported_even_when_resigned(
    chain: Site, capsys: pytest.CaptureFixture[str], rewrite: Any
) -> None:
    def edit(fields: dict[str, Any]) -> None:
        fields["details"] = rewrite(details_of(fields))

    resign(chain, 7, edit)
    code, report = verify_json(capsys, "--data", str(chain.data_dir))
    assert code == 1
    assert kinds(report) == {("format", 7)}, report["problems"]
    assert "details is not the canonical JSON text" in report["problems"][0]["message"]


@pytest.mark.parametrize(
    ("ts", "where"),
    [
        ("2026-03-02 07:30:13.000000Z", "a space for the T"),
        ("2026-03-02T07:30:13Z", "no microseconds"),
        ("2026-03-02T07:30:13.000000+00:00", "an offset"),
        ("2026-04-31T07:30:13.000000Z", "a day its month does not have"),
        ("2026-03-02T24:00:00.000000Z", "hour 24"),
        ("2026-03-02T07:30:13.000000z", "a lower-case z"),
        ("not a time", "text"),
    ],
)
def test_a_timestamp_not_in_the_one_form_is_reported_even_when_resigned(
    chain: Site, capsys: pytest.CaptureFixture[str], ts: str, where: str
) -> None:
    resign(chain, 13, lambda fields: fields.update(ts=ts))  # the head: nothing after it
    code, report = verify_json(capsys, "--data", str(chain.data_dir))
    assert code == 1
    assert ("format", 13) in kinds(report), where
    assert {kind for kind, _ in kinds(report)} <= {"format", "time_backwards"}
    assert any("ts is not a real UTC time" in p["message"] for p in report["problems"])


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda f: f.update(action="Batch Released"), "action is not a dotted lower-case name"),
    ],
)
def test_other_stored_fields_not_in_form_are_reported(
    chain: Site, capsys: pytest.CaptureFixture[str], edit: Any, message: str
) -> None:
    resign(chain, 9, edit)
    code, report = verify_json(capsys, "--data", str(chain.data_dir))
    assert code == 1 and kinds(report) == {("format", 9)}
    assert report["problems"][0]["message"] == message


def test_an_upper_case_previous_hash_is_reported(
    chain: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    attacker(chain.data_dir / "hmi.db").execute(
        "UPDATE audit_event SET prev_hash = upper(prev_hash) WHERE seq = 6"
    )  # the same bytes, so the hash still holds
    code, report = verify_json(capsys, "--data", str(chain.data_dir))
    assert code == 1
    assert ("format", 6) in kinds(report) and ("modified", 6) not in kinds(report)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"terminal_id": "KIOSK-99"}, "it names terminal 'KIOSK-99', not its own chain's"),
        ({"key_id": "00" * 16}, "is not the id of its public key"),
        ({"algorithm": "rsa"}, "its algorithm is not ed25519"),
        ({"extra": "x"}, "its details must hold exactly algorithm"),
    ],
)
def test_a_genesis_that_is_not_well_formed_is_reported_even_when_resigned(
    chain: Site, capsys: pytest.CaptureFixture[str], change: dict[str, str], message: str
) -> None:
    def edit(fields: dict[str, Any]) -> None:
        fields["details"] = canonical.dumps({**details_of(fields), **change})

    resign(chain, 1, edit)
    code, report = verify_json(capsys, "--data", str(chain.data_dir))
    assert code == 1
    assert ("bad_genesis", 1) in kinds(report)
    assert any(message in p["message"] for p in report["problems"]), report["problems"]


def test_a_genesis_naming_another_key_than_its_signer_is_reported(
    chain: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    other = Signer(Ed25519PrivateKey.generate())

    def edit(fields: dict[str, Any]) -> None:
        details = details_of(fields)
        details.update(key_id=other.key_id, public_key=other.public.raw.hex())
        fields["details"] = canonical.dumps(details)

    resign(chain, 1, edit)
    code, report = verify_json(capsys, "--data", str(chain.data_dir))
    assert code == 1
    messages = [p["message"] for p in report["problems"] if p["seq"] == 1]
    assert any(
        f"started with key {other.key_id}, but the event is signed by" in m for m in messages
    )


def test_a_malformed_key_enrolment_is_reported(
    chain: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    def edit(fields: dict[str, Any]) -> None:
        assert fields["action"] == "audit.key.enrolled"
        fields["details"] = canonical.dumps({**details_of(fields), "public_key": "ab" * 31})

    resign(chain, 2, edit)
    code, report = verify_json(capsys, "--data", str(chain.data_dir))
    assert code == 1 and kinds(report) == {("bad_enrolment", 2)}


def test_an_enrolment_stating_a_wrong_fingerprint_is_reported(
    chain: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    def edit(fields: dict[str, Any]) -> None:
        details = details_of(fields)
        assert len(details["public_key_sha256"]) == 64
        fields["details"] = canonical.dumps({**details, "public_key_sha256": "0" * 64})

    resign(chain, 2, edit)
    code, report = verify_json(capsys, "--data", str(chain.data_dir))
    assert code == 1 and kinds(report) == {("bad_enrolment", 2)}
    assert "is not the fingerprint of its public key" in report["problems"][0]["message"]


# -- bundles --------------------------------------------------------------------------------


@pytest.fixture
def bundle(
    chain: Site, tmp_path: Path, exporter: Exporter, capsys: pytest.CaptureFixture[str]
) -> Path:
    out = tmp_path / "trail.bundle"
    assert main(["audit", "export", "--data", str(chain.data_dir), "--out", str(out)]) == 0
    capsys.readouterr()
    return out


def test_a_resigned_bundle_with_a_non_canonical_line_is_reported(
    chain: Site, bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = bundle.read_bytes().split(b"\n")[:-2]
    number = next(i for i, line in enumerate(raw) if b'"seq":9,' in line)
    event = json.loads(raw[number])
    reordered = dict(reversed(event.items()))
    raw[number] = json.dumps(reordered, separators=(",", ":"), ensure_ascii=False).encode()
    raw[0] = json.dumps(json.loads(raw[0]), sort_keys=True).encode()  # spaces
    edited = tmp_path / "edited.bundle"
    edited.write_bytes(sign_bundle(raw, chain.signer))
    key = str(chain.settings.public_key_path)
    code, report = verify_json(capsys, "--bundle", str(edited), "--trust-key", key)
    assert code == 1
    assert kinds(report) == {("format", 9), ("format", None)}
    messages = sorted(p["message"] for p in report["problems"])
    assert messages == [
        "line 1 (header): not in canonical form",
        f"line {number + 1} (event seq 9): not in canonical form",
    ]


def test_a_resigned_bundle_with_its_lines_out_of_order_is_reported(
    chain: Site, bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """§4 fixes the order of a bundle's lines; one re-signed with them moved is reported, the
    line named, even though every line and the chain are intact."""
    raw = bundle.read_bytes().split(b"\n")[:-2]
    kinds_of = [json.loads(line)["type"] for line in raw]
    first_event = kinds_of.index("event")
    # two events swapped, and the key line moved after the events
    raw[first_event + 3], raw[first_event + 4] = raw[first_event + 4], raw[first_event + 3]
    key_line = raw.pop(kinds_of.index("key"))
    raw.insert(len(raw) - kinds_of.count("checkpoint"), key_line)
    edited = tmp_path / "moved.bundle"
    edited.write_bytes(sign_bundle(raw, chain.signer))
    key = str(chain.settings.public_key_path)
    code, report = verify_json(capsys, "--bundle", str(edited), "--trust-key", key)
    assert code == 1
    order = [p["message"] for p in report["problems"] if "out of order" in p["message"]]
    assert len(order) == 2, report["problems"]
    assert any("(key): out of order" in m for m in order)
    assert any("(event seq" in m and "sorted by terminal and seq" in m for m in order)
    assert {p["kind"] for p in report["problems"] if "out of order" in p["message"]} == {"bundle"}


def test_an_unknown_bundle_version_cannot_be_verified(
    chain: Site, bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = bundle_lines(bundle)
    lines[0]["version"] = 3
    later = tmp_path / "later.bundle"
    later.write_bytes(resign_bundle(lines, chain.signer))
    assert main(["audit", "verify", "--bundle", str(later)]) == 2
    assert "version 3, which this verifier does not know" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("edit", "kind", "message"),
    [
        (lambda lines: lines[0].update(profile="hmi-batch-record", profile_version=9), "format",
         "batch record profile version 9 is not one this verifier knows"),
        (lambda lines: next(x for x in lines if x["type"] == "checkpoint").update(v=2), "bundle",
         "unknown checkpoint version 2"),
        (lambda lines: next(x for x in lines if x["type"] == "key").update(algorithm="rsa"),
         "format", "a key line holds exactly algorithm"),
        (lambda lines: next(x for x in lines if x["type"] == "event").update(extra=1), "format",
         "an event line holds exactly the fields"),
    ],
)  # fmt: skip
def test_unknown_versions_and_fields_in_a_bundle_are_reported(
    chain: Site, bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    edit: Any, kind: str, message: str,
) -> None:  # fmt: skip
    lines = bundle_lines(bundle)
    edit(lines)
    edited = tmp_path / "edited.bundle"
    edited.write_bytes(resign_bundle(lines, chain.signer))
    code, report = verify_json(capsys, "--bundle", str(edited))
    assert code == 1
    assert any(p["kind"] == kind and message in p["message"] for p in report["problems"]), report


def test_what_is_not_a_bundle_cannot_be_verified(
    chain: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", "verify", "--bundle", str(tmp_path / "missing.bundle")]) == 2
    assert "cannot verify: cannot read" in capsys.readouterr().err
    assert main(["audit", "verify", "--bundle", str(chain.settings.witness_path)]) == 2
    assert "is not an audit bundle" in capsys.readouterr().err


# -- the witness file ------------------------------------------------------------------------


def _witness_lines(site: Site) -> list[str]:
    return site.settings.witness_path.read_text(encoding="utf-8").splitlines()


def test_a_torn_witness_line_stays_a_note_after_the_next_checkpoint(
    chain: Site, clock: ManualClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stop in the middle of a witness write leaves an incomplete line; the next append starts
    on a new line, and the incomplete one stays a note: a power cut never makes the trail read
    NOT INTACT. Garbage that is not a cut checkpoint line is still a problem."""
    witness = chain.settings.witness_path
    last = _witness_lines(chain)[-1]
    with witness.open("a", encoding="utf-8") as handle:
        handle.write(last[: len(last) // 2])  # the terminal stopped in the middle of a write
    assert main(["audit", "verify", "--data", str(chain.data_dir)]) == 0
    out = capsys.readouterr().out
    assert "an incomplete checkpoint line" in out and "INTACT" in out
    torn_at = len(_witness_lines(chain))
    point = Checkpoint.from_json(json.loads(last))
    WitnessFile(witness).append(
        make_checkpoint(chain.signer, "KIOSK-01", point.seq, point.row_hash, point.ts, "again")
    )
    lines = _witness_lines(chain)
    assert json.loads(lines[-1])["reason"] == "again"  # on a line of its own
    assert lines[torn_at - 1] == last[: len(last) // 2]  # the torn line is kept as it was
    code, report = verify_json(capsys, "--data", str(chain.data_dir))
    assert code == 0, report["problems"]
    assert any(f":{torn_at}: an incomplete checkpoint line" in n for n in report["notes"])
    with witness.open("a", encoding="utf-8") as handle:
        handle.write("not a checkpoint\n")
    code, report = verify_json(capsys, "--data", str(chain.data_dir))
    assert code == 1
    assert kinds(report) == {("witness", None)}
    assert f":{len(lines) + 1}: unreadable checkpoint line" in report["problems"][0]["message"]


def test_witness_lines_out_of_order_verify(chain: Site, capsys: pytest.CaptureFixture[str]) -> None:
    """Two processes of one terminal may append their checkpoints in either order: order in the
    file carries no meaning, each checkpoint is checked against the chain on its own."""
    witness = chain.settings.witness_path
    witness.write_text("".join(line + "\n" for line in reversed(_witness_lines(chain))))
    code, report = verify_json(capsys, "--data", str(chain.data_dir))
    assert code == 0, report["problems"]


@pytest.mark.parametrize(
    "case",
    [
        "unknown key", "not canonical", "unknown version", "empty line", "ts not a time",
        "reason not a word",
    ],
)  # fmt: skip
def test_witness_lines_that_do_not_hold_are_reported(
    chain: Site, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    witness = chain.settings.witness_path
    lines = _witness_lines(chain)
    point = json.loads(lines[-1])
    if case == "unknown key":
        other = Signer(Ed25519PrivateKey.generate())
        forged = make_checkpoint(other, "KIOSK-01", point["seq"], point["row_hash"], point["ts"],
                                 "test")  # fmt: skip
        lines.append(canonical.dumps(forged.to_json()))
        expected: tuple[str, int | None] = ("bad_checkpoint", point["seq"])
    elif case == "not canonical":
        lines.append(json.dumps(point))
        expected = ("witness", None)
    elif case == "unknown version":
        lines.append(canonical.dumps({**point, "v": 2}))
        expected = ("witness", None)
    elif case in ("ts not a time", "reason not a word"):
        ts, reason = ("yesterday", "test") if case == "ts not a time" else (point["ts"], "A B")
        forged = make_checkpoint(chain.signer, "KIOSK-01", point["seq"], point["row_hash"], ts,
                                 reason)  # fmt: skip
        lines.append(canonical.dumps(forged.to_json()))
        expected = ("witness", None)
    else:
        lines.append("")
        expected = ("witness", None)
    witness.write_text("".join(line + "\n" for line in lines))
    code, report = verify_json(capsys, "--data", str(chain.data_dir))
    assert code == 1
    assert kinds(report) == {expected}, report["problems"]
    if case == "unknown key":
        assert "which is not a trusted key" in report["problems"][0]["message"]
    else:
        assert f"checkpoints.jsonl:{len(lines)}:" in report["problems"][0]["message"]


# -- what verify is and does -----------------------------------------------------------------


def test_an_unknown_terminal_is_an_error(chain: Site, capsys: pytest.CaptureFixture[str]) -> None:
    attacker(chain.data_dir / "hmi.db").execute("UPDATE audit_event SET reason = 'x' WHERE seq = 5")
    assert main(["audit", "verify", "--data", str(chain.data_dir), "--terminal", "KIOSK-99"]) == 2
    captured = capsys.readouterr()
    assert "no chain for terminal KIOSK-99 in this database" in captured.err
    assert "INTACT" not in captured.out


def test_verify_writes_nothing_to_the_database_it_checks(
    chain: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    db = chain.data_dir / "hmi.db"
    attacker(db).execute("UPDATE audit_event SET reason = 'x' WHERE seq = 5")

    def state() -> list[str]:
        """Every table's every row, read without writing."""
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return list(conn.iterdump())
        finally:
            conn.close()

    before = state()
    witness = chain.settings.witness_path.read_bytes()
    assert main(["audit", "verify", "--data", str(chain.data_dir)]) == 1
    assert main(["audit", "verify", "--data", str(chain.data_dir), "--incremental"]) == 1
    capsys.readouterr()
    assert state() == before
    assert chain.settings.witness_path.read_bytes() == witness


def test_a_database_that_cannot_be_read_cannot_be_verified(
    chain: Site, capsys: pytest.CaptureFixture[str]
) -> None:
    db = chain.data_dir / "hmi.db"
    for path in chain.data_dir.glob("hmi.db-*"):
        path.unlink()
    db.write_bytes(b"this is not a database file at all" * 100)
    assert main(["audit", "verify", "--data", str(chain.data_dir)]) == 2
    captured = capsys.readouterr()
    assert "cannot verify" in captured.err and "Traceback" not in captured.err


def test_the_help_names_the_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "verify", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "Exit status: 0 intact; 1 problems found" in text and "2 cannot verify" in text
