"""Verification of audit chains: every hash, link, signature and witnessed checkpoint.

Each problem is reported with its kind and exact sequence number, never just "corrupt".
Signature checks, the expensive part, run on all cores.
"""

from __future__ import annotations

import gc
import hashlib
import os
import re
import sqlite3
import struct
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from multiprocessing import get_context
from typing import Any

import orjson
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from hmi.audit import canonical
from hmi.audit.binding import DETAILS_KEY as BOUND_KEY
from hmi.audit.checkpoint import Checkpoint
from hmi.audit.forms import HEX64, TERMINAL_FORM, TS_FORM, real_day
from hmi.audit.hashing import GENESIS_PREV_HASH, chain_prefix, content_text
from hmi.audit.keys import KeyFileError, PublicKey

#: Column order of an event row as the verifier takes it.
ROW_FIELDS = (
    "terminal_id", "seq", "ts", "actor_id", "actor_role", "session_id", "action",
    "entity_type", "entity_id", "field", "old_value", "new_value", "reason", "meaning",
    "details", "prev_hash", "row_hash", "key_id", "signature",
)  # fmt: skip
_I = {name: index for index, name in enumerate(ROW_FIELDS)}

#: The first event of every chain, which enrols the chain's first key.
GENESIS_ACTION = "audit.chain.started"
#: A key enrolled for a terminal (at ``hmi init``, and at any later change of key).
KEY_ENROLLED = "audit.key.enrolled"
#: The details of a genesis event: exactly these keys (docs/audit-format.md §2).
GENESIS_DETAILS = frozenset(
    {"algorithm", "key_id", "public_key", "software_version", "terminal_id"}
)

Row = tuple[Any, ...]


class Kind(StrEnum):
    """The kinds of problem verification reports."""

    MODIFIED = "modified"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    UNTRUSTED_KEY = "untrusted_key"
    BROKEN_LINK = "broken_link"
    GAP = "gap"
    DUPLICATE = "duplicate"
    TRUNCATED = "truncated"
    FORKED = "forked"
    TIME_BACKWARDS = "time_backwards"
    BAD_GENESIS = "bad_genesis"
    BAD_ENROLMENT = "bad_enrolment"
    UNENROLLED_KEY = "unenrolled_key"
    BAD_CHECKPOINT = "bad_checkpoint"
    FORMAT = "format"
    WITNESS = "witness"
    BUNDLE = "bundle"
    ROW_EDITED = "row_edited"
    ROW_DELETED = "row_deleted"
    ROW_INSERTED = "row_inserted"
    ROW_UNLINKED = "row_unlinked"


@dataclass(frozen=True)
class Problem:
    kind: Kind
    terminal: str | None
    seq: int | None
    message: str

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": str(self.kind),
            "terminal": self.terminal,
            "seq": self.seq,
            "message": self.message,
        }


@dataclass
class ChainSummary:
    terminal: str
    first_seq: int | None = None
    last_seq: int | None = None
    last_hash: str | None = None
    events: int = 0
    checkpoints: int = 0
    key_ids: set[str] = field(default_factory=set)
    witnessed_to: int | None = None


@dataclass
class VerifyReport:
    """The outcome: intact only when ``problems`` is empty and something was checked."""

    problems: list[Problem] = field(default_factory=list)
    chains: dict[str, ChainSummary] = field(default_factory=dict)
    rows_checked: int = 0
    checkpoints_checked: int = 0
    seconds: float = 0.0
    incremental_from: dict[str, int] = field(default_factory=dict)
    #: What the reader should know that is not a problem (e.g. a torn last witness line).
    notes: list[str] = field(default_factory=list)
    #: The keys the verified chains enrolled (key id -> the first chain enrolling it), known
    #: only when every chain was walked from its genesis event (None otherwise).
    site_signers: dict[str, str] | None = None

    def signer_enrolled(self, key_id: str) -> bool:
        """Whether a checkpoint or chain head signed by this (trusted) key may be accepted:
        the key must be one a verified chain enrolled, when that is known."""
        return self.site_signers is None or key_id in self.site_signers

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, kind: Kind, terminal: str | None, seq: int | None, message: str) -> None:
        self.problems.append(Problem(kind, terminal, seq, message))

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "rows_checked": self.rows_checked,
            "checkpoints_checked": self.checkpoints_checked,
            "seconds": round(self.seconds, 3),
            "incremental_from": self.incremental_from,
            "chains": {
                name: {
                    "first_seq": c.first_seq,
                    "last_seq": c.last_seq,
                    "last_hash": c.last_hash,
                    "events": c.events,
                    "checkpoints": c.checkpoints,
                    "witnessed_to": c.witnessed_to,
                    "key_ids": sorted(c.key_ids),
                }
                for name, c in sorted(self.chains.items())
            },
            "problems": [p.to_json() for p in self.problems],
            "notes": list(self.notes),
        }


