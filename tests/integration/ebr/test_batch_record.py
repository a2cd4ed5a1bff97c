"""A full accelerated batch with deviations, a corrected value and co-signatures, driven
through the real batch engine: its printed record holds every value, reason and signature
manifestation; its electronic bundle verifies, and any edit fails it at the exact place; it
shows in the unreviewed report until QA signs the review."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from pypdf import PdfReader

from hmi import cli
from hmi.alarms.service import AlarmService
from hmi.audit import canonical
from hmi.audit.bundle import BUNDLE_TAG, read_bundle
from hmi.audit.chain import Actor
from hmi.audit.checkpoint import WitnessFile
from hmi.auth.totp import code_at
from hmi.batch.engine import BatchEngine
from hmi.ebr.bundle import manifest_message, read_batch_bundle, verify_bundle_file
from hmi.ebr.copies import BatchRecordCopies
from hmi.ebr.review import AuditReviews
from hmi.site import Site
from tests.integration.batch.support import Driver
from tests.integration.ebr.scenario import (
    ALARM_REASON,
    CORRECTION_REASON,
    OOT_REASON,
    SKIP_REASON,
    batch_with_deviations,
)

BATCH = "B-2026-0700"


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _copies(site: Site, engine: BatchEngine) -> BatchRecordCopies:
    return BatchRecordCopies(
        engine, site="Test Site", line="Line 1", witness=WitnessFile(site.settings.witness_path)
    )


def _reviews(site: Site, engine: BatchEngine) -> AuditReviews:
    return AuditReviews(
        engine=site.engine, audit=site.audit, clock=site.clock, sessions=engine.sessions,
        signatures=engine.signatures, batches=engine,
    )  # fmt: skip


def _edit_line(source: Path, target: Path, match: str, old: str, new: str) -> int:
    """Copy the bundle with one line edited; return that line's number (1-based)."""
    lines = source.read_bytes().split(b"\n")
    for number, line in enumerate(lines, start=1):
        if match.encode() in line and old.encode() in line:
            lines[number - 1] = line.replace(old.encode(), new.encode(), 1)
            target.write_bytes(b"\n".join(lines))
            return number
    raise AssertionError(f"no line with {match!r} and {old!r}")


def _resign(path: Path, site: Site, kind: str, old: str, new: str) -> bytes:
    """The bundle with one record line's data edited, the manifest and the bundle re-signed
    with the terminal's own key (an insider holding the key)."""
    lines = [json.loads(raw) for raw in path.read_bytes().split(b"\n")[:-2]]
    records = [n for n, line in enumerate(lines) if str(line["type"]).startswith("ebr.")]
    for n in records[:-1]:
        line = lines[n]
        if line["type"] == kind and f'"{old}"' in json.dumps(line["data"]):
            line["data"] = json.loads(json.dumps(line["data"]).replace(f'"{old}"', f'"{new}"'))
    manifest = lines[records[-1]]
    manifest["sha256"] = [
        hashlib.sha256(canonical.canonical_bytes(lines[n])).hexdigest() for n in records[:-1]
    ]
    manifest["sig"] = site.signer.sign(manifest_message(manifest)).hex()
    body = b"".join(canonical.canonical_bytes(line) + b"\n" for line in lines)
    digest = hashlib.sha256(body).digest()
    trailer = {
        "type": "bundle_signature",
        "key_id": site.signer.key_id,
        "sha256": digest.hex(),
        "signature": site.signer.sign(BUNDLE_TAG + digest).hex(),
    }
    return body + canonical.canonical_bytes(trailer) + b"\n"


