"""Self-contained audit bundles: export, and offline verification with no database.

A bundle is UTF-8 JSON Lines, every line in canonical form: a header, the public keys, the
events, the witnessed checkpoints, any further record lines (e.g. a batch record), and a last
line signing the SHA-256 of everything before it. Editing any byte makes verification fail
and the report names the line (and the event's sequence number where there is one).
"""

from __future__ import annotations

import csv
import hashlib
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from hmi import __version__
from hmi.audit import canonical
from hmi.audit.checkpoint import Checkpoint
from hmi.audit.keys import PublicKey, Signer
from hmi.audit.verify import ROW_FIELDS, Kind, Row, VerifyReport, collection_paused, verify_rows

FORMAT = "hmi-audit-bundle"
VERSION = 1
BUNDLE_TAG = b"HMI-AUDIT-BUNDLE-v1\x00"


class BundleError(Exception):
    """The bundle cannot be read at all (missing file, not a bundle)."""


@dataclass
class BundleContents:
    """What a verified bundle holds, for readers such as the batch-record tools."""

    header: dict[str, Any]
    keys: dict[str, PublicKey]
    events: list[dict[str, Any]]
    checkpoints: list[Checkpoint]
    records: list[dict[str, Any]] = field(default_factory=list)
    sha256: str = ""
    #: The file's lines as read (without their newline), for checks on the exact bytes.
    raw_lines: list[bytes] = field(default_factory=list, repr=False)
    #: The key whose valid signature covers every byte before the last line, if one does.
    signed_by: str | None = None


