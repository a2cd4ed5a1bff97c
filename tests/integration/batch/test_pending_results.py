"""An action the PLC accepted is never reported as not done, and a command never sent is never
"confirmed" (against the bundled simulator and a real SQLite file, locked by another program).

- Storage locked just after the PLC accepted Start: the operator reads that the blender
  started and its record is pending; the retry records the journaled result first and sends
  nothing again, so the blend runs once.
- A setpoint write whose intent was committed but which was never sent (the terminal stopped
  in between) is ``not_executed`` at recovery, even though the PLC happens to hold that value.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from sqlalchemy import select

from hmi.auth.services import AuthServices
from hmi.batch.engine import BatchEngine
from hmi.batch.errors import ResultNotRecorded
from hmi.batch.journal import JOURNAL_FILE, CommandJournal
from hmi.batch.tables import plc_command
from hmi.db import read_only
from hmi.recipe.service import RecipeService
from hmi.site import Site
from tests.integration.batch.support import (
    Driver,
    audit_actions,
    build_engine,
    retry,
    verify_chain,
)

BATCH = "B-2026-0720"


def commands(site: Site, name: str) -> list[tuple[str | None, str | None]]:
    with read_only(site.engine) as conn:  # a reader, beside another program's write lock
        return [
            (r.result, r.result_detail)
            for r in conn.execute(
                select(plc_command.c.result, plc_command.c.result_detail)
                .where(plc_command.c.batch_id == BATCH, plc_command.c.command == name)
                .order_by(plc_command.c.id)
            )
        ]


def lock_after(
    gateway: Any, site: Site, command: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[str], list[sqlite3.Connection]]:
    """Every PLC method called; and, right after the PLC accepted ``command`` the first time,
    another program takes the database's write lock (released by the test)."""
    sent: list[str] = []
    locker: list[sqlite3.Connection] = []
    real_call = gateway.call

    async def call(method: str, *args: Any) -> Any:
        result = await real_call(method, *args)
        sent.append(method)
        if method == command and not locker:
            conn = sqlite3.connect(site.data_dir / "hmi.db", isolation_level=None)
            conn.execute("BEGIN EXCLUSIVE")
            locker.append(conn)
        return result

    monkeypatch.setattr(gateway, "call", call)
    return sent, locker


def release(locker: list[sqlite3.Connection]) -> None:
    locker[0].execute("ROLLBACK")
    locker[0].close()


async def test_a_start_the_plc_accepted_is_recorded_late_and_never_sent_again(
    engine: BatchEngine, driver: Driver, gateway: Any, site: Site,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    driver.start(BATCH)
    await driver.run(BATCH, stop_after="set-blend")
    sent, locker = lock_after(gateway, site, "start", monkeypatch)
    with pytest.raises(ResultNotRecorded) as refused:
        await engine.start_step(driver.operator(), BATCH, "blend")
    message = str(refused.value)
    assert "PLC start: the PLC accepted it" in message
    assert "records it before anything else is done on this batch" in message
    assert "did not happen" not in message.split("could not be written")[0]
    assert commands(site, "start") == [(None, None)]  # the database holds the intent only
    release(locker)
    current = await engine.start_step(driver.operator(), BATCH, "blend")  # the retry
    assert current.step_id == "blend" and current.status.value == "running"
    [(result, detail)] = commands(site, "start")
    assert result == "ok" and detail is not None
    assert "from the terminal's command journal" in detail
    await retry(lambda: engine.complete_step(driver.operator(), BATCH, "blend", {}), timeout=60)
    assert sent.count("start") == 1  # the blend ran once
    assert [a for a in audit_actions(site, "batch.step.started")]
    assert verify_chain(site).ok


class Died(BaseException):
    """The terminal stopped (a power cut) at this point."""


async def test_a_write_never_sent_is_not_executed_though_the_value_matches(
    driver: Driver, gateway: Any, site: Site, auth: AuthServices, recipes: RecipeService,
    engine: BatchEngine, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    driver.start(BATCH)
    await driver.run(BATCH, stop_after="lid-interlock")
    assert (await gateway.read("speed_setpoint")).value == pytest.approx(12.0)  # as set below

    def stop_here(self: CommandJournal, command_id: int) -> None:
        raise Died

    monkeypatch.setattr(CommandJournal, "sending", stop_here)
    with pytest.raises(Died):
        await engine.complete_step(driver.operator(), BATCH, "set-blend", {})
    monkeypatch.undo()
    assert commands(site, "write") == [(None, None)]
    restarted = build_engine(site, auth, gateway)  # the terminal starts again
    await restarted.recover()
    [(result, detail)] = commands(site, "write")
    assert result == "not_executed", detail
    assert detail is not None and "never sent" in detail and "(it matches)" in detail
    assert (site.data_dir / JOURNAL_FILE).exists()
    assert verify_chain(site).ok


async def test_a_discharge_the_plc_accepted_is_never_sent_twice(
    engine: BatchEngine, driver: Driver, gateway: Any, site: Site,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    driver.start(BATCH)
    await driver.run(BATCH, stop_after="bu-samples")
    sent, locker = lock_after(gateway, site, "discharge", monkeypatch)
    data = {"container_id": "IBC-0042"}
    with pytest.raises(ResultNotRecorded, match="PLC discharge: the PLC accepted it"):
        await engine.complete_step(driver.operator(), BATCH, "discharge", data)
    release(locker)
    await engine.complete_step(driver.operator(), BATCH, "discharge", data)  # the retry
    assert sent.count("discharge") == 1
    [(result, detail)] = commands(site, "discharge")
    assert result == "ok" and "from the terminal's command journal" in (detail or "")
    assert engine.current_step(BATCH) is not None
    assert engine.current_step(BATCH).step_id == "sign-performed"  # type: ignore[union-attr]
    assert verify_chain(site).ok