@contextmanager
def collection_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a chain or a bundle is read and checked.

    Verification creates many thousands of rows, dictionaries and lists that all stay alive
    until the check is over; the collector would walk them again and again for nothing (a
    third of the time of a 2,000-event batch bundle). Reference counting still frees
    everything as usual."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# -- per-row checks (run in worker processes) ------------------------------------------

OK, MODIFIED, BAD_SIG, UNKNOWN_KEY = 0, 1, 2, 3
#: The low bits of a status; the bits above say which stored field is not in the form
#: docs/audit-format.md §2 requires (reported as ``format`` even when hash and signature hold).
STATUS_MASK = 7
F_DETAILS, F_TS, F_PREV_HASH, F_ACTION, F_TERMINAL, F_ACTOR, F_SEQ = (
    8, 16, 32, 64, 128, 256, 512
)  # fmt: skip
FORMAT_PROBLEMS = (
    (F_DETAILS, "details is not the canonical JSON text of an object (docs/audit-format.md §1)"),
    (F_TS, "ts is not a real UTC time written as YYYY-MM-DDTHH:MM:SS.ffffffZ"),
    (F_PREV_HASH, "prev_hash is not 64 lower-case hex characters"),
    (F_ACTION, "action is not a dotted lower-case name"),
    (F_TERMINAL, "terminal_id is not 2-32 characters A-Z, 0-9, '-' or '_'"),
    (F_ACTOR, "actor_id or actor_role is not text"),
    (F_SEQ, "seq is not an integer between 1 and 2^53 - 1"),
)


_DETAILS = _I["details"]
_SEQ, _TS, _KEY_ID, _ROW_HASH, _PREV_HASH, _ACTION = (
    _I["seq"], _I["ts"], _I["key_id"], _I["row_hash"], _I["prev_hash"], _I["action"]
)  # fmt: skip
_U64 = struct.Struct(">Q").pack
_MAX_SEQ = canonical.MAX_SAFE_INTEGER

_ACTION_FORM = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+").fullmatch


def _no_float(value: dict[str, Any]) -> bool:
    """Whether parsed JSON holds only text, integers, booleans, nulls, lists and objects (no
    float, which the canonical form refuses), without recursion."""
    pending: list[Any] = [value]
    while pending:
        container = pending.pop()
        for item in container.values() if type(container) is dict else container:
            kind = type(item)
            if kind is str or kind is int or kind is bool or item is None:
                continue
            if kind is list or kind is dict:
                pending.append(item)
                continue
            return False
    return True


def details_in_form(details: object) -> bool:
    """``details`` is the canonical JSON text of an object, byte for byte (§1): parsing it
    and writing it again canonically gives the same text; no float, no NaN, no duplicate key,
    integers within ±(2^53 − 1)."""
    return details == "{}" or _details_value(details) is not None


def _details_value(details: object) -> dict[str, Any] | None:
    """The object ``details`` holds if it is in canonical form (see :func:`details_in_form`),
    otherwise None."""
    if type(details) is not str:
        return None
    # orjson reads the text and writes it again canonically (the same bytes as the standard
    # encoder, see canonical.encode_plain), refusing an integer beyond ±(2^53 − 1) (strict
    # mode; a longer one is read as a float and written back in another form). What is left
    # is a float, which reads and writes back the same but is never canonical.
    try:
        raw = details.encode("utf-8")
        value = orjson.loads(raw)
        if type(value) is not dict or orjson.dumps(value, option=_CANONICAL) != raw:
            return None
    except (ValueError, TypeError, UnicodeEncodeError, RecursionError):
        return None
    return value if _no_float(value) else None


_CANONICAL = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER


