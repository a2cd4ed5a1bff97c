"""A batch record is presented only if every row it is built from matches its trail.

The rows of a batch (the batch, its steps, values, deviations, signatures, PLC commands and
alarms, the e-signatures of those records and the pinned recipe version) are each bound to the
audit event that wrote them (:mod:`hmi.audit.binding`). Before a record is shown, printed or
copied, :func:`check_batch_rows` compares them with the bindings carried by the events about
the batch: an edited, deleted or inserted row makes :class:`RecordMismatch`, whose message is
the sentence every screen and command shows instead of the record.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, or_, select

from hmi.alarms.tables import alarm as alarm_table
from hmi.audit import binding
from hmi.audit.tables import audit_event
from hmi.auth.tables import esignature
from hmi.batch.errors import BatchError
from hmi.batch.tables import batch, batch_signature, batch_step, batch_value, deviation, plc_command
from hmi.recipe.tables import recipe_version

BATCH = "batch"
STEP = "batch_step"
DEVIATION = "batch_deviation"
ALARM = "alarm"
COMMAND = "plc_command"
RECIPE = "recipe_version"


class RecordMismatch(BatchError):
    """The stored rows of a batch record differ from what its audit trail recorded."""

    def __init__(self, batch_id: str, problems: Sequence[binding.RowProblem]) -> None:
        self.batch_id = batch_id
        self.problems = tuple(problems)
        shown = "; ".join(p.message for p in self.problems[:5])
        more = f"; and {len(self.problems) - 5} more" if len(self.problems) > 5 else ""
        super().__init__(
            f"the record of batch {batch_id} does not match its audit trail, so it is not"
            f" presented: {shown}{more}. Run `hmi audit verify` and report this to QA."
        )


@dataclass(frozen=True)
class RecordScope:
    """Which events are about a batch: the batch, its steps, and its deviations, alarms and
    PLC commands. The one rule, for the database query and for a bundle's reader."""

    batch_id: str
    deviations: frozenset[str] = frozenset()
    alarms: frozenset[str] = frozenset()
    commands: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        batch_id: str,
        deviations: Iterable[object] = (),
        alarms: Iterable[object] = (),
        commands: Iterable[object] = (),
    ) -> RecordScope:
        return cls(
            batch_id,
            frozenset(str(d) for d in deviations),
            frozenset(str(a) for a in alarms),
            frozenset(str(c) for c in commands),
        )

    def covers(self, entity_type: object, entity_id: object) -> bool:
        entity = str(entity_id)
        return (
            (entity_type == BATCH and entity == self.batch_id)
            or (entity_type == STEP and entity.startswith(self.batch_id + "/"))
            or (entity_type == DEVIATION and entity in self.deviations)
            or (entity_type == ALARM and entity in self.alarms)
            or (entity_type == COMMAND and entity in self.commands)
        )

    def clause(self) -> Any:
        t = audit_event.c
        clauses = [
            and_(t.entity_type == BATCH, t.entity_id == self.batch_id),
            and_(t.entity_type == STEP, t.entity_id.startswith(self.batch_id + "/")),
        ]
        for kind, ids in (
            (DEVIATION, self.deviations),
            (ALARM, self.alarms),
            (COMMAND, self.commands),
        ):
            if ids:
                clauses.append(and_(t.entity_type == kind, t.entity_id.in_(sorted(ids))))
        return or_(*clauses)


