"""The electronic true copy of a batch record: an audit bundle with the record in it.

Built on :func:`hmi.audit.bundle.write_bundle`: the header says ``"profile":
"hmi-batch-record"``; the events are the chain segments of :mod:`hmi.ebr.assemble` (every event
between the batch's first and last, with the checkpoints in range and the public keys); the
record lines (``ebr.*``) carry the batch record and the recipe content, each with the batch
number and its position; the last one, ``ebr.manifest``, lists the SHA-256 of every record
line before it and is signed by the terminal key, so an edited, moved or borrowed line is named
by its line number. The record is also checked against the signed audit events it claims to
come from (values and corrections, deviations, signatures, the recipe hash, the list of related
events), so the copy is proven consistent with the trail even against someone able to re-sign.
Changes after first entry are not stored twice: they are derived from the values (a value with
``replaces_id``) when the bundle is read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from hmi.alarms.tables import alarm as alarm_table
from hmi.audit import binding, canonical
from hmi.audit.bundle import BundleContents, BundleError, read_bundle, write_bundle
from hmi.audit.checkpoint import Checkpoint
from hmi.audit.keys import PublicKey, Signer
from hmi.audit.verify import Kind, VerifyReport, collection_paused
from hmi.auth.roles import Meaning, Role
from hmi.auth.signatures import RecordRef, Signature, binding_sha256
from hmi.auth.tables import esignature
from hmi.batch.integrity import (
    ALARM,
    BATCH,
    COMMAND,
    DEVIATION,
    RecordScope,
    trail_members,
)
from hmi.batch.tables import batch as batch_table
from hmi.batch.tables import batch_step, batch_value, deviation, plc_command
from hmi.clock import from_utc_text
from hmi.ebr.assemble import Assembled
from hmi.ebr.model import (
    Alarm,
    AuditEvent,
    Change,
    Deviation,
    EbrRecord,
    EventRef,
    Header,
    PlcCommand,
    RecipeContent,
    SignatureEntry,
    Step,
    Summary,
    Value,
    plain,
)

PROFILE = "hmi-batch-record"
PROFILE_VERSION = 1
MANIFEST_TAG = b"HMI-EBR-MANIFEST-v1\x00"

#: Record line types, in the order they are written; the single ones appear exactly once.
SINGLE = ("ebr.header", "ebr.recipe", "ebr.summary", "ebr.meta", "ebr.audit_trail")


class RowLine(BaseModel):
    """An ``ebr.row`` line: a stored row as its binding covers it."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    table: str
    key: str
    row: dict[str, Any]


#: The tables whose rows a batch bundle carries (the pinned recipe version is checked by its
#: hash against the event that started the batch instead: its own events predate the copy).
ROW_TABLES = frozenset(
    {"batch", "batch_step", "batch_value", "deviation", "batch_signature", "plc_command",
     "alarm", "esignature"}
)  # fmt: skip

REPEATED: dict[str, type[Any]] = {
    "ebr.row": RowLine,
    "ebr.step": Step,
    "ebr.value": Value,
    "ebr.deviation": Deviation,
    "ebr.signature": SignatureEntry,
    "ebr.alarm": Alarm,
    "ebr.plc_command": PlcCommand,
}


def manifest_message(manifest: dict[str, Any]) -> bytes:
    """What the manifest's signature covers: the manifest without its signature."""
    body = {k: manifest.get(k) for k in ("batch_id", "key_id", "lines", "sha256", "type")}
    return MANIFEST_TAG + canonical.canonical_bytes(body)


