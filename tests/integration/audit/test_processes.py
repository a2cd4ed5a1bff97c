"""Real processes: two writers on one chain, and a writer killed with SIGKILL mid-stream."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import text

from hmi.audit.chain import SYSTEM
from hmi.site import Site, open_site
from tests.helpers.audit import verify

WRITER = """
import sys
from pathlib import Path
from hmi.audit.chain import Actor
from hmi.site import open_site

site = open_site(Path(sys.argv[1]))
name, count = sys.argv[2], int(sys.argv[3])
actor = Actor(name, "operator", None)
print("ready", flush=True)
for i in range(count):
    event = site.audit.record_now("test.concurrent", actor, details={"writer": name, "i": i})
    print(event.seq, flush=True)
"""


def _spawn(site_dir: Path, name: str, count: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(site_dir), name, str(count)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path.cwd())},
    )


def test_two_processes_append_without_gap_duplicate_or_fork(site: Site) -> None:
    writers = [_spawn(site.data_dir, name, 150) for name in ("w1", "w2")]
    outputs = [w.communicate(timeout=120)[0].split() for w in writers]
    assert all(w.returncode == 0 for w in writers)
    seqs = [int(s) for out in outputs for s in out if s != "ready"]
    assert len(seqs) == 300 and len(set(seqs)) == 300
    report = verify(site)
    assert report.ok, report.problems
    with site.engine.connect() as conn:
        rows = conn.execute(text("SELECT seq FROM audit_event ORDER BY seq")).scalars().all()
    assert rows == list(range(1, len(rows) + 1))
    assert set(seqs) <= set(rows)


def test_writer_killed_mid_stream_keeps_every_returned_event(site: Site) -> None:
    writer = _spawn(site.data_dir, "victim", 100_000)
    assert writer.stdout is not None
    assert writer.stdout.readline().strip() == "ready"
    acknowledged: list[int] = []
    deadline = time.monotonic() + 60
    while len(acknowledged) < 300 and time.monotonic() < deadline:
        acknowledged.append(int(writer.stdout.readline()))
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=10)
    assert writer.returncode == -signal.SIGKILL
    report = verify(site)
    assert report.ok, report.problems
    with site.engine.connect() as conn:
        stored = set(conn.execute(text("SELECT seq FROM audit_event")).scalars().all())
    assert set(acknowledged) <= stored
    # the site keeps working after the crash (the writer used the real clock, so do we)
    reopened = open_site(site.data_dir)
    reopened.audit.record_now("test.after_crash", SYSTEM)
    assert verify(reopened).ok
    reopened.close()
