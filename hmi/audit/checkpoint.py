"""Signed checkpoints of chain heads, appended to a witness file kept outside the database.

A checkpoint says "at time T, terminal X's chain had N events ending in hash H", signed by the
terminal. Truncating the database's tail or rewriting its history is caught by comparing the
chain with every witnessed checkpoint.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hmi.audit import canonical
from hmi.audit.forms import (
    HEX64,
    KEY_ID_FORM,
    REASON_FORM,
    SIGNATURE_FORM,
    TERMINAL_FORM,
    ts_in_form,
)
from hmi.audit.hashing import checkpoint_message
from hmi.audit.keys import PublicKey, Signer


class WitnessError(Exception):
    """The witness file cannot be written or read."""


#: Checkpoint versions (``"v"``) this release reads and writes.
VERSION = 1
VERSIONS = frozenset({VERSION})
FIELDS = frozenset(
    {"key_id", "reason", "row_hash", "seq", "signature", "terminal", "ts", "type", "v"}
)


#: The form of each text field of a checkpoint (§3), and what it must be.
CHECKPOINT_FORMS = (
    ("terminal", TERMINAL_FORM, "a terminal ID"),
    ("row_hash", HEX64, "64 lower-case hex characters"),
    ("key_id", KEY_ID_FORM, "a key id (32 lower-case hex characters)"),
    ("reason", REASON_FORM, "a lower-case word"),
    ("signature", SIGNATURE_FORM, "128 lower-case hex characters"),
)


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement of one chain head."""

    terminal: str
    seq: int
    row_hash: str
    ts: str
    key_id: str
    reason: str
    signature: str

    def body(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "reason": self.reason,
            "row_hash": self.row_hash,
            "seq": self.seq,
            "terminal": self.terminal,
            "ts": self.ts,
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.body(), "signature": self.signature, "type": "checkpoint", "v": VERSION}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Checkpoint:
        """A checkpoint line as the format defines it (docs/audit-format.md §3): exactly its
        keys, ``"type":"checkpoint"``, a known version, text and an integer seq."""
        if not isinstance(data, dict):
            raise ValueError("a checkpoint is a JSON object")
        if data.get("type") != "checkpoint":
            raise ValueError(f"not a checkpoint (type {data.get('type')!r})")
        if data.get("v") not in VERSIONS or type(data.get("v")) is not int:
            raise ValueError(f"unknown checkpoint version {data.get('v')!r}")
        if set(data) != FIELDS:
            raise ValueError(f"a checkpoint has exactly the keys {', '.join(sorted(FIELDS))}")
        seq = data["seq"]
        if type(seq) is not int or not 0 < seq <= canonical.MAX_SAFE_INTEGER:
            raise ValueError(f"seq {seq!r} is not a positive integer")
        texts = [data[name] for name in ("terminal", "row_hash", "ts", "key_id", "reason")]
        if not all(type(value) is str for value in [*texts, data["signature"]]):
            raise ValueError("terminal, row_hash, ts, key_id, reason and signature are text")
        for name, form, what in CHECKPOINT_FORMS:
            if form(data[name]) is None:
                raise ValueError(f"its {name} {data[name][:80]!r} is not {what}")
        if not ts_in_form(data["ts"]):
            raise ValueError(
                f"its ts {data['ts'][:80]!r} is not a UTC time as YYYY-MM-DDTHH:MM:SS.ffffffZ"
            )
        return cls(
            terminal=data["terminal"],
            seq=seq,
            row_hash=data["row_hash"],
            ts=data["ts"],
            key_id=data["key_id"],
            reason=data["reason"],
            signature=data["signature"],
        )

    def signature_valid(self, key: PublicKey | None) -> bool:
        if key is None or key.key_id != self.key_id:
            return False
        try:
            signature = bytes.fromhex(self.signature)
        except ValueError:
            return False
        return key.verify(signature, checkpoint_message(self.body()))