def check_rows(
    rows: Sequence[Row], keys: dict[str, bytes], bound: list[BoundEvent] | None = None
) -> list[int]:
    """Status of each row: its hash matches its content, its stored fields are in canonical
    form, and its signature matches its hash.

    ``bound`` collects the row bindings the events carry (see :func:`bound_event`), for the
    business-row cross-check, from the details parsed here anyway.

    This is the hot path of verification: no dictionary or call per column."""
    sha256 = hashlib.sha256
    fromhex = bytes.fromhex
    ts_form, action_form = TS_FORM, _ACTION_FORM
    prefixes: dict[str, bytes] = {}
    bad_terminals: set[str] = set()
    out: list[int] = []
    append = out.append
    signed: list[tuple[int, bytes, bytes]] = []
    good_actions: set[str] = set()
    for row in rows:
        (
            terminal_id, seq, ts, actor_id, actor_role, session_id, action, entity_type,
            entity_id, field_, old_value, new_value, reason, meaning, details, prev_hash,
            stored_hash, key_id, signature,
        ) = row  # fmt: skip
        try:
            # Formatted in one step from the row; ``details`` is the stored canonical text as
            # it is: what is hashed is exactly what is stored (docs/audit-format.md).
            content = content_text(
                action, actor_id, actor_role, details if type(details) is str else "null",
                entity_id, entity_type, field_, meaning, new_value, old_value, reason,
                session_id, ts,
            )  # fmt: skip
            prefix = prefixes.get(terminal_id)
            if prefix is None:
                prefix = prefixes[terminal_id] = chain_prefix(terminal_id)
                if TERMINAL_FORM(terminal_id) is None:
                    bad_terminals.add(terminal_id)
            prev = fromhex(prev_hash)
            if len(prev) != 32:
                raise ValueError("previous hash must be 32 bytes")
            digest = sha256(prefix + _U64(int(seq)) + prev + content.encode("utf-8")).digest()
        except (ValueError, TypeError, AttributeError, struct.error):
            append(MODIFIED)  # a value of the wrong type or shape cannot be what was hashed
            if bound is not None:
                bound_event(bound, row, None)
            continue
        if digest.hex() != stored_hash:
            append(MODIFIED)
            if bound is not None:
                bound_event(bound, row, None)
            continue
        # The hash holds: now the form of what was hashed (a key holder could sign anything).
        form = 0
        if type(ts) is not str or ts_form(ts) is None or (ts[8:10] > "28" and not real_day(ts)):
            form = F_TS
        if details != "{}":
            value = _details_value(details)
            if value is None:
                form |= F_DETAILS
            if bound is not None and (value is None or BOUND_KEY in value):
                if value is not None and type(seq) is int and type(ts) is str:
                    bound.append((terminal_id, seq, ts, value[BOUND_KEY]))  # most events
                else:
                    bound_event(bound, row, value)
        if prev.hex() != prev_hash:
            form |= F_PREV_HASH
        if action not in good_actions:
            if type(action) is not str or action_form(action) is None:
                form |= F_ACTION
            else:
                good_actions.add(action)  # a few dozen names, each matched once
        if type(seq) is not int or not 0 < seq <= _MAX_SEQ:
            form |= F_SEQ
        if type(actor_id) is not str or type(actor_role) is not str:
            form |= F_ACTOR
        if bad_terminals and terminal_id in bad_terminals:
            form |= F_TERMINAL
        try:
            raw_signature = fromhex(signature)
        except (TypeError, ValueError):
            append(BAD_SIG | form)
            continue
        if len(raw_signature) != 64 or raw_signature.hex() != signature:
            append(BAD_SIG | form)  # only the exact lowercase hex form is the stored signature
            continue
        key = keys.get(key_id)
        if key is None:
            append(UNKNOWN_KEY | form)
            continue
        signed.append((len(out), raw_signature + digest, key))
        append(form)
    # The signatures last, in one tight loop: libsodium's tables stay in the CPU's caches
    # instead of being pushed out by the checks above at every row.
    for at, message, key in signed:
        try:  # libsodium's Ed25519, as in keys.verify_raw, without a call per row around it
            crypto_sign_open(message, key)
        except (BadSignatureError, ValueError):
            out[at] |= BAD_SIG
    return out


#: An event's row bindings as the cross-check reads them: (terminal, seq, ts, the
#: ``bound_rows`` list of its details, or the details text when they could not be read here).
BoundEvent = tuple[str, int, str, Any]
_BOUND_MARKER = f'"{BOUND_KEY}":'


def bound_event(bound: list[BoundEvent], row: Row, value: dict[str, Any] | None) -> None:
    """Note the row bindings of an event row, as ``binding.index_of`` would read them from the
    database: ``value`` is its parsed details (None: not parsed, the text is kept if it may
    hold bindings)."""
    terminal_id, seq, ts, details = row[0], row[_SEQ], row[_TS], row[_DETAILS]
    if value is None:
        details = details if type(details) is str else str(details)
        if _BOUND_MARKER not in details:
            return
        items: Any = details
    else:
        items = value[BOUND_KEY]
    try:
        where = (
            terminal_id if type(terminal_id) is str else str(terminal_id),
            seq if type(seq) is int else int(seq),
            ts if type(ts) is str else str(ts),
        )
    except (TypeError, ValueError):
        return  # a seq that is not a number: the row is reported as modified
    bound.append((*where, items))


def _check_rows_parallel(
    rows: Iterable[Row],
    keys: dict[str, bytes],
    workers: int,
    meanwhile: Callable[[], None] | None = None,
) -> tuple[list[Row], list[int]]:
    """Check rows while they are still being read: chunks go to worker processes as they come.

    ``meanwhile`` runs in this process while the workers check signatures (a bundle's record
    checks, for instance), so the two overlap instead of adding up."""
    if workers <= 1:
        all_rows = list(rows)
        if meanwhile is not None:
            meanwhile()
        return all_rows, check_rows(all_rows, keys)
    all_rows = []
    futures = []
    chunk: list[Row] = []
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork"))
    try:
        for row in rows:
            chunk.append(row)
            if len(chunk) >= _CHUNK:
                futures.append(pool.submit(check_rows, chunk, keys))
                all_rows.extend(chunk)
                chunk = []
        if chunk and not futures:  # small: not worth the processes
            all_rows.extend(chunk)
            if meanwhile is not None:
                meanwhile()
            return all_rows, check_rows(chunk, keys)
        if chunk:
            futures.append(pool.submit(check_rows, chunk, keys))
            all_rows.extend(chunk)
        if meanwhile is not None:
            meanwhile()
        return all_rows, [status for future in futures for status in future.result()]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