def write_bundle(
    path: Path,
    *,
    signer: Signer,
    header: dict[str, Any],
    keys: Iterable[PublicKey],
    rows: Sequence[Row],
    checkpoints: Sequence[Checkpoint],
    records: Sequence[dict[str, Any]] = (),
) -> str:
    """Write a bundle and return the SHA-256 (hex) it is signed over."""
    lines: list[bytes] = []
    full_header = {
        "type": "header",
        "format": FORMAT,
        "version": VERSION,
        "software_version": __version__,
        "events": len(rows),
        "checkpoints": len(checkpoints),
        "records": len(records),
        **header,
    }
    lines.append(canonical.canonical_bytes(full_header))
    for key in sorted(keys, key=lambda k: k.key_id):
        lines.append(
            canonical.canonical_bytes(
                {
                    "type": "key",
                    "algorithm": "ed25519",
                    "key_id": key.key_id,
                    "public_key": key.raw.hex(),
                }
            )
        )
    for row in rows:
        event = {"type": "event", **{name: row[i] for i, name in enumerate(ROW_FIELDS)}}
        lines.append(canonical.canonical_bytes(event))
    for point in checkpoints:
        lines.append(canonical.canonical_bytes(point.to_json()))
    for record in records:
        if record.get("type") in {"header", "key", "event", "checkpoint", "bundle_signature"}:
            raise ValueError(f"a record line cannot have the reserved type {record['type']!r}")
        lines.append(canonical.canonical_bytes(record))
    body = b"".join(line + b"\n" for line in lines)
    digest = hashlib.sha256(body).digest()
    trailer = {
        "type": "bundle_signature",
        "key_id": signer.key_id,
        "sha256": digest.hex(),
        "signature": signer.sign(BUNDLE_TAG + digest).hex(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_bytes(body + canonical.canonical_bytes(trailer) + b"\n")
    tmp.replace(path)
    return digest.hex()


def _where(number: int, data: dict[str, Any] | None) -> str:
    if data and data.get("type") == "event":
        return f"line {number} (event seq {data.get('seq')})"
    if data and data.get("type"):
        return f"line {number} ({data.get('type')})"
    return f"line {number}"


def read_bundle(
    path: Path,
    *,
    trust: dict[str, PublicKey] | None = None,
    workers: int | None = None,
    meanwhile: Callable[[BundleContents], None] | None = None,
) -> tuple[VerifyReport, BundleContents]:
    """Verify a bundle offline. ``trust`` (key files given by the verifier) makes the check strict:
    without it the bundle's own keys are used and their fingerprints reported for comparison.

    ``meanwhile`` gets the parsed contents while the event signatures are being checked on the
    other cores (the batch-record checks use it)."""
    with collection_paused():
        return _read_bundle(path, trust, workers, meanwhile)


def _read_bundle(
    path: Path,
    trust: dict[str, PublicKey] | None,
    workers: int | None,
    meanwhile: Callable[[BundleContents], None] | None,
) -> tuple[VerifyReport, BundleContents]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc}") from None
    report = VerifyReport()
    if not raw.endswith(b"\n"):
        report.add(Kind.BUNDLE, None, None, "the bundle does not end with a newline (truncated?)")
    raw_lines = raw.split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()
    parsed: list[dict[str, Any] | None] = []
    for number, line in enumerate(raw_lines, start=1):
        try:
            data = orjson.loads(line)  # C speed; a bundle line is plain JSON in UTF-8
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except ValueError as exc:  # orjson.JSONDecodeError, invalid UTF-8 included
            report.add(Kind.BUNDLE, None, None, f"{_where(number, None)}: not valid JSON ({exc})")
            parsed.append(None)
            continue
        parsed.append(data)
    if not parsed or parsed[0] is None or parsed[0].get("format") != FORMAT:
        if not parsed or parsed[0] is None:
            raise BundleError(f"{path} is not an audit bundle (no readable header)")
        raise BundleError(f"{path} is not an audit bundle (format {parsed[0].get('format')!r})")
    header = parsed[0]
    trailer = parsed[-1]
    contents = BundleContents(
        header=header, keys={}, events=[], checkpoints=[], raw_lines=raw_lines
    )
    for number, data in enumerate(parsed[1:-1], start=2):
        if data is None:
            continue
        kind = data.get("type")
        try:
            if kind == "key":
                key = PublicKey.from_raw(bytes.fromhex(data["public_key"]))
                if key.key_id != data.get("key_id"):
                    report.add(
                        Kind.BUNDLE,
                        None,
                        None,
                        f"{_where(number, data)}: key id does not match the key",
                    )
                contents.keys[key.key_id] = key
            elif kind == "event":
                contents.events.append(data)
            elif kind == "checkpoint":
                contents.checkpoints.append(Checkpoint.from_json(data))
            else:
                contents.records.append(data)
        except (KeyError, ValueError, TypeError) as exc:
            report.add(Kind.BUNDLE, None, None, f"{_where(number, data)}: malformed ({exc})")
    keys = trust if trust is not None else contents.keys
    if trust is not None:
        for key_id in contents.keys:
            if key_id not in trust:
                report.add(
                    Kind.UNTRUSTED_KEY,
                    None,
                    None,
                    f"the bundle carries key {key_id}, which you did not trust",
                )
    # The signature over everything before the last line.
    body = b"".join(line + b"\n" for line in raw_lines[:-1])
    digest = hashlib.sha256(body).digest()
    contents.sha256 = digest.hex()
    intact = False
    if trailer is None or trailer.get("type") != "bundle_signature":
        report.add(
            Kind.BUNDLE,
            None,
            None,
            f"line {len(raw_lines)}: the bundle signature line is missing (truncated?)",
        )
    else:
        signer_key = keys.get(str(trailer.get("key_id")))
        if trailer.get("sha256") != digest.hex():
            report.add(
                Kind.BUNDLE,
                None,
                None,
                "the bundle's content does not match its signed SHA-256 (edited after export)",
            )
        try:
            valid = signer_key is not None and signer_key.verify(
                bytes.fromhex(trailer["signature"]), BUNDLE_TAG + digest
            )
        except (KeyError, ValueError):
            valid = False
        if not valid:
            report.add(
                Kind.BUNDLE,
                None,
                None,
                f"line {len(raw_lines)}: the bundle signature is invalid or by an untrusted key",
            )
        intact = valid and trailer.get("sha256") == digest.hex()
        if intact:
            contents.signed_by = str(trailer.get("key_id"))
    if not intact:
        # The signed bytes no longer hold: find the edited lines (every line was written in
        # canonical form, so an edit shows as a line that no longer is).
        _locate_edits(report, raw_lines, parsed)
    expected = {"events": len(contents.events), "checkpoints": len(contents.checkpoints)}
    for name, count in expected.items():
        if header.get(name) != count:
            report.add(
                Kind.BUNDLE,
                None,
                None,
                f"the header announces {header.get(name)} {name}, the bundle holds {count}",
            )
    rows: list[Row] = []
    row_of = operator.itemgetter(*ROW_FIELDS)
    for event in contents.events:
        try:
            rows.append(row_of(event))
        except KeyError as exc:
            report.add(
                Kind.BUNDLE,
                event.get("terminal_id"),
                event.get("seq"),
                f"event lacks the field {exc}",
            )
    rows.sort(key=lambda r: (str(r[0]), int(r[1])))
    verify_rows(
        rows,
        trusted=keys,
        checkpoints=contents.checkpoints,
        partial=bool(header.get("partial")),
        workers=workers,
        report=report,
        meanwhile=None if meanwhile is None else lambda: meanwhile(contents),
    )
    return report, contents


def _locate_edits(
    report: VerifyReport, raw_lines: list[bytes], parsed: list[dict[str, Any] | None]
) -> None:
    for number, (line, data) in enumerate(zip(raw_lines, parsed, strict=True), start=1):
        if data is None:
            continue  # already reported as not valid JSON
        try:
            canonical_form = canonical.canonical_bytes(data)
        except ValueError:
            canonical_form = b""
        if canonical_form != line:
            report.add(
                Kind.BUNDLE, None, data.get("seq") if data.get("type") == "event" else None,
                f"{_where(number, data)}: not in canonical form (the line was edited)",
            )  # fmt: skip


def write_csv(path: Path, rows: Sequence[Row]) -> None:
    """The events as a spreadsheet (not a true copy: use the bundle for that)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(ROW_FIELDS)
        for row in rows:
            writer.writerow(["" if v is None else v for v in row])
