"""Storage faults at every step of a whole batch (against the bundled simulator and a real
SQLite file on a real file system, a tmpfs mounted for the test): while the operator acts,
another program holds the database's write lock, or the disk is full to its last byte, or
SQLite refuses to write (read-only). Each action is refused with the truth ("not recorded and
did not happen", because nothing was committed and nothing was sent to the PLC) and the
cause, nothing is left half-recorded, and the same action done again once the fault is gone
completes it exactly once. At the end the trail, the business rows and the PLC's command log
agree.

The fault comes before the action here. The disk filling up right after the PLC accepted
Start (the journal cannot be written either) is the last test; a lock in that window is
tested in test_pending_results.py."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from hmi.audit.chain import AuditWriteError
from hmi.audit.store import check_business_rows
from hmi.audit.tables import audit_event
from hmi.audit.verify import VerifyReport
from hmi.batch.engine import BatchEngine
from hmi.batch.errors import ResultNotRecorded
from hmi.batch.journal import JOURNAL_FILE, CommandJournal
from hmi.batch.tables import plc_command
from hmi.clock import ManualClock
from hmi.db import read_only
from hmi.site import Site, init_site, open_site
from tests.helpers.media import Medium, QueryOnly, medium
from tests.integration.batch.support import Driver, audit_actions, retry, verify_chain

BATCH = "B-2026-0730"


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Medium]:
    with medium(tmp_path / "disk") as mounted:
        yield mounted


@pytest.fixture
def site_dir(disk: Medium) -> Path:
    """The site folder on its own small file system."""
    return disk.path / "site"


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

    said = "database is locked"

    def __init__(self, site: Site, disk: Medium | None = None) -> None:
        self.db = site.data_dir / "hmi.db"

    def begin(self) -> None:
        self.conn = sqlite3.connect(self.db, isolation_level=None)
        self.conn.execute("BEGIN EXCLUSIVE")

    def end(self) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()


class Full:
    """The disk full to its last byte."""

    said = "disk holding the database is full"

    def __init__(self, site: Site, disk: Medium) -> None:
        self.db, self.disk = site.data_dir / "hmi.db", disk

    def begin(self) -> None:
        self.disk.fill(self.db)

    def end(self) -> None:
        self.disk.free()


class ReadOnly:
    """SQLite refusing to write the database."""

    said = "database is read-only"

    def __init__(self, site: Site, disk: Medium) -> None:
        self.refusal = QueryOnly(site)

    def begin(self) -> None:
        self.refusal.switch(True)

    def end(self) -> None:
        self.refusal.switch(False)


FAULTS: dict[str, Callable[[Site, Medium], Locked | Full | ReadOnly]] = {
    "locked": Locked, "full": Full, "read-only": ReadOnly,
}  # fmt: skip


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


@pytest.mark.parametrize("kind", FAULTS)
async def test_every_step_refused_under_a_storage_fault_then_done_once(
    engine: BatchEngine, driver: Driver, gateway: Any, site: Site, disk: Medium, kind: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    fault = FAULTS[kind](site, disk)
    driver.start(BATCH)
    sent = plc_calls(gateway, monkeypatch)
    done: list[str] = []
    while (current := engine.current_step(BATCH)) is not None:
        step_id = current.step_id
        before = (engine.get(BATCH).current_step, list(sent))
        fault.begin()
        try:
            with pytest.raises(AuditWriteError) as refused:
                await driver.step(BATCH, step_id)
        finally:
            fault.end()
        message = str(refused.value)
        assert "not recorded and did not happen" in message, (step_id, message)
        assert fault.said in message, (step_id, message)
        # nothing half-done: the batch did not move, no command was sent or left open
        commands_sent = [c for c in sent[len(before[1]) :] if c in ("start", "discharge")]
        assert commands_sent == [], (step_id, commands_sent)
        assert not [c for c in sent[len(before[1]) :] if c.startswith("write ")], step_id
        assert engine.get(BATCH).current_step == before[0], step_id
        assert engine.open_commands(BATCH) == [], step_id
        await driver.step(BATCH, step_id)  # the same action again, the fault gone
        done.append(step_id)
    assert done[0] == "line-clearance" and done[-1] == "sign-verified"
    assert sent.count("start") == 1 and sent.count("discharge") == 1
    assert sent.count("write speed_setpoint") == 1
    assert sent.count("write blend_time_setpoint") == 1
    assert verify_chain(site).ok
    rows = VerifyReport()
    check_business_rows(site.engine, rows)
    assert rows.ok, rows.problems[:3]


def open_command_id(engine: BatchEngine) -> int:
    [command] = engine.open_commands(BATCH)
    assert command.command == "start"
    return command.command_id


async def test_an_answer_the_journal_cannot_take_is_kept_until_recorded(
    engine: BatchEngine, driver: Driver, gateway: Any, site: Site,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The journal's file cannot be written (its path taken by a directory) and the database
    is locked when the PLC answers Start: the running terminal keeps the answer and records
    it, saying so, once the database is free; Start is not sent again."""
    driver.start(BATCH)
    await driver.run(BATCH, stop_after="set-blend")
    sent = plc_calls(gateway, monkeypatch)
    path = site.data_dir / JOURNAL_FILE
    lock = Locked(site)
    real_call = gateway.call

    async def call(method: str, *args: Any) -> Any:
        result = await real_call(method, *args)
        if method == "start":
            path.rename(path.with_suffix(".moved"))
            path.mkdir()
            lock.begin()
        return result

    monkeypatch.setattr(gateway, "call", call)
    with pytest.raises(ResultNotRecorded, match="PLC start: the PLC accepted it"):
        await engine.start_step(driver.operator(), BATCH, "blend")
    start_id = open_command_id(engine)
    path.rmdir()
    path.with_suffix(".moved").rename(path)
    with pytest.raises(ResultNotRecorded) as again:
        await engine.start_step(driver.operator(), BATCH, "blend")  # still locked
    assert "PLC start (sent before): the PLC accepted it" in str(again.value)
    assert "nothing was sent again" in str(again.value)
    lock.end()
    assert CommandJournal(path).read()[start_id].outcome is None  # the journal lacks it
    current = await engine.start_step(driver.operator(), BATCH, "blend")
    assert current.step_id == "blend" and current.status.value == "running"
    [(result, detail)] = start_results(site)
    assert result == "ok" and "kept in the terminal's memory" in (detail or ""), detail
    assert sent.count("start") == 1
    with read_only(site.engine) as conn:
        recorded = [
            json.loads(d)
            for d in conn.execute(
                select(audit_event.c.details).where(
                    audit_event.c.action == "batch.plc.command.result",
                    audit_event.c.entity_id == str(start_id),
                )
            ).scalars()
        ]
    assert [(d["from_memory"], d["from_journal"]) for d in recorded] == [(True, False)]
    assert verify_chain(site).ok