def alarm_rows(conn: Connection, batch_row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The alarms of a batch: raised for it, or on its terminal while it ran."""
    t = alarm_table.c
    end = batch_row["completed_at"] or batch_row["aborted_at"]
    during = and_(t.terminal_id == batch_row["terminal_id"], t.raised_at >= batch_row["started_at"])
    if end is not None:
        during = and_(during, t.raised_at <= end)
    query = select(alarm_table).where(or_(t.batch_id == batch_row["batch_id"], during))
    return [dict(r) for r in conn.execute(query.order_by(t.raised_at, t.alarm_id)).mappings()]


def _of_batch(conn: Connection, table: Any, batch_id: str) -> list[dict[str, Any]]:
    return [
        dict(r) for r in conn.execute(select(table).where(table.c.batch_id == batch_id)).mappings()
    ]


def record_rows(conn: Connection, batch_id: str) -> dict[str, list[dict[str, Any]]]:
    """Every stored row a batch record is built from, by table."""
    head = conn.execute(select(batch).where(batch.c.batch_id == batch_id)).mappings().first()
    if head is None:
        return {}
    batch_row = dict(head)
    rows: dict[str, list[dict[str, Any]]] = {"batch": [batch_row]}
    for table in (batch_step, batch_value, deviation, batch_signature, plc_command):
        rows[table.name] = _of_batch(conn, table, batch_id)
    rows["alarm"] = alarm_rows(conn, batch_row)
    records = [(BATCH, batch_id)]
    records += [(STEP, f"{batch_id}/{r['step_id']}") for r in rows["batch_step"]]
    records += [(DEVIATION, str(r["deviation_id"])) for r in rows["deviation"]]
    found = []
    for record_type, record_id in records:
        found += [
            dict(r)
            for r in conn.execute(
                select(esignature).where(
                    esignature.c.record_type == record_type, esignature.c.record_id == record_id
                )
            ).mappings()
        ]
    rows["esignature"] = list({str(r["signature_id"]): r for r in found}.values())
    rows["recipe_version"] = [
        dict(r)
        for r in conn.execute(
            select(recipe_version).where(
                recipe_version.c.recipe_id == batch_row["recipe_id"],
                recipe_version.c.version == batch_row["recipe_version"],
            )
        ).mappings()
    ]
    return rows


def scope_of(rows: Mapping[str, Sequence[Mapping[str, Any]]]) -> RecordScope:
    """The scope of the record built from these rows."""
    return RecordScope.of(
        str(rows["batch"][0]["batch_id"]),
        (r["deviation_id"] for r in rows.get("deviation", ())),
        (r["alarm_id"] for r in rows.get("alarm", ())),
        (r["id"] for r in rows.get("plc_command", ())),
    )


def record_events(conn: Connection, rows: Mapping[str, Sequence[Mapping[str, Any]]]) -> Any:
    """The events that may bind a record's rows: those about the batch and its recipe version."""
    batch_row = rows["batch"][0]
    clause = scope_of(rows).clause()
    t = audit_event.c
    pinned = f"{batch_row['recipe_id']}/{batch_row['recipe_version']}"
    return or_(clause, and_(t.entity_type == RECIPE, t.entity_id == pinned))


def index_of(
    events: Iterable[tuple[str, int, str]],
) -> tuple[binding.RowIndex, list[binding.RowProblem]]:
    """The row bindings carried by events given as (terminal, seq, details text)."""
    index = binding.RowIndex()
    problems: list[binding.RowProblem] = []
    marker = f'"{binding.DETAILS_KEY}":'
    for terminal, seq, details in events:
        if marker not in details:
            continue
        try:
            parsed = json.loads(details)
            index.add(
                binding.bindings_of(terminal, seq, parsed if isinstance(parsed, dict) else {})
            )
        except ValueError as exc:
            problems.append(
                binding.RowProblem(
                    "row_unlinked",
                    "audit_event",
                    f"{terminal}:{seq}",
                    terminal,
                    seq,
                    f"event {terminal}:{seq} carries unreadable row bindings ({exc})",
                )
            )
    return index, problems


def compare_rows(
    index: binding.RowIndex,
    rows: Mapping[str, Sequence[Mapping[str, Any]]],
    exists: Any = None,
) -> list[binding.RowProblem]:
    """The record's rows against the bindings of its events, both ways.

    A binding of a row that is not part of the record is a deleted row only if the row is
    gone (``exists(table, key)`` says whether it is still stored elsewhere)."""
    stored: dict[tuple[str, str], str] = {}
    for table, items in rows.items():
        key_column = binding.BOUND_TABLES[table]
        for row in items:
            stored[(table, str(row[key_column]))] = binding.row_digest(table, row)
    problems = index.compare(stored, tables=list(rows))
    if exists is None:
        return problems
    return [p for p in problems if p.kind != "row_deleted" or not exists(p.table, p.key)]


def check_batch_rows(conn: Connection, batch_id: str) -> list[binding.RowProblem]:
    """Every row of the record of ``batch_id`` against the events about the batch."""
    rows = record_rows(conn, batch_id)
    if not rows:
        return []
    t = audit_event.c
    found = conn.execute(
        select(t.terminal_id, t.seq, t.details)
        .where(record_events(conn, rows))
        .order_by(t.terminal_id, t.seq)
    )
    index, problems = index_of((str(a), int(b), str(c)) for a, b, c in found)

    def exists(table: str, key: str) -> bool:
        return binding.select_row(conn, table, key) is not None

    return problems + compare_rows(index, rows, exists)


def ensure_bound(conn: Connection, batch_id: str) -> None:
    """Raise :class:`RecordMismatch` unless the record of ``batch_id`` matches its trail."""
    problems = check_batch_rows(conn, batch_id)
    if problems:
        raise RecordMismatch(batch_id, problems)
