"""Storage that fails as a kiosk's disk does: a real file system (a small tmpfs mounted for the
test) that can be filled to the last byte or made read-only, and SQLite's own refusal to write.

Mounting needs the right to mount (the test machines run the suite as root); without it the
fixture fails and says so, it never skips."""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import event

CHUNK = b"\0" * 65536


class Medium:
    """A tmpfs of ``size_mb`` at ``path`` (created), for one test."""

    def __init__(self, path: Path, size_mb: int = 64) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self._mount("-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(path))
        self.filler = path / "filler.bin"

    @staticmethod
    def _mount(*args: str) -> None:
        done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"mount {' '.join(args)} failed ({done.stderr.strip()}): the storage-fault tests"
                " need the right to mount a tmpfs (run the suite as root)"
            )

    def fill(self, database: Path | None = None) -> None:
        """Fill the file system to its last byte. With ``database``, its WAL is checkpointed
        and truncated first, so that the next commit must grow the WAL and finds no space
        (as on a kiosk whose disk filled up between two commits)."""
        if database is not None:
            conn = sqlite3.connect(database, isolation_level=None)
            try:
                busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                assert busy == 0, "the WAL could not be truncated: a transaction is open"
            finally:
                conn.close()
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while True:
                try:
                    os.write(fd, CHUNK)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
            for size in (4096, 512, 1):  # the last partial blocks too
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, b"\0" * size)
        finally:
            os.close(fd)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def read_only(self) -> None:
        """Remount read-only (only possible while no file on it is open for writing)."""
        self._mount("-o", "remount,ro", str(self.path))

    def writable(self) -> None:
        self._mount("-o", "remount,rw", str(self.path))

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True, check=False)


@contextlib.contextmanager
def medium(path: Path, size_mb: int = 64) -> Iterator[Medium]:
    mounted = Medium(path, size_mb)
    try:
        yield mounted
    finally:
        mounted.unmount()


class QueryOnly:
    """SQLite refusing every write of a site's database (``PRAGMA query_only``: it answers
    "attempt to write a readonly database", as for a file the account cannot write) while
    ``on``. Set on each connection as it is opened; switching closes the site's open
    connections, so that the next unit of work opens one in the new state."""

    def __init__(self, site: Any) -> None:
        self.site = site
        self.on = False
        event.listen(site.engine, "connect", self._connect)

    def _connect(self, dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute(f"PRAGMA query_only = {'ON' if self.on else 'OFF'}")

    def switch(self, on: bool) -> None:
        self.on = on
        self.site.audit.close()
        self.site.engine.dispose()

    def remove(self) -> None:
        event.remove(self.site.engine, "connect", self._connect)