async def test_batch_record_pdf_bundle_tamper_and_review(
    site: Site, engine: BatchEngine, driver: Driver, alarms: AlarmService, tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    made = await batch_with_deviations(driver, engine, BATCH, alarms=alarms, release=False)
    reviews = _reviews(site, engine)
    pending = {b.batch_id: b for b in reviews.unreviewed().batches}
    assert pending[BATCH].reviewable and pending[BATCH].status == "awaiting_review"
    driver.qa_release(BATCH)
    assert BATCH not in {b.batch_id for b in reviews.unreviewed().batches}

    copies = _copies(site, engine)
    result = copies.report(
        BATCH, tmp_path / "record.pdf", actor=Actor("qa1", "qa"), generated_by="Quinn Quality (qa1)"
    )
    assert result.pdf is not None and result.pages >= 5
    read = read_batch_bundle(result.bundle)
    assert read.ok, read.report.problems
    assert read.record is not None
    record = read.record
    # The record is whole: every value, deviation, signature and the change.
    stored = engine.record(BATCH)
    assert {v.value_id for v in record.values} == {v.value_id for v in stored.values}
    assert len(record.deviations) == 3 and len(record.signatures) == len(stored.signatures)
    [alarm] = record.alarms
    assert (alarm.code, alarm.acknowledged_by, alarm.step_index) == ("LOADCELL_DRIFT", "op1", 3)
    assert [(c.old, c.new, c.reason) for c in record.changes] == [
        ("MG-2026-117", "MG-2026-118", CORRECTION_REASON)
    ]
    summary = record.summary
    assert (summary.deviations, summary.overrides, summary.changed_values) == (3, 1, 1)
    assert summary.alarms == 1
    assert summary.late_entries >= 1 and summary.verification.chain_ok
    assert summary.verification.signatures_invalid == 0
    assert summary.signatures_by_meaning["released"] == 1
    # The PDF holds every value, reason and signature manifestation, and the change flag.
    reader = PdfReader(str(result.pdf))
    text = _squash("".join(page.extract_text() for page in reader.pages))
    for value in stored.values:
        assert _squash(value.value) in text, value
    for reason in (SKIP_REASON, OOT_REASON, CORRECTION_REASON, ALARM_REASON, "LOADCELL_DRIFT"):
        assert _squash(reason) in text, reason
    for deviation in stored.deviations:
        assert deviation.reason_text is not None and _squash(deviation.reason_text) in text
        assert deviation.disposition_comment is not None
        assert _squash(deviation.disposition_comment) in text
    for signature in record.signatures:
        assert _squash(signature.manifestation) in text, signature.manifestation
    assert "QuinnQuality(qa1)-Released" in text and "SamSupervisor(sup1)-Cosigned" in text
    assert "QuinnQuality(qa1)-Approved" in text  # each disposition printed as its signature
    assert _squash("CHANGED AFTER FIRST ENTRY: was MG-2026-117, now MG-2026-118") in text
    assert f"page1of{result.pages}" in text and result.sha256 in text
    # The plain audit bundle reader accepts it too (hmi audit verify --bundle).
    report, contents = read_bundle(result.bundle)
    assert report.ok and contents.records

    # Tampering: each edit fails, named by line (and by seq for an event).
    bad = tmp_path / "bad.jsonl"
    number = _edit_line(result.bundle, bad, '"type":"ebr.value"', '"MG-2026-118"', '"MG-2026-119"')
    tampered = read_batch_bundle(bad)
    assert not tampered.ok
    messages = [p.message for p in tampered.report.problems]
    assert any(m.startswith(f"line {number} (ebr.value value_id ") and "edited" in m
               for m in messages), messages  # fmt: skip
    assert any("edited after export" in m for m in messages)

    number = _edit_line(result.bundle, bad, '"action":"deviation.reason_given"', OOT_REASON[:20],
                        OOT_REASON[:19] + "X")  # fmt: skip
    tampered = read_batch_bundle(bad)
    seq = int(re.search(rb'"seq":(\d+)', bad.read_bytes().split(b"\n")[number - 1]).group(1))  # type: ignore[union-attr]
    assert ("modified", seq) in {(str(p.kind), p.seq) for p in tampered.report.problems}

    lines = result.bundle.read_bytes().split(b"\n")
    event_lines = [i for i, line in enumerate(lines) if b'"type":"event"' in line]
    removed = lines[event_lines[len(event_lines) // 2]]
    bad.write_bytes(b"\n".join(lines[: event_lines[len(event_lines) // 2]]
                               + lines[event_lines[len(event_lines) // 2] + 1:]))  # fmt: skip
    gone = int(re.search(rb'"seq":(\d+)', removed).group(1))  # type: ignore[union-attr]
    tampered = read_batch_bundle(bad)
    kinds = {(str(p.kind), p.seq) for p in tampered.report.problems}
    assert ("gap", gone) in kinds and ("broken_link", gone + 1) in kinds

    # Even someone holding the terminal key, re-signing an edited line and the whole bundle,
    # is caught: the record no longer matches the signed audit event that recorded the value.
    forged = _resign(result.bundle, site, "ebr.value", "MG-2026-118", "MG-2026-119")
    bad.write_bytes(forged)
    tampered = read_batch_bundle(bad)
    messages = [p.message for p in tampered.report.problems]
    assert any("(ebr.value value_id" in m and "differs from the correction" in m for m in messages)
    assert not any("manifest" in m or "edited after export" in m for m in messages)
    # hmi audit verify --bundle runs the same record checks (alongside the signature checks)
    # and reports the same problem, without putting a printable record together.
    report, _contents = verify_bundle_file(bad)
    assert not report.ok
    assert [p.message for p in report.problems] == messages
    assert cli.main(["audit", "verify", "--bundle", str(bad)]) == 1
    intact, _contents = verify_bundle_file(result.bundle)
    assert intact.ok and intact.rows_checked == len(event_lines)

    # The command line: export, verify, report, unreviewed. Copies are made by a logged-in
    # QA user (answered at the prompts on the test's clock), who is named on them.
    qa = driver.people["qa1"]
    clock = driver.people.clock

    def answer(prompt: str) -> str:
        if "user ID" in prompt:
            return qa.user_id
        if prompt.startswith("Password"):
            return qa.password
        assert qa.totp_secret is not None and "code" in prompt.lower(), prompt
        clock.advance(30)
        return code_at(qa.totp_secret, clock.now())

    monkeypatch.setattr("hmi.site.SystemClock", lambda: clock)
    monkeypatch.setattr("hmi.commands.users.ask", answer)
    monkeypatch.setattr("hmi.commands.users.ask_secret", answer)
    data = ["--data", str(site.data_dir)]
    out = tmp_path / "cli.jsonl"
    capsys.readouterr()
    assert cli.main(["ebr", "export", BATCH.lower(), "--out", str(out), *data]) == 0
    assert "bundle SHA-256" in capsys.readouterr().out
    assert cli.main(["ebr", "verify", str(out), *data]) == 0
    assert "INTACT" in capsys.readouterr().out
    bad_number = _edit_line(out, bad, '"type":"ebr.deviation"', SKIP_REASON[:10], "XXXXXXXXXX")
    assert cli.main(["ebr", "verify", str(bad)]) == 1
    printed = capsys.readouterr().out
    assert f"line {bad_number} (ebr.deviation deviation_id {BATCH}-D" in printed
    assert "NOT INTACT" in printed
    letter = tmp_path / "letter.pdf"
    assert cli.main(["ebr", "report", BATCH, "--pdf", str(letter), "--page", "Letter", *data]) == 0
    assert letter.exists() and "pages" in capsys.readouterr().out
    first_page = PdfReader(letter).pages[0].extract_text()
    assert f"({qa.user_id})" in first_page  # the generating user is the one who logged in
    assert cli.main(["ebr", "export", "NOPE-1", "--out", str(out), *data]) == 2
    assert cli.main(["ebr", "unreviewed", *data]) == 0
    listing = capsys.readouterr().out
    assert "Batches without a signed audit trail review: 0" in listing
    assert "KIOSK-01 seq 1-" in listing
    assert made.corrected_value_id > made.lot_value_id


async def test_a_batch_whose_parameter_was_changed_prints_and_its_bundle_verifies(
    site: Site, engine: BatchEngine, driver: Driver, tmp_path: Path
) -> None:
    """F4 during the batch: the changed setpoint is a value of the record, found at the event
    that wrote it (its row binding), so the copy verifies and prints the change and its reason."""
    batch_id = "B-2026-0701"
    reason = "granule size of this lot is coarser"
    driver.start(batch_id)
    await driver.run(batch_id, stop_after="lid-interlock")
    change = await engine.change_parameter(driver.operator(), batch_id, "blend_speed", "13", reason)
    assert change.applied
    await driver.run(batch_id)
    result = _copies(site, engine).report(
        batch_id, tmp_path / "record.pdf", actor=Actor("qa1", "qa"), generated_by="Quinn Quality"
    )
    read = read_batch_bundle(result.bundle)
    assert read.ok, read.report.problems
    assert read.record is not None
    [changed] = [v for v in read.record.values if v.name == "parameter:blend_speed"]
    assert changed.value == "13" and changed.event is not None
    event = next(
        e for e in read_bundle(result.bundle)[1].events
        if (e["terminal_id"], e["seq"]) == (changed.event.terminal_id, changed.event.seq)
    )  # fmt: skip
    assert (event["action"], event["reason"]) == ("batch.parameter.changed", reason)
    [written] = [v for v in read.record.values if v.name == "blend_speed"]
    assert written.value == "13.0"  # the set-parameters step wrote the changed value
    assert result.pdf is not None
    text = _squash("".join(page.extract_text() for page in PdfReader(str(result.pdf)).pages))
    assert _squash(reason) in text and "parameter:blend_speed" in text