def start_results(site: Site) -> list[tuple[str | None, str | None]]:
    with read_only(site.engine) as conn:
        return [
            (r.result, r.result_detail)
            for r in conn.execute(
                select(plc_command.c.result, plc_command.c.result_detail)
                .where(plc_command.c.batch_id == BATCH, plc_command.c.command == "start")
                .order_by(plc_command.c.id)
            )
        ]


@pytest.mark.parametrize("kind", ["full", "read-only"])
async def test_a_start_accepted_as_storage_fails_is_recorded_once_it_is_back(
    engine: BatchEngine, driver: Driver, gateway: Any, site: Site, disk: Medium, kind: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The disk fills up, or the database turns read-only, while the PLC acts on Start: the
    database cannot take the PLC's answer: the operator is told the blender started,
    nothing more is done on the batch until the answer is recorded, and it is recorded from
    what the terminal kept, without sending Start again. (The journal's line may still fit in
    the last block of its file, or not: the record names where the answer came from.)"""
    driver.start(BATCH)
    await driver.run(BATCH, stop_after="set-blend")
    sent = plc_calls(gateway, monkeypatch)
    fault = FAULTS[kind](site, disk)
    real_call = gateway.call

    async def call(method: str, *args: Any) -> Any:
        result = await real_call(method, *args)
        if method == "start":
            fault.begin()  # while the PLC acts
        return result

    monkeypatch.setattr(gateway, "call", call)
    with pytest.raises(ResultNotRecorded) as refused:
        await engine.start_step(driver.operator(), BATCH, "blend")
    message = str(refused.value)
    assert "PLC start: the PLC accepted it" in message
    assert fault.said in message
    assert "did not happen" not in message.split("could not be written")[0]
    assert start_results(site) == [(None, None)]
    start_id = open_command_id(engine)
    with pytest.raises(ResultNotRecorded, match=fault.said):
        await engine.start_step(driver.operator(), BATCH, "blend")  # still failing: refused
    assert sent.count("start") == 1
    fault.end()
    current = await engine.start_step(driver.operator(), BATCH, "blend")
    assert current.step_id == "blend" and current.status.value == "running"
    [(result, detail)] = start_results(site)
    assert result == "ok", detail
    journaled = CommandJournal(site.data_dir / JOURNAL_FILE).read()[start_id]
    source = "command journal:" if journaled.outcome else "kept in the terminal's memory"
    assert detail is not None and "recorded before the next step from" in detail
    assert source in detail, (journaled, detail)
    await retry(lambda: engine.complete_step(driver.operator(), BATCH, "blend", {}), timeout=60)
    assert sent.count("start") == 1  # the blend ran once
    assert audit_actions(site, "batch.step.completed")
    assert verify_chain(site).ok