def record_lines(
    record: EbrRecord, signer: Signer, rows: Mapping[str, Sequence[Mapping[str, Any]]] | None = None
) -> list[dict[str, Any]]:
    """The record as ``ebr.*`` lines, closed by the signed ``ebr.manifest`` (module doc).

    ``rows`` are the stored rows the record was built from; each becomes an ``ebr.row`` line
    (its bound content, :func:`hmi.audit.binding.row_content`), so an offline reader can check
    them against the row bindings of the events and the printed lines against them."""
    batch_id = record.header.batch_id
    items: list[tuple[str, Any]] = [
        ("ebr.meta", {"assembled_at": record.assembled_at, "assembled_by": record.assembled_by}),
        ("ebr.header", plain(record.header)),
        ("ebr.recipe", plain(record.recipe)),
    ]
    items += [("ebr.step", plain(s)) for s in record.steps]
    items += [("ebr.value", plain(v)) for v in record.values]
    items += [("ebr.deviation", plain(d)) for d in record.deviations]
    items += [("ebr.signature", plain(s)) for s in record.signatures]
    items += [("ebr.alarm", plain(a)) for a in record.alarms]
    items += [("ebr.plc_command", plain(c)) for c in record.plc_commands]
    for table, table_rows in sorted((rows or {}).items()):
        if table in ROW_TABLES:
            items += [("ebr.row", binding.row_content(table, row)) for row in table_rows]
    items.append(("ebr.audit_trail", [[e.terminal_id, e.seq] for e in record.events]))
    items.append(("ebr.summary", plain(record.summary)))
    lines = [
        {"type": kind, "batch_id": batch_id, "n": number, "data": data}
        for number, (kind, data) in enumerate(items, start=1)
    ]
    manifest: dict[str, Any] = {
        "type": "ebr.manifest",
        "batch_id": batch_id,
        "lines": len(lines),
        "sha256": [hashlib.sha256(canonical.canonical_bytes(line)).hexdigest() for line in lines],
        "key_id": signer.key_id,
    }
    manifest["sig"] = signer.sign(manifest_message(manifest)).hex()
    return [*lines, manifest]


def write_batch_bundle(
    path: Path,
    assembled: Assembled,
    *,
    signer: Signer,
    created_at: str,
    exported_by: dict[str, Any],
    heads: Sequence[Checkpoint],
) -> str:
    """Write the batch's electronic true copy; return the SHA-256 it is signed over.

    ``heads`` are the signed heads of the chains the copy holds segments of, as they were when
    it was made (:func:`hmi.audit.store.chain_heads`)."""
    record = assembled.record
    context = assembled.context
    keys = dict(context.keys)
    keys.setdefault(signer.key_id, signer.public)
    header = {
        "profile": PROFILE,
        "profile_version": PROFILE_VERSION,
        "created_at": created_at,
        "exported_by": exported_by,
        "site": record.header.site,
        "line": record.header.line,
        "scope": {
            "kind": "batch",
            "batch_id": record.header.batch_id,
            "chains": {t: [low, high] for t, (low, high) in sorted(context.spans.items())},
        },
        "partial": True,
    }
    return write_bundle(
        path,
        signer=signer,
        header=header,
        keys=keys.values(),
        rows=context.rows,
        checkpoints=context.checkpoints,
        heads=heads,
        ends_at_head=False,
        records=record_lines(record, signer, assembled.rows),
    )


# -- reading and verifying ----------------------------------------------------------------


@dataclass
class BatchBundle:
    """A read batch bundle: the verification report, the contents, and the record if whole."""

    report: VerifyReport
    contents: BundleContents
    record: EbrRecord | None

    @property
    def ok(self) -> bool:
        return self.report.ok and self.record is not None

    @property
    def sha256(self) -> str:
        return self.contents.sha256


def is_batch_bundle(contents: BundleContents) -> bool:
    return contents.header.get("profile") == PROFILE


def _first_record_line(contents: BundleContents) -> int:
    header = contents.header
    keys = len(contents.keys)
    return 2 + keys + int(header.get("events") or 0) + int(header.get("checkpoints") or 0)