_CHUNK = 1000


def default_workers() -> int:
    return max(
        1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )


# -- the chain checks -------------------------------------------------------------------


def verify_rows(
    rows: Iterable[Row],
    *,
    trusted: dict[str, PublicKey],
    checkpoints: Sequence[Checkpoint] = (),
    anchors: dict[str, Checkpoint] | None = None,
    partial: bool = False,
    workers: int | None = None,
    report: VerifyReport | None = None,
    meanwhile: Callable[[], None] | None = None,
    every_chain: bool = True,
) -> VerifyReport:
    """Verify event rows (sorted by terminal, seq) against trusted keys and checkpoints.

    ``anchors`` (incremental mode) maps a terminal to a verified checkpoint: its chain is only
    checked from that row on, and that row must still carry the checkpoint's hash.
    ``partial`` (exported ranges) accepts a chain that does not start at sequence 1.
    """
    started = time.perf_counter()
    report = report or VerifyReport()
    keys = {key_id: key.raw for key_id, key in trusted.items()}
    all_rows, statuses = _check_rows_parallel(rows, keys, workers or default_workers(), meanwhile)
    verify_checked(
        all_rows, statuses, trusted=trusted, checkpoints=checkpoints, anchors=anchors,
        partial=partial, every_chain=every_chain, report=report,
    )  # fmt: skip
    report.seconds += time.perf_counter() - started
    return report


def verify_checked(
    all_rows: Sequence[Row],
    statuses: Sequence[int],
    *,
    trusted: dict[str, PublicKey],
    checkpoints: Sequence[Checkpoint] = (),
    anchors: dict[str, Checkpoint] | None = None,
    partial: bool = False,
    every_chain: bool = True,
    report: VerifyReport,
) -> VerifyReport:
    """The chain checks over rows whose hashes and signatures were already checked."""
    walker = _ChainWalker(trusted, checkpoints, anchors, partial)
    walker.every_chain = every_chain
    walker.rows = len(all_rows)
    walk_of = walker.walk_of
    for row, status in zip(all_rows, statuses, strict=True):
        walk_of(row[0]).feed(row, status)
    return walker.finish(report)


# -- SQLite files: worker processes read their own share of the rows ---------------------


def _slim(row: Row) -> Row:
    """What the chain checks need of a row already checked (details only for a chain's first
    event and for key enrolments)."""
    return (
        row[0], row[1], row[2], None, None, None, row[6], None, None, None, None, None, None,
        None, row[14] if (row[1] == 1 or row[6] == KEY_ENROLLED) else None, row[15], row[16],
        row[17], None,
    )  # fmt: skip


def _from_anchor(row: Row, from_seq: dict[str, int]) -> bool:
    try:
        return int(row[1]) >= from_seq.get(row[0], 0)
    except (TypeError, ValueError):
        return True  # a seq that is not a number is checked (and reported), never skipped


