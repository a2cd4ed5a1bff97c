"""Business rows bound to the signed trail, both ways.

Every row of a table a record is printed from (batches, steps, values, deviations, signatures,
PLC commands, alarms, recipe versions, accounts, training...) is bound to the audit event that
created or changed it: the event's ``details`` carry ``bound_rows``, a list of
``[table, key, previous digest, new digest]`` for every such row the transaction wrote before the
event. The digests chain per row (the first binding has no previous digest), so a verifier can
follow each row's history across terminals without relying on clocks, and compare the last
digest with the row as it is stored now. See ``docs/audit-format.md`` §7.

Capturing is automatic: :func:`install_capture` listens to every INSERT, UPDATE and DELETE the
engine runs on a bound table and notes the row's key (and, for an update or delete, its digest
before the change) on the connection; :class:`hmi.audit.chain.AuditLog` turns the notes into
bindings on the next event of the same transaction, or on a closing ``audit.rows.bound`` event
when rows were written after the last one. A transaction that writes a bound row without going
through the audit log is refused at commit: no business row can change without its event.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson
from sqlalchemy import Connection, Delete, Engine, Insert, Update, event, inspect, select, text

from hmi.audit import canonical

ROW_TAG = b"HMI-AUDIT-ROW-v1\x00"
DETAILS_KEY = "bound_rows"
CLOSING_ACTION = "audit.rows.bound"
BASELINE_ACTION = "audit.rows.baselined"

#: Every bound table and its primary key column: the one list, used by capture and verify.
BOUND_TABLES: dict[str, str] = {
    "alarm": "alarm_id",
    "audit_review": "id",
    "auth_alert": "alert_id",
    "auth_password_history": "id",
    "auth_signature_statement": "user_id",
    "auth_totp": "enrolment_id",
    "auth_user": "user_id",
    "batch": "batch_id",
    "batch_signature": "id",
    "batch_step": "id",
    "batch_value": "id",
    "deviation": "deviation_id",
    "esignature": "signature_id",
    "plc_command": "id",
    "recipe_version": "id",
    "user_training": "id",
}

_PENDING = "hmi_bind_pending"
_RAW_WRITE = re.compile(
    r"^\s*(?:insert\s+(?:or\s+\w+\s+)?into|update|delete\s+from|replace\s+into)\s+[\"`\[]?(\w+)",
    re.IGNORECASE,
)


class UnboundWrite(Exception):
    """A bound table was written outside the audit log's transaction, or in a way that cannot
    be bound (a raw SQL write, a bulk insert without keys)."""


def _value(value: Any) -> canonical.JsonValue:
    """A stored column value as canonical JSON: text and integers as themselves; anything a
    database could hand back otherwise is tagged, so a changed storage type changes the digest."""
    if value is None or type(value) is str:
        return value
    if type(value) is int:
        if -canonical.MAX_SAFE_INTEGER <= value <= canonical.MAX_SAFE_INTEGER:
            return value
        return f"int:{value}"
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return f"float:{value!r}"
    if isinstance(value, bytes | bytearray | memoryview):
        return f"bytes:{bytes(value).hex()}"
    return f"{type(value).__name__}:{value}"


def row_content(table: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """What a row digest covers: the table, the key and every column that is not null."""
    key = BOUND_TABLES[table]
    return {
        "key": str(row[key]),
        "row": {str(name): _value(v) for name, v in row.items() if v is not None},
        "table": table,
    }


def row_digest(table: str, row: Mapping[str, Any]) -> str:
    """SHA-256 over ``ROW_TAG`` and the canonical JSON of :func:`row_content`, as hex."""
    # row_content holds only text, integers within the safe range and nested objects: plain
    # canonical data, so the C encoder writes it as it is.
    body = canonical.encode_plain(row_content(table, row))
    return hashlib.sha256(ROW_TAG + body).hexdigest()


def _digest_columns(table: str, names: Sequence[str], values: Sequence[Any], key: str) -> str:
    """:func:`row_digest` of a row given as a driver tuple (the verifier's hot path)."""
    kinds = set(map(type, values))
    if kinds <= _PLAIN_KINDS:
        # Text, integers and nulls only (most rows): the values are written as they are, and
        # an integer beyond ±(2^53 − 1), which _value tags, makes orjson refuse (strict mode).
        plain = {n: v for n, v in zip(names, values, strict=True) if v is not None}
        try:
            body = orjson.dumps(
                {"key": key, "row": plain, "table": table},
                option=orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER,
            )
        except orjson.JSONEncodeError:
            pass  # a lone surrogate or a long integer: the general path below
        else:
            return hashlib.sha256(ROW_TAG + body).hexdigest()
    plain = {n: _value(v) for n, v in zip(names, values, strict=True) if v is not None}
    body = canonical.encode_plain({"key": key, "row": plain, "table": table})
    return hashlib.sha256(ROW_TAG + body).hexdigest()


_NONE = type(None)
_PLAIN_KINDS = frozenset({str, int, _NONE})


# -- capture ------------------------------------------------------------------------------


@dataclass
class Pending:
    """Rows a transaction wrote that no event has bound yet: key → digest before the change."""

    rows: dict[tuple[str, str], str | None] = field(default_factory=dict)
    through_audit: bool = False

    def note(self, table: str, key: str, before: str | None) -> None:
        self.rows.setdefault((table, key), before)


def pending_of(conn: Connection) -> Pending:
    found = conn.info.get(_PENDING)
    if found is None:
        found = Pending()
        conn.info[_PENDING] = found
    return found


def discard(conn: Connection) -> None:
    conn.info.pop(_PENDING, None)


def _bound_table(clause: Any) -> str | None:
    if isinstance(clause, Insert | Update | Delete):
        name = getattr(clause.table, "name", None)
        if name in BOUND_TABLES:
            return str(name)
    return None


def _rows_where(conn: Connection, clause: Update | Delete) -> list[dict[str, Any]]:
    table = clause.table
    query = select(table)
    if clause.whereclause is not None:
        query = query.where(clause.whereclause)
    return [dict(r) for r in conn.execute(query).mappings()]


def _before_execute(
    conn: Connection, clause: Any, multiparams: Any, params: Any, _options: Any
) -> None:
    name = _bound_table(clause)
    if name is None or isinstance(clause, Insert):
        return
    pending = pending_of(conn)
    for row in _rows_where(conn, clause):
        pending.note(name, str(row[BOUND_TABLES[name]]), row_digest(name, row))


def _after_execute(
    conn: Connection, clause: Any, multiparams: Any, params: Any, _options: Any, result: Any
) -> None:
    name = _bound_table(clause)
    if name is None or not isinstance(clause, Insert):
        return
    key_column = BOUND_TABLES[name]
    pending = pending_of(conn)
    many = [p for p in (multiparams or []) if isinstance(p, Mapping)]
    if len(many) > 1:
        for item in many:
            if key_column not in item:
                raise UnboundWrite(f"a bulk insert into {name} must give each row's {key_column}")
            pending.note(name, str(item[key_column]), None)
        return
    inserted = result.inserted_primary_key
    if inserted is None or inserted[0] is None:
        raise UnboundWrite(f"the key of the row inserted into {name} is not known")
    pending.note(name, str(inserted[0]), None)


def _refuse_raw_write(
    _conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool
) -> None:
    match = _RAW_WRITE.match(statement)
    if match is None or match.group(1).lower() not in BOUND_TABLES:
        return
    compiled = getattr(context, "compiled", None)
    if compiled is not None and _bound_table(getattr(compiled, "statement", None)):
        return  # a Core statement: captured by the execute hooks
    raise UnboundWrite(f"{match.group(1)} is bound to the audit trail: raw SQL writes are refused")


def _on_commit(conn: Connection) -> None:
    pending: Pending | None = conn.info.get(_PENDING)
    if pending is None:
        return
    discard(conn)
    if pending.rows and not pending.through_audit:
        tables = sorted({t for t, _k in pending.rows})
        raise UnboundWrite(
            f"rows of {', '.join(tables)} were written without an audit event: not committed"
        )


def _on_rollback(conn: Connection) -> None:
    discard(conn)


def install_capture(engine: Engine) -> None:
    """Note every write to a bound table on the connection that makes it (see module doc)."""
    if getattr(engine, "_hmi_binding", False):
        return
    event.listen(engine, "before_execute", _before_execute)
    event.listen(engine, "after_execute", _after_execute)
    event.listen(engine, "before_cursor_execute", _refuse_raw_write)
    event.listen(engine, "commit", _on_commit)
    event.listen(engine, "rollback", _on_rollback)
    engine._hmi_binding = True  # type: ignore[attr-defined]


def select_row(conn: Connection, table: str, key: str) -> dict[str, Any] | None:
    column = BOUND_TABLES[table]
    found = (
        conn.execute(text(f"SELECT * FROM {table} WHERE {column} = :k"), {"k": key})
        .mappings()
        .first()
    )
    if found is None and key.lstrip("-").isdigit():
        found = (
            conn.execute(text(f"SELECT * FROM {table} WHERE {column} = :k"), {"k": int(key)})
            .mappings()
            .first()
        )
    return None if found is None else dict(found)


def take_bindings(conn: Connection) -> list[list[str | None]]:
    """The bindings of every row written since the last event of this transaction."""
    pending = pending_of(conn)
    pending.through_audit = True
    if not pending.rows:
        return []
    out: list[list[str | None]] = []
    for (table, key), before in pending.rows.items():
        row = select_row(conn, table, key)
        after = None if row is None else row_digest(table, row)
        if after != before:
            out.append([table, key, before, after])
    pending.rows.clear()
    return out


def baseline(conn: Connection, batch_size: int = 500) -> Iterator[list[list[str | None]]]:
    """Bindings, in chunks, for every stored row no event has bound yet (the rows an earlier
    release wrote, bound at the upgrade). A row that is bound already keeps its history."""
    bound = {row for row in _all_bindings(conn)[0].by_row}
    chunk: list[list[str | None]] = []
    for (table, key), digest in sorted(stored_digests(conn).items()):
        if (table, key) in bound:
            continue
        chunk.append([table, key, None, digest])
        if len(chunk) >= batch_size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# -- verification -------------------------------------------------------------------------


class Binding(NamedTuple):
    """One ``bound_rows`` entry of an event: which row, its digest before and after, and where
    the event is (a tuple: tens of thousands are made per verify)."""

    table: str
    key: str
    before: str | None
    after: str | None
    terminal: str
    seq: int
    ts: str = ""


@dataclass(frozen=True)
class RowProblem:
    """A business row that does not match its trail: ``kind`` is one of ``row_edited``,
    ``row_deleted``, ``row_inserted``, ``row_unlinked``."""

    kind: str
    table: str
    key: str
    terminal: str | None
    seq: int | None
    message: str


def bindings_of(terminal: str, seq: int, details: Mapping[str, Any], ts: str = "") -> list[Binding]:
    """The well-formed bindings an event's details carry (a malformed list raises ValueError)."""
    items = details.get(DETAILS_KEY)
    if items is None:
        return []
    if not isinstance(items, list):
        raise ValueError(f"{DETAILS_KEY} is not a list")
    out = []
    for item in items:
        if type(item) is not list or len(item) != 4:
            raise ValueError(f"malformed {DETAILS_KEY} entry {item!r}")
        table, key, before, after = item
        if (
            table not in BOUND_TABLES
            or type(key) is not str
            or not (before is None or (type(before) is str and len(before) == 64))
            or not (after is None or (type(after) is str and len(after) == 64))
        ):
            raise ValueError(f"malformed {DETAILS_KEY} entry {item!r}")
        out.append(Binding(table, key, before, after, terminal, seq, ts))
    return out


def _where(binding: Binding) -> str:
    return f"{binding.terminal}:{binding.seq}"


class RowIndex:
    """The bindings of a trail, per row, and the comparison with stored rows."""

    def __init__(self) -> None:
        self.by_row: dict[tuple[str, str], list[Binding]] = {}

    def add(self, bindings: Iterable[Binding]) -> None:
        by_row = self.by_row
        for binding in bindings:
            history = by_row.get((binding.table, binding.key))
            if history is None:
                by_row[(binding.table, binding.key)] = [binding]
            else:
                history.append(binding)

    def tip(self, table: str, key: str) -> tuple[Binding | None, list[RowProblem]]:
        """The last binding of a row, and any break in its history.

        The bindings are taken in the order the events were recorded (time, then terminal and
        sequence); each must change the version the one before it left (a row may return to
        an earlier version, so the order decides, not the digests alone). A binding that
        changes another version means the row was changed outside the product before that
        event, or an event that changed it is missing."""
        history = self.by_row.get((table, key))
        if not history:
            return None, []
        if len(history) == 1 and history[0].before is None:
            return history[0], []  # created once, never changed since: most rows
        problems: list[RowProblem] = []
        current: str | None = None
        for binding in sorted(history, key=lambda b: (b.ts, b.terminal, b.seq)):
            if binding.before != current:
                problems.append(
                    RowProblem(
                        "row_unlinked",
                        table,
                        key,
                        binding.terminal,
                        binding.seq,
                        f"{table} row {key}: event {_where(binding)} changed a version of the"
                        " row that no earlier event recorded (the row was changed outside the"
                        " product before it, or an earlier event is missing)",
                    )
                )
            current = binding.after
        last = max(history, key=lambda b: (b.ts, b.terminal, b.seq))
        return last, problems

    def compare(
        self, stored: Mapping[tuple[str, str], str], tables: Sequence[str] | None = None
    ) -> list[RowProblem]:
        """Every stored row against its last binding, and every bound row against storage.

        ``stored`` maps (table, key) to the digest of the row as stored now; ``tables`` limits
        the check to those tables (all bound tables by default)."""
        wanted = set(BOUND_TABLES if tables is None else tables)
        problems: list[RowProblem] = []
        for (table, key), digest in stored.items():
            if table not in wanted:
                continue
            last, broken = self.tip(table, key)
            problems.extend(broken)
            if last is None:
                problems.append(
                    RowProblem(
                        "row_inserted",
                        table,
                        key,
                        None,
                        None,
                        f"{table} row {key} is in the database but no audit event recorded it"
                        " (inserted outside the product)",
                    )
                )
            elif last.after is None:
                problems.append(
                    RowProblem(
                        "row_inserted",
                        table,
                        key,
                        last.terminal,
                        last.seq,
                        f"{table} row {key} is in the database, but event {_where(last)}"
                        " recorded its removal",
                    )
                )
            elif last.after != digest:
                problems.append(
                    RowProblem(
                        "row_edited",
                        table,
                        key,
                        last.terminal,
                        last.seq,
                        f"{table} row {key} differs from what event {_where(last)} recorded"
                        " (edited outside the product)",
                    )
                )
        for table, key in self.by_row:
            if table not in wanted or (table, key) in stored:
                continue
            last, broken = self.tip(table, key)
            problems.extend(broken)
            if last is not None and last.after is not None:
                problems.append(
                    RowProblem(
                        "row_deleted",
                        table,
                        key,
                        last.terminal,
                        last.seq,
                        f"{table} row {key}, recorded by event {_where(last)}, is missing from"
                        " the database (deleted outside the product)",
                    )
                )
        return problems


def stored_digests(
    conn: Connection, tables: Iterable[str] | None = None
) -> dict[tuple[str, str], str]:
    """The digest of every stored row of the bound tables (all of them by default)."""
    out: dict[tuple[str, str], str] = {}
    present = set(inspect(conn).get_table_names())
    for table in sorted(BOUND_TABLES if tables is None else tables):
        if table not in present:
            continue
        key_column = BOUND_TABLES[table]
        result = conn.exec_driver_sql(f"SELECT * FROM {table}")
        names = list(result.keys())
        at = names.index(key_column)
        for values in result.cursor.fetchall() if result.cursor is not None else ():
            key = str(values[at])
            out[(table, key)] = _digest_columns(table, names, values, key)
    return out


def index_of(events: Iterable[tuple[str, int, str, str]]) -> tuple[RowIndex, list[RowProblem]]:
    """The row bindings carried by events given as (terminal, seq, ts, details text)."""
    index = RowIndex()
    problems: list[RowProblem] = []
    marker = f'"{DETAILS_KEY}":'
    loads, add = orjson.loads, index.add
    for terminal, seq, ts, details in events:
        if marker not in details:
            continue
        try:
            parsed = loads(details)
            add(bindings_of(terminal, seq, parsed if type(parsed) is dict else {}, ts))
        except ValueError as exc:
            problems.append(_unreadable(terminal, seq, exc))
    return index, problems


def _unreadable(terminal: str, seq: int, exc: ValueError) -> RowProblem:
    return RowProblem(
        "row_unlinked",
        "audit_event",
        f"{terminal}:{seq}",
        terminal,
        seq,
        f"event {terminal}:{seq} carries unreadable row bindings ({exc})",
    )


def index_of_bound(
    events: Iterable[tuple[str, int, str, Any]],
) -> tuple[RowIndex, list[RowProblem]]:
    """The row bindings as the verifier's chain workers collect them: (terminal, seq, ts, and
    the ``bound_rows`` list already parsed from the details, or the details text), read as
    :func:`index_of` reads them from the database, in the same order."""
    index = RowIndex()
    problems: list[RowProblem] = []
    for terminal, seq, ts, items in sorted(events, key=lambda e: (e[0], e[1])):
        if type(items) is str:
            more, unreadable = index_of([(terminal, seq, ts, items)])
            index.add(b for history in more.by_row.values() for b in history)
            problems += unreadable
            continue
        try:
            index.add(bindings_of(terminal, seq, {DETAILS_KEY: items}, ts))
        except ValueError as exc:
            problems.append(_unreadable(terminal, seq, exc))
    return index, problems


def _all_bindings(conn: Connection) -> tuple[RowIndex, list[RowProblem]]:
    result = conn.execute(
        text(
            "SELECT terminal_id, seq, ts, details FROM audit_event WHERE details LIKE :p"
            " ORDER BY terminal_id, seq"
        ),
        {"p": f'%"{DETAILS_KEY}":%'},
    )
    # Straight from the driver (tens of thousands of rows); a stored value of another type
    # than the schema's (a tampered row) is read as text, as the chain check reads it.
    found = result.cursor.fetchall() if result.cursor is not None else []
    return index_of(
        (a, b, c, d) if type(a) is str and type(b) is int and type(c) is str and type(d) is str
        else (str(a), int(b), str(c), str(d))
        for a, b, c, d in found
    )  # fmt: skip


def check_connection(conn: Connection, tables: Sequence[str] | None = None) -> list[RowProblem]:
    """Every business row of the database against the bindings of every event in it."""
    index, problems = _all_bindings(conn)
    return problems + index.compare(stored_digests(conn, tables), tables)


def readable(details_text: str) -> tuple[str, str | None]:
    """An event's details as a person reads them: the details without the row bindings, and
    the rows it wrote (``deviation B-1-D01, batch_value 17``), or None if it wrote none."""
    try:
        details = orjson.loads(details_text)
    except ValueError:
        return details_text, None
    if not isinstance(details, dict) or DETAILS_KEY not in details:
        return details_text, None
    items = details.pop(DETAILS_KEY)
    rows = ", ".join(
        f"{item[0]} {item[1]}" + (" (removed)" if item[3] is None else "")
        for item in items
        if isinstance(item, list) and len(item) == 4
    ) if isinstance(items, list) else None  # fmt: skip
    return canonical.dumps(details), rows or None