class _Checker:
    def __init__(self, contents: BundleContents, keys: dict[str, PublicKey], report: VerifyReport):
        self.contents = contents
        self.keys = keys
        self.report = report
        self.first_line = _first_record_line(contents)
        self.events = {(str(e.get("terminal_id")), e.get("seq")): e for e in contents.events}
        self._details: dict[tuple[str, Any], dict[str, Any]] = {}

    def problem(self, index: int | None, line: dict[str, Any] | None, message: str) -> None:
        if index is None or line is None:
            self.report.add(Kind.BUNDLE, None, None, f"batch record: {message}")
            return
        what = str(line.get("type"))
        data = line.get("data")
        name = ""
        if isinstance(data, dict):
            for key in ("value_id", "deviation_id", "signature_id", "step_id", "alarm_id",
                        "command_id", "batch_id", "recipe_id"):  # fmt: skip
                if key in data:
                    name = f" {key} {data[key]}"
                    break
        self.report.add(
            Kind.BUNDLE, None, None, f"line {self.first_line + index} ({what}{name}): {message}"
        )

    def event(self, ref: EventRef | None) -> dict[str, Any] | None:
        if ref is None:
            return None
        return self.events.get((ref.terminal_id, ref.seq))

    def details(self, event: dict[str, Any]) -> dict[str, Any]:
        key = (str(event.get("terminal_id")), event.get("seq"))
        cached = self._details.get(key)
        if cached is None:
            try:
                value = orjson.loads(str(event.get("details")))
            except ValueError:
                value = {}
            cached = value if isinstance(value, dict) else {}
            self._details[key] = cached
        return cached


def _parse(
    checker: _Checker, batch_id: str, raw: Sequence[bytes] | None
) -> tuple[dict[str, tuple[int, dict[str, Any], Any]], dict[str, list[tuple[int, Any, Any]]]]:
    singles: dict[str, tuple[int, dict[str, Any], Any]] = {}
    repeated: dict[str, list[tuple[int, Any, Any]]] = {kind: [] for kind in REPEATED}
    pending: dict[str, list[tuple[int, dict[str, Any]]]] = {kind: [] for kind in REPEATED}
    records = checker.contents.records
    manifest = records[-1] if records else {}
    hashes: list[Any] = []
    manifest_valid = False
    if manifest.get("type") != "ebr.manifest":
        checker.problem(None, None, "the signed ebr.manifest line is missing (truncated?)")
    else:
        records = records[:-1]
        key = checker.keys.get(str(manifest.get("key_id")))
        try:
            signature = bytes.fromhex(str(manifest.get("sig")))
            valid = key is not None and key.verify(signature, manifest_message(manifest))
        except (ValueError, TypeError):
            valid = False
        manifest_valid = valid
        if not valid:
            checker.problem(len(records), manifest, "manifest signature invalid (edited)")
        raw_hashes = manifest.get("sha256")
        hashes = raw_hashes if isinstance(raw_hashes, list) else []
        if manifest.get("batch_id") != batch_id or manifest.get("lines") != len(records):
            checker.problem(len(records), manifest, f"announces {manifest.get('lines')} record"
                            f" lines of batch {manifest.get('batch_id')}, the bundle holds"
                            f" {len(records)} of batch {batch_id}")  # fmt: skip
    # When one valid signature covers the whole bundle and the manifest, it covers every
    # record line byte for byte: whoever could change a line could also have re-signed the
    # manifest, so its line hashes add nothing and are only compared when the bundle's own
    # signature fails (then they say which line was edited).
    by_one_key = (
        checker.contents.signed_by is not None
        and manifest_valid
        and str(manifest.get("key_id")) == checker.contents.signed_by
        and len(hashes) == len(records)
    )
    for index, line in enumerate(records):
        kind = str(line.get("type"))
        if not by_one_key:
            exact = raw[index] if raw is not None else canonical.canonical_bytes(line)
            digest = hashlib.sha256(exact).hexdigest()
            if index >= len(hashes) or hashes[index] != digest:
                checker.problem(
                    index, line, "does not match the signed manifest (the line was edited)"
                )
                continue
        if line.get("batch_id") != batch_id or line.get("n") != index + 1:
            checker.problem(index, line, "record line belongs elsewhere (moved or copied)")
            continue
        data = line.get("data")
        if kind in SINGLE:
            if kind in singles:
                checker.problem(index, line, f"a second {kind} line")
            singles[kind] = (index, line, data)
        elif kind in REPEATED:
            pending[kind].append((index, line))
        else:
            checker.problem(index, line, "unknown record line type")
    for kind, lines in pending.items():
        repeated[kind] = _validate_lines(checker, REPEATED[kind], lines)
    return singles, repeated