def _checked_batches(
    path: str, low_id: int, high_id: int, terminal: str | None, from_seq: dict[str, int],
    keys: dict[str, bytes], bound: list[BoundEvent] | None = None,
) -> Iterator[tuple[list[Row], list[int]]]:  # fmt: skip
    """The rows with storage ids in [low_id, high_id], read straight from the file and checked
    a few hundred at a time (so the working set stays in the CPU's caches), with their status."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        sql = f"SELECT {', '.join(ROW_FIELDS)} FROM audit_event WHERE id BETWEEN ? AND ?"
        params: list[Any] = [low_id, high_id]
        if terminal is not None:
            sql += " AND terminal_id = ?"
            params.append(terminal)
        cursor = conn.execute(sql + " ORDER BY id", params)
        while batch := cursor.fetchmany(_READ_BATCH):
            if from_seq:
                batch = [row for row in batch if _from_anchor(row, from_seq)]
            yield batch, check_rows(batch, keys, bound)
    finally:
        conn.close()


def check_sqlite_range(
    path: str, low_id: int, high_id: int, terminal: str | None, from_seq: dict[str, int],
    keys: dict[str, bytes],
) -> list[tuple[Row, int]]:  # fmt: skip
    """Read and check the rows with storage ids in [low_id, high_id]; only what the chain
    checks need of each row is kept, with its status."""
    out: list[tuple[Row, int]] = []
    for batch, statuses in _checked_batches(path, low_id, high_id, terminal, from_seq, keys):
        out.extend(zip(map(_slim, batch), statuses, strict=True))
    return out


_READ_BATCH = 256


@dataclass
class _Share:
    """One terminal's rows within one worker's share: its first row (walked again where the
    shares are joined, against the end of the share before), and the walk of the rest."""

    first: tuple[Row, int]
    rest: _ChainWalk
    rows: int


def walk_sqlite_range(
    path: str, low_id: int, high_id: int, terminal: str | None, from_seq: dict[str, int],
    keys: dict[str, bytes], wanted: dict[str, set[int]], collect: bool = False,
) -> tuple[list[_Share], list[BoundEvent]] | None:  # fmt: skip
    """Check the rows of a share and walk each terminal's chain within it; None when a
    terminal's rows are not in seq order there (the caller then sorts everything).

    With ``collect``, the row bindings of the share's events come back too (see
    :func:`check_rows`)."""
    shares: dict[str, _Share] = {}
    trusted = {key_id: PublicKey(key_id, raw) for key_id, raw in keys.items()}
    bound: list[BoundEvent] | None = [] if collect else None
    batches = _checked_batches(path, low_id, high_id, terminal, from_seq, keys, bound)
    for batch, statuses in batches:
        for row, status in zip(batch, statuses, strict=True):
            name = row[0]
            try:
                seq = int(row[1])
            except (TypeError, ValueError):
                return None
            share = shares.get(name)
            if share is None:
                walk = _ChainWalk(name, trusted, None, True, wanted.get(name, set()))
                walk.prev_seq, walk.prev_hash, walk.prev_ts = seq, row[_ROW_HASH], row[_TS]
                shares[name] = _Share((_slim(row), status), walk, 1)
                continue
            if seq < (share.rest.prev_seq or 0):
                return None
            share.rest.feed(row, status)
            share.rows += 1
    return list(shares.values()), bound or []


def _join(walker: _ChainWalker, shares: list[_Share]) -> bool:
    """Append the shares of the next storage range to the walks; False if out of seq order."""
    for share in shares:
        row, status = share.first
        walk = walker.walk_of(row[0])
        if walk.prev_seq is not None and int(row[1]) < walk.prev_seq:
            return False
        walk.feed(row, status)
        rest = share.rest
        if share.rows > 1:
            walk.problems.extend(rest.problems)
            walk.events += rest.events
            for key_id, seq in rest.key_first.items():
                walk.key_first.setdefault(key_id, seq)
            walk.enrolments.extend(rest.enrolments)
            walk.found.update(rest.found)
            walk.prev_seq, walk.prev_hash = rest.prev_seq, rest.prev_hash
            walk.prev_ts = rest.prev_ts
        walker.rows += share.rows
    return True


def _chain_order(pair: tuple[Row, int]) -> tuple[str, int]:
    return pair[0][0], int(pair[0][1])


def verify_sqlite_file(
    path: str,
    id_range: tuple[int, int],
    *,
    trusted: dict[str, PublicKey],
    checkpoints: Sequence[Checkpoint],
    anchors: dict[str, Checkpoint],
    terminal: str | None,
    workers: int,
    report: VerifyReport,
    meanwhile: Callable[[], None] | None = None,
    on_bound: Callable[[list[BoundEvent]], None] | None = None,
) -> bool:
    """Verify an SQLite database with every core reading and checking its own share; True
    when ``on_bound`` (if given) was handed the row bindings of every event, a share at a
    time in storage order, as the shares arrive.

    ``meanwhile`` runs in this process once the worker processes are started (they are
    forked first: a process forked while another thread of it holds SQLite's or Python's
    locks can hang), while they check their shares."""
    started = time.perf_counter()
    keys = {key_id: key.raw for key_id, key in trusted.items()}
    from_seq = {name: point.seq for name, point in anchors.items()}
    low, high = id_range
    # Many small shares: the last one ends soon after the others, so no core idles long.
    parts = workers * 8
    step = max(1, -(-(high - low + 1) // parts))
    ranges = [(start, min(high, start + step - 1)) for start in range(low, high + 1, step)]
    # Each worker walks the chains of its own share too; here the shares are joined end to
    # end. In an intact database every terminal's rows come in seq order, share after share;
    # if they do not (rows moved or inserted), the rows are read again, sorted and walked here.
    wanted: dict[str, set[int]] = defaultdict(set)
    for point in checkpoints:
        wanted[point.terminal].add(point.seq)
    walker = _ChainWalker(trusted, checkpoints, anchors, False)
    walker.every_chain = terminal is None
    joined = complete = True
    collect, share = on_bound is not None, dict(wanted)
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork")) as pool:
        futures = [
            pool.submit(walk_sqlite_range, path, a, b, terminal, from_seq, keys, share, collect)
            for a, b in ranges
        ]
        if meanwhile is not None:
            meanwhile()
        for future in futures:
            result = future.result()
            if joined and (result is None or not _join(walker, result[0])):
                joined = False
            if result is None:
                complete = False
            elif on_bound is not None and complete:
                on_bound(result[1])
        if not joined:
            again = [
                pool.submit(check_sqlite_range, path, a, b, terminal, from_seq, keys)
                for a, b in ranges
            ]
            pairs = [pair for future in again for pair in future.result()]
    if joined:
        walker.finish(report, sorted_terminals=True)
    else:
        pairs.sort(key=_chain_order)
        verify_checked(
            [pair[0] for pair in pairs], [pair[1] for pair in pairs], trusted=trusted,
            checkpoints=checkpoints, anchors=anchors, every_chain=terminal is None,
            report=report,
        )  # fmt: skip
    report.seconds += time.perf_counter() - started
    return complete and collect


class _ChainWalk:
    """One terminal's chain walked in seq order, a row at a time: links, gaps, duplicates,
    time order, the genesis event, key enrolments, and the stored hash at each witnessed
    position."""

    def __init__(
        self,
        terminal_id: str,
        trusted: dict[str, PublicKey],
        anchor: Checkpoint | None,
        partial: bool,
        wanted: set[int],
    ) -> None:
        self.terminal_id = terminal_id
        self.trusted = trusted
        self.anchor = anchor
        self.partial = partial
        self.wanted = wanted
        self.problems: list[Problem] = []
        self.found: dict[int, str] = {}
        #: every key that signed a row of the chain, with the first seq it signed
        self.key_first: dict[str, int] = {}
        #: every well-formed enrolment the chain holds, in seq order: (seq, the key it
        #: enrols, the key that signed it); the genesis event's signer is its own key
        self.enrolments: list[tuple[int, str, str]] = []
        #: the keys the chain enrolled, with the seq of their enrolment (set on close, from
        #: ``enrolments``, only when the chain was walked from its genesis event)
        self.enrolled: dict[str, int] | None = None
        self.events = 0
        self.first_seq: int | None = None
        self.prev_seq: int | None = None
        self.prev_hash: str | None = None
        self.prev_ts: str | None = None

    @property
    def key_ids(self) -> set[str]:
        return set(self.key_first)

    def add(self, kind: Kind, seq: int | None, message: str) -> None:
        self.problems.append(Problem(kind, self.terminal_id, seq, message))

    def feed(self, row: Row, status: int) -> None:
        seq = int(row[_SEQ])
        key_id = row[_KEY_ID]
        if key_id not in self.key_first:
            self.key_first[key_id] = seq
        if status != OK:
            base = status & STATUS_MASK
            if base == MODIFIED:
                self.add(Kind.MODIFIED, seq, "content does not match its hash")
            elif base == BAD_SIG:
                self.add(Kind.BAD_SIGNATURE, seq, "signature does not match the row hash")
            elif base == UNKNOWN_KEY:
                self.add(
                    Kind.UNKNOWN_KEY, seq,
                    f"signed by key {key_id}, which is not a trusted key",
                )  # fmt: skip
            if status > STATUS_MASK:
                for bit, message in FORMAT_PROBLEMS:
                    if status & bit:
                        self.add(Kind.FORMAT, seq, message)
        prev_seq = self.prev_seq
        if prev_seq is None:
            self.first_seq = seq
            anchor = self.anchor
            if anchor is not None:
                if seq != anchor.seq or row[_ROW_HASH] != anchor.row_hash:
                    self.add(
                        Kind.FORKED, anchor.seq,
                        "the row at the last verified checkpoint no longer matches it",
                    )  # fmt: skip
            elif not self.partial:
                if seq != 1:
                    self.add(Kind.GAP, 1, f"chain starts at seq {seq}, not 1")
                genesis_key = _check_genesis(self.add, row, self.trusted)
                if genesis_key is not None:
                    self.enrolments.append((seq, genesis_key, GENESIS_ACTION))
        else:
            if seq == prev_seq:
                self.add(Kind.DUPLICATE, seq, "sequence number appears twice")
            elif seq > prev_seq + 1:
                missing = f"{prev_seq + 1}" if seq == prev_seq + 2 else f"{prev_seq + 1}–{seq - 1}"
                self.add(Kind.GAP, prev_seq + 1, f"missing seq {missing}")
            if row[_PREV_HASH] != self.prev_hash:
                self.add(
                    Kind.BROKEN_LINK, seq,
                    "previous-hash link does not match the row before it"
                    " (a row was deleted, inserted or moved)",
                )  # fmt: skip
            prev_ts = self.prev_ts
            if prev_ts is not None and row[_TS] < prev_ts:
                self.add(
                    Kind.TIME_BACKWARDS, seq,
                    f"timestamp {row[_TS]} is earlier than the previous {prev_ts}",
                )  # fmt: skip
        if row[_ACTION] == KEY_ENROLLED:
            enrolled = _check_enrolment(self.add, row, self.trusted)
            if enrolled is not None:
                self.enrolments.append((seq, enrolled, str(row[_KEY_ID])))
        self.events += 1
        self.prev_seq, self.prev_hash, self.prev_ts = seq, row[_ROW_HASH], row[_TS]
        if seq in self.wanted:
            self.found[seq] = self.prev_hash

    @property
    def from_genesis(self) -> bool:
        """Whether the walk started at the chain's genesis event, so that every enrolment
        of the chain was seen."""
        return self.first_seq == 1 and not self.partial and self.anchor is None

    def _accept_enrolments(self) -> dict[str, int]:
        """The keys the chain enrolled: its genesis key, then each enrolment signed by a key
        enrolled at an earlier seq. An enrolment signed by the key it enrols, or by any key
        the chain had not enrolled before it, enrols nothing (``bad_enrolment``): a key
        cannot vouch for itself."""
        enrolled: dict[str, int] = {}
        for seq, key_id, signer in sorted(self.enrolments):
            if signer == GENESIS_ACTION:
                enrolled.setdefault(key_id, seq)
                continue
            since = enrolled.get(signer)
            if since is None or since >= seq:
                self.add(
                    Kind.BAD_ENROLMENT, seq,
                    f"key enrolment of {key_id} is signed by "
                    + ("the key it enrols" if signer == key_id else f"key {signer}")
                    + ", which the chain had not enrolled before it (an enrolment must be"
                    " signed by a key the chain enrolled earlier)",
                )  # fmt: skip
                continue
            enrolled.setdefault(key_id, seq)
        return enrolled

    def _check_keys_enrolled(self) -> None:
        """Every trusted key that signed a row was enrolled in this chain at or before its
        first row (checked only on a walk that starts at the genesis event)."""
        if not self.from_genesis:
            return
        self.enrolled = self._accept_enrolments()
        for key_id, first in sorted(self.key_first.items(), key=lambda item: item[1]):
            if key_id not in self.trusted:
                continue  # reported as unknown_key on each of its rows
            at = self.enrolled.get(key_id)
            if at is None:
                self.add(
                    Kind.UNENROLLED_KEY, first,
                    f"signed by key {key_id}, which this chain never enrolled (no"
                    f" {GENESIS_ACTION} or {KEY_ENROLLED} event names it)",
                )  # fmt: skip
            elif at > first:
                self.add(
                    Kind.UNENROLLED_KEY, first,
                    f"signed by key {key_id} before the chain enrolled it at seq {at}",
                )  # fmt: skip

    def close(self, report: VerifyReport) -> None:
        self._check_keys_enrolled()
        report.problems.extend(self.problems)
        summary = report.chains.setdefault(self.terminal_id, ChainSummary(self.terminal_id))
        summary.events += self.events
        summary.key_ids |= self.key_ids
        if self.first_seq is not None:
            summary.first_seq = self.first_seq
            summary.last_seq = self.prev_seq
            summary.last_hash = self.prev_hash


class _ChainWalker:
    """Every chain of a set of rows, fed in arrival order; the report is the same as walking
    the rows sorted by (terminal, seq) as long as each terminal's rows arrive in that order."""

    def __init__(
        self,
        trusted: dict[str, PublicKey],
        checkpoints: Sequence[Checkpoint],
        anchors: dict[str, Checkpoint] | None,
        partial: bool,
    ) -> None:
        self.trusted = trusted
        self.anchors = anchors or {}
        self.partial = partial
        self.by_cp_terminal: dict[str, list[Checkpoint]] = defaultdict(list)
        for point in checkpoints:
            self.by_cp_terminal[point.terminal].append(point)
        self.walks: dict[str, _ChainWalk] = {}
        self.rows = 0
        #: False when only some terminals' chains are walked (``--terminal``)
        self.every_chain = True

    def walk_of(self, terminal_id: str) -> _ChainWalk:
        walk = self.walks.get(terminal_id)
        if walk is None:
            wanted = {point.seq for point in self.by_cp_terminal.get(terminal_id, ())}
            walk = self.walks[terminal_id] = _ChainWalk(
                terminal_id, self.trusted, self.anchors.get(terminal_id), self.partial, wanted
            )
        return walk

    def finish(self, report: VerifyReport, *, sorted_terminals: bool = False) -> VerifyReport:
        report.rows_checked += self.rows
        names = sorted(self.walks) if sorted_terminals else list(self.walks)
        hashes: dict[tuple[str, int], str] = {}
        signers: dict[str, str] | None = {}
        for name in names:
            walk = self.walks[name]
            walk.close(report)
            hashes.update(((name, seq), digest) for seq, digest in walk.found.items())
            if walk.enrolled is None or signers is None:
                signers = None
            else:
                for key_id in walk.enrolled:
                    signers.setdefault(key_id, name)
        report.site_signers = signers if self.walks and self.every_chain else None
        for terminal_id, points in self.by_cp_terminal.items():
            _verify_checkpoints(
                report, terminal_id, points, self.trusted, hashes, self.anchors.get(terminal_id)
            )
        return report


