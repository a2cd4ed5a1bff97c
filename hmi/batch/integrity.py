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


#: The event that opens each kind of record a batch owns; it names the batch in its details.
OPENING = {
    "deviation.opened": DEVIATION,
    "batch.plc.command.intent": COMMAND,
    "alarm.raised": ALARM,
}


def trail_members(
    batch_id: str,
    terminal: str,
    started_at: str,
    ended_at: str | None,
    events: Iterable[tuple[Any, Any, Any, Any, Any, Any]],
) -> dict[str, set[str]]:
    """The deviations, PLC commands and alarms of a batch as its trail names them, so a row
    deleted from storage still brings its events (and their bindings) into the record's scope.

    ``events`` are (action, entity_type, entity_id, terminal, ts, details text); an opening
    event belongs to the batch when its details name the batch, and an alarm also when it was
    raised on the batch's terminal while the batch ran."""
    members: dict[str, set[str]] = {DEVIATION: set(), COMMAND: set(), ALARM: set()}
    for action, entity_type, entity_id, event_terminal, ts, details in events:
        kind = OPENING.get(str(action))
        if kind is None or entity_type != kind:
            continue
        try:
            named = json.loads(str(details)).get("batch_id") == batch_id
        except (ValueError, AttributeError):
            named = False
        during = (
            kind == ALARM
            and event_terminal == terminal
            and str(ts) >= started_at
            and (ended_at is None or str(ts) <= ended_at)
        )
        if named or during:
            members[kind].add(str(entity_id))
    return members


def scope_of(conn: Connection, rows: Mapping[str, Sequence[Mapping[str, Any]]]) -> RecordScope:
    """The scope of the record built from these rows: its own rows' records and every record
    its trail says it owns."""
    head = rows["batch"][0]
    batch_id = str(head["batch_id"])
    ended = head["completed_at"] or head["aborted_at"]
    t = audit_event.c
    window = and_(
        t.action == "alarm.raised", t.terminal_id == head["terminal_id"],
        t.ts >= head["started_at"],
    )  # fmt: skip
    if ended is not None:
        window = and_(window, t.ts <= ended)
    named = t.details.like(f'%"batch_id":{json.dumps(batch_id, ensure_ascii=False)}%')
    found = conn.execute(
        select(t.action, t.entity_type, t.entity_id, t.terminal_id, t.ts, t.details).where(
            t.action.in_(list(OPENING)), or_(named, window)
        )
    )
    members = trail_members(
        batch_id, str(head["terminal_id"]), str(head["started_at"]), ended, found
    )
    return RecordScope.of(
        batch_id,
        [*(r["deviation_id"] for r in rows.get("deviation", ())), *members[DEVIATION]],
        [*(r["alarm_id"] for r in rows.get("alarm", ())), *members[ALARM]],
        [*(r["id"] for r in rows.get("plc_command", ())), *members[COMMAND]],
    )


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
    t = audit_event.c
    rows = record_rows(conn, batch_id)
    if not rows:
        # No batch row: a batch the trail knows was deleted; one it does not know is unknown.
        found = conn.execute(
            select(t.terminal_id, t.seq, t.ts, t.details)
            .where(t.entity_type == BATCH, t.entity_id == batch_id)
            .order_by(t.terminal_id, t.seq)
        )
        index, problems = binding.index_of((str(a), int(b), str(c), str(d)) for a, b, c, d in found)
        return problems + index.compare({}, tables=["batch"])
    head = rows["batch"][0]

    def bindings(clause: Any) -> tuple[binding.RowIndex, list[binding.RowProblem]]:
        found = conn.execute(
            select(t.terminal_id, t.seq, t.ts, t.details)
            .where(clause)
            .order_by(t.terminal_id, t.seq)
        )
        return binding.index_of((str(a), int(b), str(c), str(d)) for a, b, c, d in found)

    # The batch's own rows against the events about the batch; the pinned recipe version
    # against the events about it (which also supersede earlier versions: only a binding of a
    # row that is gone is a deleted row there).
    index, problems = bindings(scope_of(conn, rows).clause())
    own = {table: items for table, items in rows.items() if table != RECIPE}
    problems += compare_rows(index, own)
    pinned = f"{head['recipe_id']}/{head['recipe_version']}"
    recipe_index, unreadable = bindings(and_(t.entity_type == RECIPE, t.entity_id == pinned))
    problems += unreadable
    if not rows[RECIPE]:
        problems.append(
            binding.RowProblem(
                "row_deleted",
                RECIPE,
                pinned,
                None,
                None,
                f"the recipe_version row of {pinned}, which the batch runs, is missing or was"
                " changed to another recipe",
            )
        )

    def exists(table: str, key: str) -> bool:
        return binding.select_row(conn, table, key) is not None

    return problems + compare_rows(recipe_index, {RECIPE: rows[RECIPE]}, exists)


def ensure_bound(conn: Connection, batch_id: str) -> None:
    """Raise :class:`RecordMismatch` unless the record of ``batch_id`` matches its trail."""
    problems = check_batch_rows(conn, batch_id)
    if problems:
        raise RecordMismatch(batch_id, problems)