def _validate_lines(
    checker: _Checker, model: type[Any], lines: list[tuple[int, dict[str, Any]]]
) -> list[tuple[int, Any, Any]]:
    """Validate the data of many lines of one kind in one call; name each malformed line."""
    if not lines:
        return []
    try:
        items = _list_adapter(model).validate_python([line.get("data") for _i, line in lines])
        return [(index, line, item) for (index, line), item in zip(lines, items, strict=True)]
    except ValidationError:
        pass
    out = []
    for index, line in lines:
        try:
            out.append((index, line, model.model_validate(line.get("data"))))
        except ValidationError as exc:
            checker.problem(index, line, f"malformed ({exc.error_count()} errors)")
    return out


_ADAPTERS: dict[str, TypeAdapter[list[Any]]] = {}


def _list_adapter(model: type[Any]) -> TypeAdapter[list[Any]]:
    adapter = _ADAPTERS.get(model.__name__)
    if adapter is None:
        adapter = _ADAPTERS[model.__name__] = TypeAdapter(list[model])  # type: ignore[valid-type]
    return adapter


def _check_values(
    checker: _Checker, values: list[tuple[int, Any, Any]], batch_id: str, by_id: dict[int, Value]
) -> None:
    for index, line, value in values:
        event = checker.event(value.event)
        if event is None:
            checker.problem(index, line, "no audit event in the bundle recorded this value")
            continue
        details = checker.details(event)
        bound = details.get(binding.DETAILS_KEY)
        if (event.get("entity_type"), event.get("entity_id")) != (BATCH, batch_id):
            checker.problem(index, line, "its audit event is about another record")
        elif isinstance(bound, list) and not any(
            isinstance(item, list) and item[:3] == ["batch_value", str(value.value_id), None]
            for item in bound
        ):
            checker.problem(index, line, "its audit event did not write this value")
        elif value.replaces_id is None:
            recorded = {
                (str(item.get("name")), str(item.get("value")))
                for item in details.get("values") or []
                if isinstance(item, dict)
            }
            if "tare" in details:
                recorded.add(("tare", str(details["tare"])))
            if details.get("step_id") != value.step_id or (value.name, value.value) not in recorded:
                checker.problem(index, line, "differs from the value its audit event recorded")
        elif (
            event.get("action") != "batch.value.corrected"
            or details.get("value_id") != value.value_id
            or details.get("replaces_id") != value.replaces_id
            or event.get("new_value") != value.value
            or event.get("reason") != value.reason
            or (
                value.replaces_id in by_id
                and event.get("old_value") != by_id[value.replaces_id].value
            )
        ):
            checker.problem(index, line, "differs from the correction its audit event recorded")


def derive_changes(values: dict[int, Value]) -> tuple[Change, ...]:
    """Every value changed after its first entry: old, new, who, when, why (Annex 11 §8.2)."""
    out = []
    for value in values.values():
        if value.replaces_id is None:
            continue
        old = values.get(value.replaces_id)
        out.append(
            Change(
                value_id=value.value_id,
                replaces_id=value.replaces_id,
                step_id=value.step_id,
                name=value.name,
                old="?" if old is None else old.value,
                new=value.value,
                unit=value.unit,
                changed_by=value.recorded_by,
                changed_at=value.recorded_at,
                reason=value.reason or "",
            )
        )
    return tuple(out)