def make_checkpoint(
    signer: Signer, terminal: str, seq: int, row_hash: str, ts: str, reason: str
) -> Checkpoint:
    unsigned = Checkpoint(terminal, seq, row_hash, ts, signer.key_id, reason, "")
    signature = signer.sign(checkpoint_message(unsigned.body())).hex()
    return Checkpoint(terminal, seq, row_hash, ts, signer.key_id, reason, signature)


class WitnessFile:
    """Append-only JSON-lines file of checkpoints, each line one ``write`` then fsync."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def create(self) -> None:
        """Create the file (and its folder) when a site is created; :meth:`append` never does."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
        except OSError as exc:
            raise WitnessError(f"cannot create the witness file {self.path}: {exc}") from exc

    def append(self, checkpoint: Checkpoint) -> None:
        """Append one checkpoint. A missing file (or folder) is an error, never recreated in
        silence: a new file would hide every checkpoint the lost one held."""
        line = (canonical.dumps(checkpoint.to_json()) + "\n").encode("utf-8")
        try:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
            except FileNotFoundError:
                raise WitnessError(
                    f"the witness file {self.path} is missing (removed or moved?); it is not"
                    " recreated: put back its copy, then run hmi audit verify"
                ) from None
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    line = b"\n" + line  # a torn last line (a crash mid-write) stays on its own
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise WitnessError(f"cannot append to the witness file {self.path}: {exc}") from exc

    def read(self) -> tuple[list[Checkpoint], list[str]]:
        """All checkpoints, plus a problem for each unreadable line (never silently skipped).
        A torn last line (see :meth:`read_all`) is left out of both."""
        found = self.read_all()
        return found.checkpoints, found.problems

    def read_all(self) -> WitnessRead:
        """All checkpoints; a problem for each line that is not a checkpoint in canonical form;
        and, apart, a torn last line: one with no newline after it that is not a complete
        checkpoint, which is what a terminal stopped in the middle of a write leaves."""
        return read_checkpoint_lines(self.path)


@dataclass
class WitnessRead:
    checkpoints: list[Checkpoint]
    problems: list[str]
    #: the numbers of the torn lines: incomplete checkpoint lines a stop mid-write left
    torn_lines: list[int] = field(default_factory=list)
    #: the line number of each checkpoint (same order as ``checkpoints``)
    line_numbers: list[int] | None = None


#: How every checkpoint line begins (its keys are in code point order, ``key_id`` first).
TORN_START = '{"key_id":"'


def read_checkpoint_lines(path: Path) -> WitnessRead:
    """Read a file of checkpoint lines (the witness file, or a copy of it kept elsewhere)."""
    if not path.exists():
        return WitnessRead([], [])
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return WitnessRead([], [f"cannot read the witness file {path}: {exc}"])
    checkpoints: list[Checkpoint] = []
    numbers: list[int] = []
    problems: list[str] = []
    torn: list[int] = []
    lines = text.split("\n")
    complete = lines[:-1]  # the part after the last newline is "" unless the end is torn
    for number, line in enumerate(complete, start=1):
        if not line:
            problems.append(f"{path}:{number}: an empty line")
            continue
        try:
            data = json.loads(line)
        except ValueError as exc:
            if line.startswith(TORN_START):
                torn.append(number)  # cut short, then the next append started a new line
            else:
                problems.append(f"{path}:{number}: unreadable checkpoint line ({exc})")
            continue
        try:
            point = Checkpoint.from_json(data)
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(f"{path}:{number}: unreadable checkpoint line ({exc})")
            continue
        if canonical.dumps(point.to_json()) != line:
            problems.append(f"{path}:{number}: checkpoint line not in canonical form")
            continue
        checkpoints.append(point)
        numbers.append(number)
    tail = lines[-1]
    if tail:
        # No newline after it: complete (the newline alone was lost) or torn mid-write.
        try:
            point = Checkpoint.from_json(json.loads(tail))
        except (ValueError, KeyError, TypeError):
            torn.append(len(lines))
        else:
            if canonical.dumps(point.to_json()) == tail:
                checkpoints.append(point)
                numbers.append(len(lines))
            else:
                problems.append(f"{path}:{len(lines)}: checkpoint line not in canonical form")
    return WitnessRead(checkpoints, problems, torn, numbers)
