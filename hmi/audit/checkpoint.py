"""Signed checkpoints of chain heads, appended to a witness file kept outside the database.

A checkpoint says "at time T, terminal X's chain had N events ending in hash H", signed by the
terminal. Truncating the database's tail or rewriting its history is caught by comparing the
chain with every witnessed checkpoint.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hmi.audit import canonical
from hmi.audit.hashing import checkpoint_message
from hmi.audit.keys import PublicKey, Signer


class WitnessError(Exception):
    """The witness file cannot be written or read."""


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
        return {**self.body(), "signature": self.signature, "type": "checkpoint", "v": 1}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Checkpoint:
        return cls(
            terminal=str(data["terminal"]),
            seq=int(data["seq"]),
            row_hash=str(data["row_hash"]),
            ts=str(data["ts"]),
            key_id=str(data["key_id"]),
            reason=str(data["reason"]),
            signature=str(data["signature"]),
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

    def append(self, checkpoint: Checkpoint) -> None:
        line = (canonical.dumps(checkpoint.to_json()) + "\n").encode("utf-8")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise WitnessError(f"cannot append to the witness file {self.path}: {exc}") from exc

    def read(self) -> tuple[list[Checkpoint], list[str]]:
        """All checkpoints, plus a problem for each unreadable line (never silently skipped)."""
        if not self.path.exists():
            return [], []
        checkpoints: list[Checkpoint] = []
        problems: list[str] = []
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            return [], [f"cannot read the witness file {self.path}: {exc}"]
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                checkpoints.append(Checkpoint.from_json(json.loads(line)))
            except (ValueError, KeyError, TypeError) as exc:
                problems.append(f"{self.path}:{number}: unreadable checkpoint line ({exc})")
        return checkpoints, problems