def _check_deviations(
    checker: _Checker, deviations: list[tuple[int, Any, Any]], batch_id: str
) -> None:
    for index, line, item in deviations:
        event = checker.event(item.event)
        details = checker.details(event) if event is not None else {}
        if (
            event is None
            or event.get("action") != "deviation.opened"
            or event.get("entity_id") != item.deviation_id
            or details.get("batch_id") != batch_id
            or details.get("kind") != item.kind
            or details.get("description") != item.description
        ):
            checker.problem(index, line, "differs from the audit event that opened it")


def _check_signatures(checker: _Checker, signatures: list[tuple[int, Any, Any]]) -> None:
    for index, line, item in signatures:
        try:
            stated = Signature(
                signature_id=item.signature_id,
                record=RecordRef(item.record_type, item.record_id, item.record_sha256),
                meaning=Meaning(item.meaning),
                signer_id=item.signer_id,
                signer_name=item.signer_name,
                signer_role=Role(item.signer_role),
                signed_at=from_utc_text(item.signed_at),
                session_id=item.session_id,
                terminal_id=item.terminal_id,
                components=tuple(item.components),
                cosign_of=item.cosign_of,
                binding_sha256=item.binding_sha256,
                audit_terminal_id=item.event.terminal_id,
                audit_seq=item.event.seq,
            )
            computed = binding_sha256(stated.binding_fields())
        except ValueError:
            computed = ""
        event = checker.event(item.event)
        details = checker.details(event) if event is not None else {}
        if computed != item.binding_sha256:
            checker.problem(index, line, "the signature's binding hash does not match its fields")
        elif (
            event is None
            or event.get("action") not in {"esignature.signed", "esignature.cosigned"}
            or details.get("binding_sha256") != computed
            or details.get("signature_id") != item.signature_id
            or event.get("new_value") != item.record_sha256
        ):
            checker.problem(index, line, "differs from the audit event that recorded the signature")


#: How each printed line type is found among the stored rows: the line's key field, the table
#: and the row's column for it, and the line fields that are columns under another name.
_PRINTED: tuple[tuple[str, str, str, str, dict[str, str]], ...] = (
    ("ebr.header", "batch_id", "batch", "batch_id", {}),
    ("ebr.step", "index", "batch_step", "step_index", {"index": "step_index"}),
    ("ebr.value", "value_id", "batch_value", "id", {"value_id": "id"}),
    ("ebr.deviation", "deviation_id", "deviation", "deviation_id", {}),
    ("ebr.signature", "signature_id", "esignature", "signature_id", {}),
    ("ebr.alarm", "alarm_id", "alarm", "alarm_id", {}),
    ("ebr.plc_command", "command_id", "plc_command", "id", {"command_id": "id"}),
)
_COLUMNS: dict[str, frozenset[str]] = {
    t.name: frozenset(t.c.keys())
    for t in (batch_table, batch_step, batch_value, deviation, esignature, alarm_table, plc_command)
}


def _same(printed: Any, stored: Any) -> bool:
    """A printed field against the stored column it comes from (as its binding covers it)."""
    if isinstance(printed, bool):
        return bool(stored == int(printed))
    if printed is None or stored is None:
        return printed is None and stored is None
    if isinstance(printed, list | dict) or (isinstance(printed, str) and printed != stored):
        try:
            left = printed if not isinstance(printed, str) else orjson.loads(printed)
            return isinstance(stored, str) and bool(left == orjson.loads(stored))
        except ValueError:
            return False
    return bool(printed == stored)


