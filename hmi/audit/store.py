"""Reading the audit trail back: rows for verification, filtered queries, trusted keys."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Select, and_, func, or_, select
from sqlalchemy.exc import SQLAlchemyError

from hmi.audit import binding, canonical
from hmi.audit.anchors import AgainstFile, check_against
from hmi.audit.checkpoint import Checkpoint, WitnessFile, make_checkpoint
from hmi.audit.keys import KeyFileError, PublicKey, Signer
from hmi.audit.tables import audit_event, audit_key
from hmi.audit.verify import (
    ROW_FIELDS,
    BoundEvent,
    Kind,
    Row,
    VerifyReport,
    collection_paused,
    default_workers,
    verify_rows,
    verify_sqlite_file,
)
from hmi.db import DatabaseError, describe_db_error, read_only


def _rows_query(
    terminal: str | None,
    from_seq: dict[str, int] | None,
    ts_from: str | None,
    ts_to: str | None,
) -> Select[Any]:
    columns = [audit_event.c[name] for name in ROW_FIELDS]
    query = select(*columns).order_by(
        audit_event.c.terminal_id, audit_event.c.seq, audit_event.c.id
    )
    if terminal is not None:
        query = query.where(audit_event.c.terminal_id == terminal)
    if ts_from is not None:
        query = query.where(audit_event.c.ts >= ts_from)
    if ts_to is not None:
        query = query.where(audit_event.c.ts <= ts_to)
    if from_seq:
        anchored = [
            and_(audit_event.c.terminal_id == name, audit_event.c.seq >= seq)
            for name, seq in from_seq.items()
        ]
        others = audit_event.c.terminal_id.not_in(list(from_seq))
        query = query.where(or_(others, *anchored))
    return query


def iter_rows(
    engine: Engine,
    *,
    terminal: str | None = None,
    from_seq: dict[str, int] | None = None,
    ts_from: str | None = None,
    ts_to: str | None = None,
) -> Iterator[Row]:
    """Event rows in chain order (terminal, seq, storage id), streamed in batches."""
    query = _rows_query(terminal, from_seq, ts_from, ts_to)
    try:
        with read_only(engine) as conn:
            for row in conn.execute(query).yield_per(2500):
                yield tuple(row)
    except SQLAlchemyError as exc:
        raise DatabaseError(describe_db_error(exc)) from exc


def load_rows(
    engine: Engine,
    *,
    terminal: str | None = None,
    from_seq: dict[str, int] | None = None,
    ts_from: str | None = None,
    ts_to: str | None = None,
) -> list[Row]:
    """Event rows in chain order, as the verifier and the exports take them."""
    return list(
        iter_rows(engine, terminal=terminal, from_seq=from_seq, ts_from=ts_from, ts_to=ts_to)
    )


def trusted_keys(paths: Sequence[Path]) -> dict[str, PublicKey]:
    """Public keys from PEM files (the terminal's exported key and any site-trusted keys)."""
    keys: dict[str, PublicKey] = {}
    for path in paths:
        if path.is_dir():
            for child in sorted(path.glob("*.pub")) + sorted(path.glob("*.pem")):
                key = PublicKey.from_pem_file(child)
                keys[key.key_id] = key
        elif path.exists():
            key = PublicKey.from_pem_file(path)
            keys[key.key_id] = key
        else:
            raise KeyFileError(f"trusted public key {path} does not exist")
    return keys


def registered_keys(conn: Connection, key_ids: Iterable[str]) -> dict[str, PublicKey]:
    """The public keys the site database registered under these key ids (every terminal's key
    is registered when the terminal joins): what a copy carries so that it can be checked with
    the keys it holds, each to be compared with the published fingerprints."""
    wanted = sorted(set(key_ids))
    if not wanted:
        return {}
    rows = conn.execute(
        select(audit_key.c.key_id, audit_key.c.public_key).where(audit_key.c.key_id.in_(wanted))
    )
    return {str(k): PublicKey.from_raw(bytes.fromhex(str(raw))) for k, raw in rows}


STATE_TAG = b"HMI-AUDIT-VERIFY-STATE-v1\x00"


@dataclass
class VerifyState:
    """Last verified checkpoint per terminal, for incremental verification.

    The file is signed by the terminal that verified (a domain of its own, so a checkpoint
    signature cannot stand in for it): an edited or substituted state file is ignored and the
    next run is a full one."""

    path: Path
    signer: Signer | None = None

    def load(self, trusted: dict[str, PublicKey]) -> dict[str, Checkpoint]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            body = data["anchors"]
            key = trusted.get(str(data["key_id"]))
            signature = bytes.fromhex(str(data["signature"]))
            if key is None or not key.verify(
                signature, STATE_TAG + canonical.canonical_bytes(body)
            ):
                return {}
            anchors = {t: Checkpoint.from_json(cp) for t, cp in body.items()}
        except (OSError, ValueError, KeyError, TypeError):
            return {}
        return {t: cp for t, cp in anchors.items() if cp.signature_valid(trusted.get(cp.key_id))}

    def save(self, anchors: dict[str, Checkpoint]) -> None:
        if self.signer is None:
            return  # only a terminal that can sign keeps a state
        body = {t: cp.to_json() for t, cp in anchors.items()}
        signed = {
            "anchors": body,
            "key_id": self.signer.key_id,
            "signature": self.signer.sign(STATE_TAG + canonical.canonical_bytes(body)).hex(),
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(signed, indent=1), encoding="utf-8")
        os.replace(tmp, self.path)


_PARALLEL_FROM = 8000


def _sqlite_file(engine: Engine) -> str | None:
    url = engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.query:
        return None
    return url.database if url.database != ":memory:" else None


def _id_range(engine: Engine, anchors: dict[str, Checkpoint]) -> tuple[int, int] | None:
    """Storage ids to read: everything, or from the earliest anchored row on."""
    with read_only(engine) as conn:
        low, high = conn.execute(
            select(func.min(audit_event.c.id), func.max(audit_event.c.id))
        ).one()
        if low is None:
            return None
        for name, point in anchors.items():
            anchored = conn.execute(
                select(audit_event.c.id).where(
                    audit_event.c.terminal_id == name, audit_event.c.seq == point.seq
                )
            ).scalar()
            if anchored is not None:
                low = max(low, int(anchored)) if len(anchors) == 1 else low
    return int(low), int(high)


def _recheck_witnessed_positions(
    engine: Engine,
    report: VerifyReport,
    checkpoints: Sequence[Checkpoint],
    anchors: dict[str, Checkpoint],
) -> None:
    """Incremental runs still compare every witnessed position before the anchor (index
    look-ups only), so rewriting verified history is caught without re-reading it all."""
    earlier = [
        cp for cp in checkpoints if cp.terminal in anchors and cp.seq < anchors[cp.terminal].seq
    ]
    if not earlier:
        return
    with read_only(engine) as conn:
        for point in earlier:
            found = (
                conn.execute(
                    select(audit_event.c.row_hash).where(
                        audit_event.c.terminal_id == point.terminal, audit_event.c.seq == point.seq
                    )
                )
                .scalars()
                .all()
            )
            if found != [point.row_hash]:
                report.add(
                    Kind.FORKED if found else Kind.TRUNCATED,
                    point.terminal,
                    point.seq,
                    f"row differs from the one witnessed at {point.ts} (history rewritten)"
                    if found
                    else f"the row witnessed at {point.ts} is missing",
                )


def _verify_rows_of(
    engine: Engine,
    report: VerifyReport,
    rows_report: VerifyReport,
    trusted: dict[str, PublicKey],
    checkpoints: list[Checkpoint],
    anchors: dict[str, Checkpoint],
    terminal: str | None,
    workers: int | None,
) -> None:
    """The chains into ``report`` and, for a whole database, the business-row cross-check
    into ``rows_report``."""
    workers = workers or default_workers()
    sqlite_file = _sqlite_file(engine)
    id_range = _id_range(engine, anchors) if (sqlite_file and workers > 1) else None
    whole = terminal is None
    if sqlite_file and id_range and id_range[1] - id_range[0] >= _PARALLEL_FROM:
        cross = _CrossCheck(engine, id_range[1]) if (whole and not anchors) else None
        # The business-row cross-check runs while the worker processes check the chains
        # (this process mostly waits for them meanwhile), so the cores share both. It runs
        # once they are started, never in a thread beside the fork: a process forked while
        # another of its threads is inside SQLite can hang.
        collected = verify_sqlite_file(
            sqlite_file, id_range, trusted=trusted, checkpoints=checkpoints, anchors=anchors,
            terminal=terminal, workers=workers, report=report,
            meanwhile=(
                cross.read_stored if cross is not None
                else (lambda: check_business_rows(engine, rows_report)) if whole else None
            ),
            on_bound=cross.take if cross is not None else None,
        )  # fmt: skip
        if cross is not None:
            cross.finish(rows_report, collected)
    else:
        rows = iter_rows(
            engine, terminal=terminal, from_seq={t: a.seq for t, a in anchors.items()} or None
        )
        verify_rows(
            rows, trusted=trusted, checkpoints=checkpoints, anchors=anchors, workers=workers,
            report=report, every_chain=whole,
            meanwhile=(lambda: check_business_rows(engine, rows_report)) if whole else None,
        )  # fmt: skip


class _CrossCheck:
    """The business-row cross-check of a whole database, from the row bindings the chain
    workers collect as they read the events with storage ids up to ``last_id``.

    The bindings are indexed as the workers' shares arrive; the stored rows are read
    meanwhile. The two are compared only if no event was added since ``last_id`` was read
    (every business row is written with an event, so both views are then of the same moment);
    otherwise both are read again, together (:func:`check_business_rows`)."""

    def __init__(self, engine: Engine, last_id: int) -> None:
        self.engine = engine
        self.last_id = last_id
        self.bound: list[BoundEvent] = []
        self.index = binding.RowIndex()
        self.unreadable: list[binding.RowProblem] = []
        #: whether the bindings came in (terminal, seq) order, as the one-snapshot check
        #: reads them (one terminal: storage order), so the index built on arrival is that
        #: check's index
        self.in_order = True
        self.stored: dict[tuple[str, str], str] | None = None
        self.problems: list[binding.RowProblem] | None = None

    def take(self, events: list[BoundEvent]) -> None:
        if not events:
            return
        if self.bound and (events[0][0], events[0][1]) < (self.bound[-1][0], self.bound[-1][1]):
            self.in_order = False
        self.bound.extend(events)
        if self.in_order:
            index, unreadable = binding.index_of_bound(events)
            for history in index.by_row.values():
                self.index.add(history)
            self.unreadable += unreadable

    def read_stored(self) -> None:
        with read_only(self.engine) as conn:
            latest = conn.execute(select(func.max(audit_event.c.id))).scalar()
            if latest == self.last_id:
                self.stored = binding.stored_digests(conn)
            else:
                self.problems = binding.check_connection(conn)

    def finish(self, report: VerifyReport, collected: bool) -> None:
        problems = self.problems
        if problems is None and (self.stored is None or not collected):
            with read_only(self.engine) as conn:
                problems = binding.check_connection(conn)
        if problems is None:
            index, problems = (
                (self.index, self.unreadable) if self.in_order
                else binding.index_of_bound(self.bound)
            )  # fmt: skip
            problems = problems + index.compare(self.stored or {})
        _add_row_problems(report, problems)


def _check_witness_coverage(
    report: VerifyReport, checkpoints: Sequence[Checkpoint], witness: WitnessFile
) -> None:
    """A chain with events but no witnessed checkpoint means the witness was lost or replaced:
    without it a deleted tail could not be seen, so that is itself a problem."""
    witnessed: dict[str, int] = {}
    for point in checkpoints:
        witnessed[point.terminal] = max(witnessed.get(point.terminal, 0), point.seq)
    for name, chain in report.chains.items():
        if chain.events and name not in witnessed:
            report.add(
                Kind.WITNESS,
                name,
                None,
                f"no witnessed checkpoint for this chain: the witness file {witness.path} is"
                " missing, empty or was replaced, so a deleted tail could not be detected",
            )
        chain.witnessed_to = witnessed.get(name)


def verify_database(
    engine: Engine,
    *,
    trusted: dict[str, PublicKey],
    witness: WitnessFile | None,
    terminal: str | None = None,
    state: VerifyState | None = None,
    incremental: bool = False,
    workers: int | None = None,
    against: Sequence[AgainstFile] = (),
) -> VerifyReport:
    """Verify every chain in the database (or one terminal's) against the witness file, and
    against every copy held elsewhere (``against``, see :mod:`hmi.audit.anchors`).

    Reads only: nothing is written to the database."""
    report = VerifyReport()
    checkpoints: list[Checkpoint] = []
    if witness is not None:
        found = witness.read_all()
        checkpoints = found.checkpoints
        for line in found.problems:
            report.add(Kind.WITNESS, None, None, line)
        for number in found.torn_lines:
            report.notes.append(
                f"{witness.path}:{number}: an incomplete checkpoint line (the terminal"
                " stopped while writing it); it was not used"
            )
    if terminal is not None:
        checkpoints = [cp for cp in checkpoints if cp.terminal == terminal]
    anchors = state.load(trusted) if (state is not None and incremental) else {}
    if terminal is not None:
        anchors = {t: a for t, a in anchors.items() if t == terminal}
    report.incremental_from = {t: a.seq for t, a in anchors.items()}
    rows_report = VerifyReport()
    try:
        with collection_paused():
            _verify_rows_of(
                engine, report, rows_report, trusted, checkpoints, anchors, terminal, workers
            )
    except SQLAlchemyError as exc:
        raise DatabaseError(describe_db_error(exc)) from exc
    if witness is not None:
        _check_witness_coverage(report, checkpoints, witness)
    if anchors and checkpoints:
        _recheck_witnessed_positions(engine, report, checkpoints, anchors)
    report.problems.extend(rows_report.problems)
    if against:
        check_against(report, against, DatabaseChains(engine), terminal)
    if report.ok and state is not None:
        new_anchors = dict(anchors)
        for point in checkpoints:
            summary = report.chains.get(point.terminal)
            if summary is None or summary.last_seq is None or point.seq > summary.last_seq:
                continue
            current = new_anchors.get(point.terminal)
            if current is None or point.seq > current.seq:
                new_anchors[point.terminal] = point
        with contextlib.suppress(OSError):  # incremental runs then fall back to a full one
            state.save(new_anchors)
    return report


class DatabaseChains:
    """The database's chains as ``--against`` compares them (:class:`anchors.ChainView`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def span(self, terminal: str) -> tuple[int, int] | None:
        t = audit_event.c
        with read_only(self.engine) as conn:
            low, high = conn.execute(
                select(func.min(t.seq), func.max(t.seq)).where(t.terminal_id == terminal)
            ).one()
        return None if high is None else (int(low), int(high))

    def reaches_head(self, terminal: str) -> bool:
        return True  # the database is the chain itself

    def hashes(self, terminal: str, seqs: Sequence[int]) -> dict[int, set[str]]:
        t = audit_event.c
        out: dict[int, set[str]] = {}
        wanted = set(seqs)
        with read_only(self.engine) as conn:
            rows = conn.execute(
                select(t.seq, t.row_hash).where(
                    t.terminal_id == terminal, t.seq >= min(wanted), t.seq <= max(wanted)
                )
            )
            for seq, digest in rows:
                if int(seq) in wanted:
                    out.setdefault(int(seq), set()).add(str(digest))
        return out


def has_chain(engine: Engine, terminal: str) -> bool:
    """Whether the database holds any event of that terminal's chain."""
    try:
        with read_only(engine) as conn:
            found = conn.execute(
                select(audit_event.c.seq).where(audit_event.c.terminal_id == terminal).limit(1)
            ).first()
    except SQLAlchemyError as exc:
        raise DatabaseError(describe_db_error(exc)) from exc
    return found is not None


def chain_heads(
    engine: Engine, signer: Signer, ts: str, terminals: Sequence[str] | None = None
) -> list[Checkpoint]:
    """The head of each terminal's chain (or of those named) now, signed as a checkpoint with
    reason ``export``: what every export carries, so a later verification can prove the chain
    it checks still extends the copy (``hmi audit verify --against``)."""
    t = audit_event.c
    query = select(t.terminal_id, func.max(t.seq)).group_by(t.terminal_id)
    if terminals is not None:
        query = query.where(t.terminal_id.in_(sorted(set(terminals))))
    heads: list[Checkpoint] = []
    try:
        with read_only(engine) as conn:
            for name, seq in sorted(conn.execute(query).all()):
                digest = conn.execute(
                    select(t.row_hash)
                    .where(t.terminal_id == name, t.seq == seq)
                    .order_by(t.id)
                    .limit(1)
                ).scalar_one()
                heads.append(
                    make_checkpoint(signer, str(name), int(seq), str(digest), ts, "export")
                )
    except SQLAlchemyError as exc:
        raise DatabaseError(describe_db_error(exc)) from exc
    return heads


def check_business_rows(engine: Engine, report: VerifyReport) -> None:
    """Every business row against the event that recorded it, and every such event against
    its row (see :mod:`hmi.audit.binding`): a deleted, edited or inserted row is reported."""
    try:
        with read_only(engine) as conn:
            problems = binding.check_connection(conn)
    except SQLAlchemyError as exc:
        raise DatabaseError(describe_db_error(exc)) from exc
    _add_row_problems(report, problems)


def _add_row_problems(report: VerifyReport, problems: Iterable[binding.RowProblem]) -> None:
    for problem in problems:
        report.add(Kind(problem.kind), problem.terminal, problem.seq, problem.message)


@dataclass(frozen=True)
class EventFilter:
    """What ``hmi audit show`` and the audit trail screen filter on."""

    ts_from: str | None = None
    ts_to: str | None = None
    actor_id: str | None = None
    action: str | None = None
    entity_type: str | None = None
    entity_id: str | None = None
    terminal: str | None = None
    limit: int = 500


def query_events(engine: Engine, flt: EventFilter) -> list[dict[str, Any]]:
    """Events matching a filter, newest first.

    The action filter matches a prefix: ``auth.`` or ``auth.login``.
    """
    conditions = []
    t = audit_event.c
    if flt.ts_from:
        conditions.append(t.ts >= flt.ts_from)
    if flt.ts_to:
        conditions.append(t.ts <= flt.ts_to)
    if flt.actor_id:
        conditions.append(t.actor_id == flt.actor_id)
    if flt.action:
        prefix = flt.action.rstrip(".")
        conditions.append((t.action == prefix) | t.action.startswith(prefix + "."))
    if flt.entity_type:
        conditions.append(t.entity_type == flt.entity_type)
    if flt.entity_id:
        conditions.append(t.entity_id == flt.entity_id)
    if flt.terminal:
        conditions.append(t.terminal_id == flt.terminal)
    query = select(audit_event).order_by(t.ts.desc(), t.seq.desc()).limit(flt.limit)
    if conditions:
        query = query.where(and_(*conditions))
    try:
        with read_only(engine) as conn:
            return [dict(row._mapping) for row in conn.execute(query)]
    except SQLAlchemyError as exc:
        raise DatabaseError(describe_db_error(exc)) from exc


def heads_details(heads: Sequence[Checkpoint]) -> dict[str, list[Any]]:
    """The chain heads an export was made from, as its audit event records them."""
    return {point.terminal: [point.seq, point.row_hash] for point in heads}
