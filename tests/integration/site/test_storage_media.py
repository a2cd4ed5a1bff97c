"""The real ``hmi`` command on a site whose storage fails as a kiosk's does: the site folder on
a read-only file system (a copy on read-only media, a volume the system remounted read-only)
and on a disk full to its last byte. Each on a real tmpfs mounted for the test.

- Read-only: every reading command reads the site as it is (verify says INTACT); a command
  that must record (an export, recorded in the trail) is refused in one sentence naming the
  cause, exit 1, no traceback, no half-written copy; a site whose write-ahead log holds
  changes not yet in the database is refused by name rather than read without them.
- Full, while the kiosk has the database open: the reading commands read; the export is
  refused naming the full disk, nothing is left half-written. With no terminal holding the
  database open SQLite cannot set up to read it, and the reading commands say so. Once space
  is freed the same export works and the trail verifies."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hmi.auth.passwords import Argon2Parameters
from hmi.auth.totp import code_at
from hmi.demo import DemoUser, seed_demo_site
from hmi.site import init_site, open_site
from tests.helpers.media import Medium, medium

HMI = str(Path(sys.executable).parent / "hmi")
CHEAP_ARGON2 = Argon2Parameters(time_cost=1, memory_kib=8, parallelism=1)  # tests only
READING = [
    ["batch", "list"],
    ["batch", "show", "B-0001"],
    ["audit", "show"],
    ["recipes", "list"],
    ["users", "list"],
    ["audit", "verify"],
]


def hmi(
    data: Path, *args: str, answers: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HMI, *args, "--data", str(data)],
        input=None if answers is None else "".join(f"{line}\n" for line in answers),
        capture_output=True, text=True, timeout=120, env={**os.environ},
    )  # fmt: skip


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, DemoUser]]:
    """A demo site (accounts, approved recipes), closed cleanly."""
    data = tmp_path_factory.mktemp("media") / "site"
    init_site(data, terminal_id="KIOSK-01", site_name="Media Site").close()
    site = open_site(data)
    try:
        users = {u.user_id: u for u in seed_demo_site(site, argon2=CHEAP_ARGON2)}
    finally:
        site.close()
    return data, users


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Medium]:
    with medium(tmp_path / "disk", size_mb=32) as mounted:
        yield mounted


def qa_login(users: dict[str, DemoUser]) -> list[str]:
    qa = users["qa"]
    assert qa.totp_secret is not None
    return ["qa", qa.password, code_at(qa.totp_secret, datetime.now(UTC))]


def reads(data: Path) -> None:
    """Every reading command reads the site (``batch show`` of a batch that is not there says
    so), and verify finds it intact."""
    for args in READING:
        result = hmi(data, *args)
        no_traceback(result)
        if args[:2] == ["batch", "show"]:
            assert result.returncode == 2 and "there is no batch B-0001" in result.stderr
        else:
            assert result.returncode == 0, (args, result.stderr)
    assert "INTACT: every hash" in hmi(data, "audit", "verify").stdout
    assert "3 stored recipe version(s)" in hmi(data, "recipes", "list").stdout


def test_a_site_on_a_read_only_file_system_is_read_and_never_written(
    demo: tuple[Path, dict[str, DemoUser]], disk: Medium, tmp_path: Path
) -> None:
    source, users = demo
    data = disk.path / "site"
    shutil.copytree(source, data)
    disk.read_only()
    reads(data)
    out = tmp_path / "trail.bundle"
    refused = hmi(data, "audit", "export", "--out", str(out), answers=qa_login(users))
    no_traceback(refused)
    assert refused.returncode == 1, (refused.stdout, refused.stderr)
    assert "is on a read-only file system" in refused.stderr, refused.stderr
    assert "nothing was done" in refused.stderr
    assert not out.exists()


def test_a_read_only_copy_with_changes_still_in_its_wal_is_refused_by_name(
    demo: tuple[Path, dict[str, DemoUser]], disk: Medium
) -> None:
    source, _users = demo
    live = disk.path / "live"
    shutil.copytree(source, live)
    writer = sqlite3.connect(live / "hmi.db", isolation_level=None)
    try:
        writer.execute("PRAGMA wal_autocheckpoint = 0")
        writer.execute("CREATE TABLE later (x)")  # a change that is only in the WAL
        snapshot = disk.path / "snapshot"  # the folder copied while the writer is open
        shutil.copytree(live, snapshot, ignore=shutil.ignore_patterns("hmi.db-shm"))
    finally:
        writer.close()
    assert (snapshot / "hmi.db-wal").stat().st_size > 0
    disk.read_only()
    for args in (["audit", "show"], ["audit", "verify"]):
        result = hmi(snapshot, *args)
        no_traceback(result)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "read-only file system" in result.stderr and "hmi.db-wal" in result.stderr


def test_a_full_disk_refuses_the_export_by_name_and_loses_nothing(
    demo: tuple[Path, dict[str, DemoUser]], disk: Medium
) -> None:
    source, users = demo
    data = disk.path / "site"
    shutil.copytree(source, data)
    kiosk = sqlite3.connect(data / "hmi.db")  # the kiosk has the database open, as it runs
    try:
        kiosk.execute("SELECT count(*) FROM audit_event").fetchone()
        disk.fill(data / "hmi.db")
        reads(data)
        out = disk.path / "trail.bundle"
        refused = hmi(data, "audit", "export", "--out", str(out), answers=qa_login(users))
        no_traceback(refused)
        assert refused.returncode == 1, (refused.stdout, refused.stderr)
        assert "the disk holding the database is full" in refused.stderr, refused.stderr
        assert not list(disk.path.glob("trail.bundle*"))  # no half-written copy
    finally:
        kiosk.close()
    # no terminal has it open (a site left as a clean close leaves it, without the WAL's
    # shared-memory file): SQLite cannot even set up to read it, and says so
    wal = data / "hmi.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    (data / "hmi.db-shm").unlink(missing_ok=True)
    assert not (source / "hmi.db-shm").exists()  # as the clean close left the demo site
    disk.fill()  # the space the shared-memory file held, taken too
    listed = hmi(data, "batch", "list")
    no_traceback(listed)
    assert listed.returncode == 2, (listed.stdout, listed.stderr)
    assert "the disk holding the database is full" in listed.stderr, listed.stderr
    assert "free space on that disk" in listed.stderr
    disk.free()
    done = hmi(data, "audit", "export", "--out", str(out), answers=qa_login(users))
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert out.is_file()
    reads(data)
    checked = hmi(data, "audit", "verify", "--bundle", str(out))
    assert checked.returncode == 0 and "INTACT" in checked.stdout, checked.stdout