def _check_rows(
    checker: _Checker,
    singles: dict[str, tuple[int, dict[str, Any], Any]],
    repeated: dict[str, list[tuple[int, Any, Any]]],
    batch_id: str,
    related: Iterable[dict[str, Any]],
) -> None:
    """The stored rows the copy carries against the row bindings of its events (edited,
    deleted or inserted rows), and every printed line against the row it was printed from."""
    stored: dict[tuple[str, str], str] = {}
    by_table: dict[str, dict[str, tuple[int, dict[str, Any], dict[str, Any]]]] = {}
    for index, line, item in repeated["ebr.row"]:
        if item.table not in ROW_TABLES or item.key != str(
            item.row.get(binding.BOUND_TABLES[item.table])
        ):
            checker.problem(index, line, "is not a row of the batch record")
            continue
        content = {"key": item.key, "row": item.row, "table": item.table}
        stored[(item.table, item.key)] = hashlib.sha256(
            binding.ROW_TAG + canonical.canonical_bytes(content)
        ).hexdigest()
        by_table.setdefault(item.table, {})[item.key] = (index, line, item.row)
    index_, unreadable = binding.index_of(
        (str(e.get("terminal_id")), int(e.get("seq") or 0), str(e.get("ts")), str(e.get("details")))
        for e in related
    )
    for problem in [*unreadable, *index_.compare(stored, tables=sorted(ROW_TABLES))]:
        checker.report.add(Kind(problem.kind), problem.terminal, problem.seq, problem.message)
    printed_rows: set[tuple[str, str]] = set()
    for kind, line_key, table, row_key, renames in _PRINTED:
        lines = [singles[kind]] if kind in singles else repeated.get(kind, [])
        rows = by_table.get(table, {})
        lookup = {str(r.get(row_key)): (k, r) for k, (_i, _l, r) in rows.items()}
        for index, line, _item in lines:
            raw_data = line.get("data")
            data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
            found = lookup.get(str(data.get(line_key)))
            if found is None:
                if kind != "ebr.step" or data.get("status") != "pending":
                    checker.problem(index, line, "no stored row of the batch backs this line")
                continue
            key, row = found
            printed_rows.add((table, key))
            for field, value in data.items():
                column = renames.get(field, field)
                if column in _COLUMNS[table] and not _same(value, row.get(column)):
                    checker.problem(
                        index, line, f"{field} differs from the stored {table} row {key}"
                    )
                    break
    signed = {
        str(r.get("signature_id")) for _i, _l, r in by_table.get("batch_signature", {}).values()
    }
    for table, rows in by_table.items():
        for key, (index, line, row) in rows.items():
            if table == "batch_signature" or (table, key) in printed_rows:
                continue
            if table == "esignature" and str(row.get("signature_id")) not in signed:
                continue
            checker.problem(index, line, f"the stored {table} row {key} is left out of the record")


