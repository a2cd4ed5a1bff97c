"""The PLC command journal: what the terminal knows of each command outside the database.

A command is recorded in the database twice, its intent before it is sent and its result
after; between the two the PLC acts. When the result cannot be committed (the database locked
or full, the process stopped) the result must not be lost nor guessed. So, beside the database,
the terminal appends to ``plc-commands.jsonl`` in the site folder, each line written and
fsynced before the step it precedes:

- ``{"command_id": N, "event": "sending"}`` right before the command goes to the PLC;
- ``{"command_id": N, "event": "outcome", "outcome": ..., "detail": ...}`` as soon as the PLC
  answered.

Reconciling an open command (intent without result) then knows whether it was ever sent and,
if the answer came, what it was: a command never sent is ``not_executed`` even when the PLC
happens to hold the value, and a write is ``confirmed_on_recovery`` only when it was sent. The
journal is evidence, never trimmed; the audit trail stays the record (a journaled outcome is
recorded there, saying it came from the journal)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from hmi.batch.errors import BatchError

JOURNAL_FILE = "plc-commands.jsonl"


class JournalError(BatchError):
    """The journal cannot be written: the command is not sent."""


@dataclass(frozen=True)
class Journaled:
    """What the journal holds of one command."""

    sent: bool
    outcome: str | None = None
    detail: str | None = None
    #: Where the outcome was kept, as the record names it.
    source: str = "the terminal's command journal"


#: The source of an outcome neither the database nor the journal could take (full disk): the
#: running terminal holds it until it is recorded; after a restart the PLC's state decides.
IN_MEMORY = "the answer kept in the terminal's memory (the command journal could not be written)"


class CommandJournal:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _append(self, entry: dict[str, object]) -> None:
        line = (json.dumps(entry, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    line = b"\n" + line  # a line cut short by a stop stays on its own
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise JournalError(
                f"cannot write the PLC command journal {self.path}: {exc.strerror or exc}"
            ) from exc

    def create(self) -> None:
        """Make sure the journal exists (when a batch starts, before any of its commands):
        from then on a command it does not name was never sent. A journal missing at
        recovery proves nothing, and the PLC's state decides, as it would without one."""
        try:
            os.close(os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640))
        except OSError as exc:
            raise JournalError(
                f"cannot create the PLC command journal {self.path}: {exc.strerror or exc}"
            ) from exc

    def sending(self, command_id: int) -> None:
        self._append({"command_id": command_id, "event": "sending"})

    def outcome(self, command_id: int, outcome: str, detail: str) -> None:
        self._append(
            {"command_id": command_id, "event": "outcome", "outcome": outcome, "detail": detail}
        )

    def exists(self) -> bool:
        return self.path.exists()

    def read(self) -> dict[int, Journaled]:
        """Every command the journal names; unreadable lines (a torn last line) are skipped."""
        found: dict[int, Journaled] = {}
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return found
        for line in text.splitlines():
            try:
                entry = json.loads(line)
                command_id = int(entry["command_id"])
                event = entry["event"]
            except (ValueError, KeyError, TypeError):
                continue
            if event == "sending":
                found.setdefault(command_id, Journaled(True))
            elif event == "outcome":
                found[command_id] = Journaled(
                    True, str(entry.get("outcome")), str(entry.get("detail") or "")
                )
        return found