def _stated_key(details: Any, row: Row) -> tuple[str | None, str]:
    """The key an event's details state (genesis or enrolment): its key id, or None and why."""
    if not isinstance(details, dict):
        return None, "its details are not a JSON object"
    if details.get("algorithm") != "ed25519":
        return None, "its algorithm is not ed25519"
    raw = details.get("public_key")
    if not isinstance(raw, str) or HEX64(raw) is None:
        return None, "it does not carry a public key (64 lower-case hex characters)"
    try:
        key_id = PublicKey.from_raw(bytes.fromhex(raw)).key_id
    except (ValueError, KeyFileError):
        return None, "it does not carry a public key"
    if details.get("key_id") != key_id:
        return None, f"its key_id {details.get('key_id')!r} is not the id of its public key"
    if details.get("terminal_id") != row[_I["terminal_id"]]:
        return None, f"it names terminal {details.get('terminal_id')!r}, not its own chain's"
    stated = details.get("public_key_sha256", fingerprint_of(raw))
    if stated != fingerprint_of(raw):
        return None, f"its public_key_sha256 {stated!r} is not the fingerprint of its public key"
    return key_id, ""


def fingerprint_of(public_key_hex: str) -> str:
    """A key's fingerprint (§8): the SHA-256 of its 32 raw bytes, hex."""
    return hashlib.sha256(bytes.fromhex(public_key_hex)).hexdigest()