def _verify_record(
    contents: BundleContents,
    keys: dict[str, PublicKey],
    report: VerifyReport,
    raw: Sequence[bytes] | None,
    build: bool = True,
) -> EbrRecord | None:
    version = contents.header.get("profile_version")
    if type(version) is not int or version != PROFILE_VERSION:
        report.add(
            Kind.FORMAT, None, None,
            f"line 1 (header): batch record profile version {version!r} is not one this"
            f" verifier knows (it reads version {PROFILE_VERSION}); its record lines were not"
            " checked",
        )  # fmt: skip
        return None
    checker = _Checker(contents, keys, report)
    scope = contents.header.get("scope")
    batch_id = str(scope.get("batch_id")) if isinstance(scope, dict) else ""
    before = len(report.problems)
    singles, repeated = _parse(checker, batch_id, raw)
    for kind in SINGLE:
        if kind not in singles:
            checker.problem(None, None, f"the {kind} line is missing")
    if len(report.problems) > before and any(k not in singles for k in SINGLE):
        return None
    try:
        header = Header.model_validate(singles["ebr.header"][2])
        recipe = RecipeContent.model_validate(singles["ebr.recipe"][2])
        summary = Summary.model_validate(singles["ebr.summary"][2])
        meta = singles["ebr.meta"][2]
        refs = _list_adapter(EventRef).validate_python(
            [{"terminal_id": str(t), "seq": int(s)} for t, s in singles["ebr.audit_trail"][2]]
        )
    except (ValidationError, TypeError, ValueError, KeyError) as exc:
        checker.problem(
            None, None, f"a header, recipe, summary or audit trail line is malformed ({exc})"
        )
        return None
    index, line, _ = singles["ebr.header"]
    started = checker.event(header.started_event)
    started_details = checker.details(started) if started is not None else {}
    if (
        header.batch_id != batch_id
        or started is None
        or started.get("action") != "batch.started"
        or started.get("entity_id") != batch_id
        or started.get("ts") != header.started_at
        or started_details.get("recipe_sha256") != header.recipe_sha256
    ):
        checker.problem(index, line, "differs from the audit event that started the batch")
    index, line, _ = singles["ebr.recipe"]
    digest = hashlib.sha256(recipe.canonical_json.encode("utf-8")).hexdigest()
    if digest != recipe.sha256 or recipe.sha256 != header.recipe_sha256:
        checker.problem(
            index, line, "the recipe content does not hash to the batch's pinned recipe"
        )
    values = {v.value_id: v for _i, _l, v in repeated["ebr.value"]}
    _check_values(checker, repeated["ebr.value"], batch_id, values)
    for value in values.values():
        if value.replaces_id is not None and value.replaces_id not in values:
            checker.problem(None, None, f"value {value.value_id} corrects a value not in the copy")
    _check_deviations(checker, repeated["ebr.deviation"], batch_id)
    _check_signatures(checker, repeated["ebr.signature"])
    members = trail_members(
        batch_id,
        header.terminal_id,
        header.started_at,
        header.completed_at or header.aborted_at,
        (
            (e.get("action"), e.get("entity_type"), e.get("entity_id"), e.get("terminal_id"),
             e.get("ts"), e.get("details"))
            for e in contents.events
        ),
    )  # fmt: skip
    about = RecordScope.of(
        batch_id,
        [*(d.deviation_id for _i, _l, d in repeated["ebr.deviation"]), *members[DEVIATION]],
        [*(a.alarm_id for _i, _l, a in repeated["ebr.alarm"]), *members[ALARM]],
        [*(c.command_id for _i, _l, c in repeated["ebr.plc_command"]), *members[COMMAND]],
    )
    related = [
        e for e in checker.events.values() if about.covers(e.get("entity_type"), e.get("entity_id"))
    ]
    _check_rows(checker, singles, repeated, batch_id, related)
    listed = {(r.terminal_id, r.seq) for r in refs}
    index, line, _ = singles["ebr.audit_trail"]
    missing_refs = [f"{t}:{s}" for t, s in sorted(listed) if (t, s) not in checker.events]
    if missing_refs:
        checker.problem(
            index, line, f"lists events the bundle lacks: {', '.join(missing_refs[:5])}"
        )
    unlisted = [
        f"{key[0]}:{key[1]}"
        for key, event in checker.events.items()
        if about.covers(event.get("entity_type"), event.get("entity_id")) and key not in listed
    ]
    if unlisted:
        checker.problem(
            index, line, f"leaves out events about the batch: {', '.join(unlisted[:5])}"
        )
    if len(report.problems) > before or not build:
        return None
    fields = tuple(AuditEvent.model_fields)
    try:
        events = _list_adapter(AuditEvent).validate_python(
            [{k: checker.events[(ref.terminal_id, ref.seq)].get(k) for k in fields} for ref in refs]
        )
    except ValidationError as exc:
        checker.problem(None, None, f"an audit event of the record is malformed ({exc})")
        return None
    return EbrRecord(
        header=header,
        recipe=recipe,
        steps=tuple(s for _i, _l, s in repeated["ebr.step"]),
        values=tuple(values.values()),
        changes=derive_changes(values),
        deviations=tuple(d for _i, _l, d in repeated["ebr.deviation"]),
        signatures=tuple(s for _i, _l, s in repeated["ebr.signature"]),
        alarms=tuple(a for _i, _l, a in repeated["ebr.alarm"]),
        plc_commands=tuple(c for _i, _l, c in repeated["ebr.plc_command"]),
        events=tuple(events),
        summary=summary,
        assembled_at=str(meta.get("assembled_at")) if isinstance(meta, dict) else "",
        assembled_by=str(meta.get("assembled_by")) if isinstance(meta, dict) else "",
    )


