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
from hmi.audit.keys import KeyFileError, PublicKey, Signer
from hmi.audit.verify import ROW_FIELDS, Kind, Row, VerifyReport, collection_paused, verify_rows

FORMAT = "hmi-audit-bundle"
#: Version 2 adds the signed chain heads the bundle was made from (``chain_heads``), the span
#: of each chain it holds (``chains``) and whether it runs to the heads (``ends_at_head``).
VERSION = 2
VERSIONS = frozenset({1, 2})
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
    heads: Sequence[Checkpoint],
    ends_at_head: bool,
    records: Sequence[dict[str, Any]] = (),
) -> str:
    """Write a bundle and return the SHA-256 (hex) it is signed over.

    ``heads`` are the signed heads of the chains at the time of the copy (one per terminal
    whose events the bundle holds, :func:`hmi.audit.store.chain_heads`); ``ends_at_head``
    says the bundle holds every event up to them."""
    lines: list[bytes] = []
    spans: dict[str, list[int]] = {}
    for row in rows:
        span = spans.setdefault(str(row[0]), [int(row[1]), int(row[1])])
        span[0], span[1] = min(span[0], int(row[1])), max(span[1], int(row[1]))
    by_terminal = {point.terminal: point for point in heads}
    if set(by_terminal) != set(spans) or len(by_terminal) != len(heads):
        raise ValueError("a bundle carries exactly one chain head for each chain it holds")
    full_header = {
        "type": "header",
        "format": FORMAT,
        "version": VERSION,
        "software_version": __version__,
        "events": len(rows),
        "checkpoints": len(checkpoints),
        "records": len(records),
        "chains": spans,
        "chain_heads": [by_terminal[name].to_json() for name in sorted(by_terminal)],
        "ends_at_head": ends_at_head,
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
        raise BundleError(f"cannot read {path}: {exc.strerror or exc}") from None
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
    header = _header_of(path, parsed)
    trailer = parsed[-1]
    contents = BundleContents(
        header=header, keys={}, events=[], checkpoints=[], raw_lines=raw_lines
    )
    rank, last_event = 0, None
    for number, data in enumerate(parsed[1:-1], start=2):
        if data is None:
            continue
        kind = data.get("type")
        # §4: keys, then events sorted by terminal and seq, then checkpoints, then records
        this = LINE_RANK.get(kind, 4) if isinstance(kind, str) else 4
        if this < rank:
            report.add(
                Kind.BUNDLE, None, None,
                f"{_where(number, data)}: out of order (a bundle holds its key lines, then its"
                " events, then its checkpoints, then its record lines)",
            )  # fmt: skip
        rank = max(rank, this)
        if kind == "event":
            place = (str(data.get("terminal_id")), data.get("seq"))
            if (
                last_event is not None
                and type(place[1]) is int
                and type(last_event[1]) is int
                and place < last_event
            ):
                report.add(
                    Kind.BUNDLE, data.get("terminal_id"), data.get("seq"),
                    f"{_where(number, data)}: out of order (events are sorted by terminal and"
                    " seq, each once)",
                )  # fmt: skip
            last_event = place
        try:
            if kind == "key":
                if data.get("algorithm") != "ed25519" or set(data) != KEY_FIELDS:
                    report.add(
                        Kind.FORMAT, None, None,
                        f"{_where(number, data)}: a key line holds exactly algorithm"
                        " (ed25519), key_id, public_key and type",
                    )  # fmt: skip
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
                if set(data) != EVENT_FIELDS:
                    report.add(
                        Kind.FORMAT, data.get("terminal_id"), data.get("seq"),
                        f"{_where(number, data)}: an event line holds exactly the fields of an"
                        " event and type",
                    )  # fmt: skip
                contents.events.append(data)
            elif kind == "checkpoint":
                contents.checkpoints.append(Checkpoint.from_json(data))
            elif kind in {"header", "bundle_signature"}:
                report.add(Kind.BUNDLE, None, None, f"{_where(number, data)}: out of place")
            else:
                contents.records.append(data)
        except (KeyError, ValueError, TypeError, KeyFileError) as exc:
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
        except (KeyError, ValueError, TypeError):
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
    # Every line is in canonical form (§4), whoever signed it: a line that is not was edited,
    # or written by something other than this product and re-signed.
    _check_canonical(report, raw_lines, parsed, edited=not intact)
    expected = {
        "events": len(contents.events),
        "checkpoints": len(contents.checkpoints),
        "records": len(contents.records),
    }
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
    try:
        rows.sort(key=lambda r: (str(r[0]), int(r[1])))
    except (TypeError, ValueError):
        rows.sort(key=lambda r: (str(r[0]), str(r[1])))  # a seq that is no number is reported
    verify_rows(
        rows,
        trusted=keys,
        checkpoints=contents.checkpoints,
        partial=bool(header.get("partial")),
        workers=workers,
        report=report,
        meanwhile=None if meanwhile is None else lambda: meanwhile(contents),
    )
    _check_heads(report, header, rows, keys)
    return report, contents


#: The order of a bundle's lines between its header and its signature (§4); other types are
#: record lines.
LINE_RANK = {"key": 1, "event": 2, "checkpoint": 3}

#: The keys of an event line and of a key line.
EVENT_FIELDS = frozenset({*ROW_FIELDS, "type"})
KEY_FIELDS = frozenset({"algorithm", "key_id", "public_key", "type"})


def _header_of(path: Path, parsed: list[dict[str, Any] | None]) -> dict[str, Any]:
    """The header, if the file is a bundle of a version this verifier knows (BundleError if
    not: a file it cannot read as a bundle is never reported as verified or as tampered)."""
    header = parsed[0] if parsed else None
    if header is None:
        raise BundleError(f"{path} is not an audit bundle (no readable header)")
    if header.get("format") != FORMAT or header.get("type") != "header":
        raise BundleError(f"{path} is not an audit bundle (format {header.get('format')!r})")
    version = header.get("version")
    if type(version) is not int or version not in VERSIONS:
        raise BundleError(
            f"{path} is an audit bundle of version {version!r}, which this verifier does not"
            f" know (it reads versions {', '.join(map(str, sorted(VERSIONS)))})"
        )
    return header


def _check_heads(
    report: VerifyReport, header: dict[str, Any], rows: Sequence[Row], keys: dict[str, PublicKey]
) -> None:
    """The chains the header says the bundle holds, and the signed chain heads it was made
    from (version 2): a bundle whose tail was cut, or that does not reach the head it claims
    to reach, is reported even when re-signed."""
    if header.get("version") == 1:
        report.notes.append(
            "a version 1 bundle (made before bundles carried the chain heads they were made"
            " from): whether its tail was cut can only be checked with --against"
        )
        return
    held: dict[str, tuple[int, int]] = {}
    hashes: dict[tuple[str, int], str] = {}
    for row in rows:
        try:
            name, seq = str(row[0]), int(row[1])
        except (TypeError, ValueError):
            continue
        low, high = held.get(name, (seq, seq))
        held[name] = (min(low, seq), max(high, seq))
        hashes[(name, seq)] = str(row[ROW_FIELDS.index("row_hash")])
    chains = header.get("chains")
    heads = header.get("chain_heads")
    ends_at_head = header.get("ends_at_head")
    if (
        not isinstance(chains, dict)
        or not isinstance(heads, list)
        or not isinstance(ends_at_head, bool)
        or not all(
            isinstance(span, list) and len(span) == 2 and all(type(v) is int for v in span)
            for span in chains.values()
        )
    ):
        report.add(
            Kind.BUNDLE, None, None,
            "line 1 (header): chains, chain_heads or ends_at_head is missing or malformed",
        )  # fmt: skip
        return
    for name, (low, high) in sorted(chains.items()):
        span = held.get(name)
        if span is None:
            report.add(
                Kind.TRUNCATED, name, low,
                f"the header says the bundle holds seq {low}–{high} of this chain, but it holds"
                " none of its events",
            )  # fmt: skip
        elif span[1] < high:
            report.add(
                Kind.TRUNCATED, name, span[1] + 1,
                f"the bundle's events end at seq {span[1]}, but its header says they run to"
                f" seq {high} (its tail was cut)",
            )  # fmt: skip
        elif span != (low, high):
            report.add(
                Kind.BUNDLE, name, None,
                f"the header says the bundle holds seq {low}–{high} of this chain, it holds"
                f" seq {span[0]}–{span[1]}",
            )  # fmt: skip
    for name in sorted(set(held) - set(chains)):
        report.add(Kind.BUNDLE, name, None, "the header does not list this chain")
    by_terminal: dict[str, Checkpoint] = {}
    for item in heads:
        try:
            point = Checkpoint.from_json(item)
        except (ValueError, KeyError, TypeError) as exc:
            report.add(
                Kind.BUNDLE, None, None, f"line 1 (header): a chain head is malformed ({exc})"
            )
            continue
        if point.terminal in by_terminal or point.reason != "export":
            report.add(
                Kind.BUNDLE, point.terminal, point.seq,
                "line 1 (header): chain heads are one per chain, each with reason 'export'",
            )  # fmt: skip
            continue
        by_terminal[point.terminal] = point
        if point.key_id not in keys or not point.signature_valid(keys[point.key_id]):
            report.add(
                Kind.BAD_CHECKPOINT, point.terminal, point.seq,
                f"line 1 (header): the chain head the bundle was made from ({point.ts}) is"
                f" signed by key {point.key_id}, which is not trusted, or its signature is"
                " invalid",
            )  # fmt: skip
        elif not report.signer_enrolled(point.key_id):
            report.add(
                Kind.BAD_CHECKPOINT, point.terminal, point.seq,
                f"line 1 (header): the chain head the bundle was made from ({point.ts}) is"
                f" signed by key {point.key_id}, which is trusted but no chain the bundle"
                " holds enrolled",
            )  # fmt: skip
    for name in sorted(set(chains) | set(held)):
        head = by_terminal.get(name)
        span = held.get(name) or tuple(chains.get(name) or (0, 0))
        if head is None:
            report.add(
                Kind.BUNDLE, name, None,
                "line 1 (header): no signed chain head for this chain (removed?)",
            )  # fmt: skip
            continue
        last = span[1]
        if head.seq < last:
            report.add(
                Kind.BUNDLE, name, head.seq + 1,
                f"the bundle holds events after seq {head.seq}, the chain head it says it was"
                " made from",
            )  # fmt: skip
        elif head.seq > last and ends_at_head:
            report.add(
                Kind.TRUNCATED, name, last + 1,
                f"the bundle ends at seq {last}, but the chain head it was made from is seq"
                f" {head.seq} ({head.ts}): its tail was cut",
            )  # fmt: skip
        stored = hashes.get((name, head.seq))
        if stored is not None and stored != head.row_hash:
            report.add(
                Kind.FORKED, name, head.seq,
                f"the event at seq {head.seq} is not the chain head the bundle was made from"
                f" ({head.ts})",
            )  # fmt: skip
    for name in sorted(set(by_terminal) - set(chains) - set(held)):
        report.add(Kind.BUNDLE, name, None, "line 1 (header): a chain head for no chain held")


def _check_canonical(
    report: VerifyReport,
    raw_lines: list[bytes],
    parsed: list[dict[str, Any] | None],
    *,
    edited: bool,
) -> None:
    """Report every line that is not byte for byte the canonical JSON of what it holds (§1).

    orjson writes exactly the canonical form of what it read (keys sorted by code point, no
    whitespace, characters as themselves, the same escapes), so writing each line again is a
    cheap exact test; it would write back a float or an integer beyond ±(2^53 − 1), so every
    line but an event's is also checked with the canonical encoder (an event's fields are
    checked for their types by the row checks)."""
    dumps, sort_keys = orjson.dumps, orjson.OPT_SORT_KEYS
    for number, (line, data) in enumerate(zip(raw_lines, parsed, strict=True), start=1):
        if data is None:
            continue  # already reported as not valid JSON
        try:
            same = dumps(data, option=sort_keys) == line
            if same and data.get("type") != "event":
                same = canonical.canonical_bytes(canonical.loads(line)) == line
        except (ValueError, TypeError):
            same = False
        if not same:
            event = data.get("type") == "event"
            report.add(
                Kind.FORMAT, data.get("terminal_id") if event else None,
                data.get("seq") if event else None,
                f"{_where(number, data)}: not in canonical form"
                + (" (the line was edited)" if edited else ""),
            )  # fmt: skip


def write_csv(path: Path, rows: Sequence[Row]) -> None:
    """The events as a spreadsheet (not a true copy: use the bundle for that)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(ROW_FIELDS)
        for row in rows:
            writer.writerow(["" if v is None else v for v in row])