def _check_genesis(
    add: Callable[[Kind, int | None, str], None], row: Row, trusted: dict[str, PublicKey]
) -> str | None:
    """The first event of a chain; returns the key it enrols when it is well formed."""
    seq = int(row[_I["seq"]])
    if row[_I["prev_hash"]] != GENESIS_PREV_HASH:
        add(Kind.BAD_GENESIS, seq, "first event does not start from the zero hash")
    if row[_I["action"]] != GENESIS_ACTION:
        add(Kind.BAD_GENESIS, seq, f"first event is not {GENESIS_ACTION}")
        return None
    try:
        details = canonical.loads(row[_I["details"]])
    except (ValueError, TypeError):
        details = None
    key_id, why = _stated_key(details, row)
    if key_id is None:
        add(Kind.BAD_GENESIS, seq, f"first event is not well formed: {why}")
        return None
    assert isinstance(details, dict)
    if set(details) != GENESIS_DETAILS or not isinstance(details.get("software_version"), str):
        add(
            Kind.BAD_GENESIS, seq,
            "first event is not well formed: its details must hold exactly algorithm, key_id,"
            " public_key, software_version (text) and terminal_id",
        )  # fmt: skip
    if key_id != row[_KEY_ID]:
        add(
            Kind.BAD_GENESIS, seq,
            f"the chain was started with key {key_id}, but the event is signed by"
            f" {row[_KEY_ID]}",
        )  # fmt: skip
    if key_id not in trusted:
        add(
            Kind.UNTRUSTED_KEY, seq,
            f"the chain was started with key {key_id}, which is not a trusted key",
        )  # fmt: skip
    return key_id