def check_batch_records(
    contents: BundleContents,
    report: VerifyReport,
    *,
    trust: dict[str, PublicKey] | None = None,
    path: Path | None = None,
    build: bool = True,
) -> EbrRecord | None:
    """The batch-record checks on an already read bundle (the hook ``hmi audit verify
    --bundle`` calls): adds problems to ``report``; returns the record when it is whole.

    With ``path`` the record lines are hashed as they are in the file (no re-encoding).
    ``build=False`` only checks: the printable record is not put together (verification)."""
    if not is_batch_bundle(contents):
        return None
    raw: list[bytes] | None = None
    if path is not None or contents.raw_lines:
        lines = [*contents.raw_lines, b""]
        if path is not None and not contents.raw_lines:
            try:
                lines = path.read_bytes().split(b"\n")
            except OSError:
                lines = []
        first = _first_record_line(contents) - 1
        raw = lines[first : first + len(contents.records)]
        if len(lines) != first + len(contents.records) + 2 or any(
            not line.startswith(b'{"batch_id":') for line in raw[:1]
        ):
            raw = None  # unreadable lines were skipped: fall back to re-encoding
    keys = trust if trust is not None else contents.keys
    return _verify_record(contents, keys, report, raw, build)


def read_batch_bundle(
    path: Path, *, trust: dict[str, PublicKey] | None = None, workers: int | None = None
) -> BatchBundle:
    """Verify a batch bundle offline and put its record together for printing.

    The record checks run while the other cores check the event signatures; their problems
    are reported after the audit bundle's, as if they had run one after the other."""
    with collection_paused():
        return _read_batch_bundle(path, trust, workers, build=True)


def verify_bundle_file(
    path: Path, *, trust: dict[str, PublicKey] | None = None, workers: int | None = None
) -> tuple[VerifyReport, BundleContents]:
    """What ``hmi audit verify --bundle`` does: every check of an audit bundle and, for a batch
    record, of its record lines; nothing is put together for printing."""
    with collection_paused():
        read = _read_batch_bundle(path, trust, workers, build=False, batch_only=False)
    return read.report, read.contents


def _read_batch_bundle(
    path: Path,
    trust: dict[str, PublicKey] | None,
    workers: int | None,
    *,
    build: bool,
    batch_only: bool = True,
) -> BatchBundle:
    side = VerifyReport()
    records: list[EbrRecord | None] = []

    def record_checks(contents: BundleContents) -> None:
        records.append(check_batch_records(contents, side, trust=trust, path=path, build=build))

    report, contents = read_bundle(path, trust=trust, workers=workers, meanwhile=record_checks)
    if not batch_only:
        report.problems.extend(side.problems)
        return BatchBundle(report, contents, None)
    if not is_batch_bundle(contents):
        # not what was asked to be verified: never reported as tampered (exit 2, not 1)
        raise BundleError(
            f"{path} is an audit bundle, not a batch record (its header names no batch"
            f" record profile); verify it with: hmi audit verify --bundle {path}"
        )
    report.problems.extend(side.problems)
    return BatchBundle(report, contents, records[0] if records else None)


def problems_text(report: VerifyReport) -> Iterable[str]:
    for problem in report.problems:
        where = f"{problem.terminal}:{problem.seq} " if problem.seq is not None else ""
        yield f"{problem.kind}: {where}{problem.message}"


__all__: Sequence[str] = (
    "PROFILE",
    "BatchBundle",
    "check_batch_records",
    "is_batch_bundle",
    "read_batch_bundle",
    "record_lines",
    "verify_bundle_file",
    "write_batch_bundle",
)
