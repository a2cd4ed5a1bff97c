"""Storage faults at every step of a whole batch (against the bundled simulator and a real
SQLite file): another program holds the database's write lock while the operator acts. Each
action is refused with the truth ("not recorded and did not happen", because nothing was
committed and nothing was sent to the PLC), nothing is left half-recorded, and the same action
done again once the lock is gone completes it exactly once. At the end the trail, the business
rows and the PLC's command log agree.

The lock is taken before the action; a lock that comes after the PLC accepted a command is
tested in test_pending_results.py."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hmi.audit.chain import AuditWriteError
from hmi.audit.store import check_business_rows
from hmi.audit.verify import VerifyReport
from hmi.batch.engine import BatchEngine
from hmi.clock import ManualClock
from hmi.site import Site, init_site, open_site
from tests.integration.batch.support import Driver, verify_chain

BATCH = "B-2026-0730"


@pytest.fixture
def site(site_dir: Path, clock: ManualClock) -> Iterator[Site]:
    """The shared site, but a write waits 200 ms for another writer (the floor), not 5 s."""
    created = init_site(site_dir, terminal_id="KIOSK-01", site_name="Test Site", clock=clock)
    created.close()
    config = site_dir / "hmi.toml"
    text = config.read_text(encoding="utf-8")
    assert "busy_timeout_ms = 5000" in text
    config.write_text(text.replace("busy_timeout_ms = 5000", "busy_timeout_ms = 200"))
    opened = open_site(site_dir, clock=clock)
    yield opened
    opened.close()


class Locked:
    """Another program holding the site database's write lock."""

    def __init__(self, db: Path) -> None:
        self.conn = sqlite3.connect(db, isolation_level=None)
        self.conn.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()


def plc_calls(gateway: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    sent: list[str] = []
    real_call, real_write = gateway.call, gateway.write

    async def call(method: str, *args: Any) -> Any:
        sent.append(method)
        return await real_call(method, *args)

    async def write(tag: str, value: Any) -> Any:
        sent.append(f"write {tag}")
        return await real_write(tag, value)

    monkeypatch.setattr(gateway, "call", call)
    monkeypatch.setattr(gateway, "write", write)
    return sent


async def test_every_step_refused_under_a_write_lock_then_done_once(
    engine: BatchEngine, driver: Driver, gateway: Any, site: Site,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    db = site.data_dir / "hmi.db"
    driver.start(BATCH)
    sent = plc_calls(gateway, monkeypatch)
    done: list[str] = []
    while (current := engine.current_step(BATCH)) is not None:
        step_id = current.step_id
        before = (engine.get(BATCH).current_step, list(sent))
        lock = Locked(db)
        try:
            with pytest.raises(AuditWriteError) as refused:
                await driver.step(BATCH, step_id)
        finally:
            lock.release()
        message = str(refused.value)
        assert "not recorded and did not happen" in message, (step_id, message)
        assert "database is locked" in message, (step_id, message)
        # nothing half-done: the batch did not move, no command was sent or left open
        commands_sent = [c for c in sent[len(before[1]) :] if c in ("start", "discharge")]
        assert commands_sent == [], (step_id, commands_sent)
        assert not [c for c in sent[len(before[1]) :] if c.startswith("write ")], step_id
        assert engine.get(BATCH).current_step == before[0], step_id
        assert engine.open_commands(BATCH) == [], step_id
        await driver.step(BATCH, step_id)  # the same action again, the lock gone
        done.append(step_id)
    assert done[0] == "line-clearance" and done[-1] == "sign-verified"
    assert sent.count("start") == 1 and sent.count("discharge") == 1
    assert sent.count("write speed_setpoint") == 1
    assert sent.count("write blend_time_setpoint") == 1
    assert verify_chain(site).ok
    rows = VerifyReport()
    check_business_rows(site.engine, rows)
    assert rows.ok, rows.problems[:3]