def _check_enrolment(
    add: Callable[[Kind, int | None, str], None], row: Row, trusted: dict[str, PublicKey]
) -> str | None:
    """An ``audit.key.enrolled`` event; returns the key it enrols when it is well formed."""
    seq = int(row[_I["seq"]])
    try:
        details = canonical.loads(row[_I["details"]])
    except (ValueError, TypeError):
        details = None
    key_id, why = _stated_key(details, row)
    if key_id is None:
        add(Kind.BAD_ENROLMENT, seq, f"key enrolment is not well formed: {why}")
        return None
    if key_id not in trusted:
        add(
            Kind.UNTRUSTED_KEY, seq,
            f"the chain enrols key {key_id}, which is not a trusted key",
        )  # fmt: skip
    return key_id


def _verify_checkpoints(
    report: VerifyReport,
    terminal_id: str,
    points: list[Checkpoint],
    trusted: dict[str, PublicKey],
    hashes: dict[tuple[str, int], str],
    anchor: Checkpoint | None,
) -> None:
    summary = report.chains.setdefault(terminal_id, ChainSummary(terminal_id))
    last_seq = summary.last_seq or 0
    first_seq = summary.first_seq or 0
    highest: Checkpoint | None = None
    for point in points:
        report.checkpoints_checked += 1
        summary.checkpoints += 1
        if point.key_id not in trusted:
            report.add(
                Kind.BAD_CHECKPOINT, terminal_id, point.seq,
                f"witnessed checkpoint ({point.ts}) is signed by key {point.key_id}, which is"
                " not a trusted key",
            )  # fmt: skip
            continue
        if not point.signature_valid(trusted.get(point.key_id)):
            report.add(
                Kind.BAD_CHECKPOINT, terminal_id, point.seq,
                f"witnessed checkpoint ({point.ts}) has an invalid signature",
            )  # fmt: skip
            continue
        if not report.signer_enrolled(point.key_id):
            report.add(
                Kind.BAD_CHECKPOINT, terminal_id, point.seq,
                f"witnessed checkpoint ({point.ts}) is signed by key {point.key_id}, which is"
                " trusted but no chain verified here enrolled",
            )  # fmt: skip
            continue
        if point.seq > last_seq:
            if highest is None or point.seq > highest.seq:
                highest = point
            continue
        if anchor is not None and point.seq < first_seq:
            continue  # checked by an earlier verification
        actual = hashes.get((terminal_id, point.seq))
        if actual is not None and actual != point.row_hash:
            report.add(
                Kind.FORKED, terminal_id, point.seq,
                f"row differs from the one witnessed at {point.ts} (history rewritten)",
            )  # fmt: skip
    if highest is not None:
        report.add(
            Kind.TRUNCATED, terminal_id, last_seq + 1,
            f"chain ends at seq {last_seq}, but a checkpoint witnessed seq {highest.seq}"
            f" at {highest.ts}",
        )  # fmt: skip
