"""The PLC's state drives the batch: a PLC that stops the drum (e-stop, over-current, lid open)
holds the batch at once with the PLC's reason; a PLC that lost the run (restart) holds it with a
"PLC lost state" deviation, and Resume restores the PLC first; ``batch.resumed`` is recorded only
once the PLC accepted, and a refusal leaves the batch held with the PLC's reason."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hmi.alarms.service import AlarmService
from hmi.batch.engine import BatchEngine
from hmi.batch.errors import PlcCommandFailed
from hmi.batch.model import BatchStatus, DeviationKind
from hmi.plc.types import ConnectionState
from hmi.site import Site
from plc_sim.model import Fault
from tests.integration.batch.support import (
    TIME_SCALE,
    Driver,
    audit_actions,
    eventually,
    monitoring,
    retry,
    set_model,
    verify_chain,
)

BATCH = "B-2026-0700"
SLOW = 20.0
"""Simulated seconds per second while the test acts during the run (a 45 s blend)."""


async def plc_state(gateway: Any) -> str:
    return str((await gateway.read("state")).value)


@pytest.fixture
async def alarm_feed(alarms: AlarmService, gateway: Any) -> AsyncIterator[None]:
    feed = asyncio.get_running_loop().create_task(alarms.run(gateway))
    try:
        yield
    finally:
        feed.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feed


async def blend_running(engine: BatchEngine, driver: Driver, sim: Any, gateway: Any) -> None:
    driver.start(BATCH)
    await driver.run(BATCH, stop_after="set-blend")
    await set_model(sim, time_scale=SLOW)
    await engine.start_step(driver.operator(), BATCH, "blend")
    assert await plc_state(gateway) in ("Starting", "Execute")


async def until_state(gateway: Any, state: str, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while await plc_state(gateway) != state:
        assert loop.time() < deadline, f"the PLC did not reach {state}"
        await asyncio.sleep(0.02)


def event_ids(site: Site, action: str) -> list[int]:
    from sqlalchemy import select

    from hmi.audit.tables import audit_event

    with site.engine.connect() as conn:
        return [
            int(r[0])
            for r in conn.execute(
                select(audit_event.c.id)
                .where(audit_event.c.action == action)
                .order_by(audit_event.c.id)
            )
        ]


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (Fault.ESTOP, "ESTOP"),
        (Fault.OVER_CURRENT, "MOTOR_OVERCURRENT"),
        (Fault.LID_OPEN, "LID_OPEN_RUNNING"),
    ],
)
async def test_an_alarm_that_stops_the_blender_holds_the_batch_at_once(
    site: Site,
    engine: BatchEngine,
    driver: Driver,
    gateway: Any,
    sim: Any,
    alarm_feed: None,
    fault: Fault,
    code: str,
) -> None:
    await blend_running(engine, driver, sim, gateway)
    with monitoring(engine):
        await sim.acall(lambda server: server.inject_fault(fault))
        held = await eventually(
            lambda: engine.get(BATCH).status is BatchStatus.HELD, timeout=15, what="batch held"
        )
        assert held
        await eventually(
            lambda: any(d.actual == code for d in engine.deviations(BATCH)),
            timeout=15,
            what="alarm deviation",
        )
    info = engine.get(BATCH)
    assert await plc_state(gateway) in ("Aborting", "Aborted")
    assert "the PLC" in (info.hold_reason or "")
    [alarm] = [d for d in engine.deviations(BATCH) if d.kind is DeviationKind.ALARM]
    assert alarm.actual == code and alarm.step_id == "blend"
    held_events = [r for a, _e, r in audit_actions(site, "batch.held")]
    assert held_events and held_events[0] is not None and "PLC" in held_events[0]
    assert verify_chain(site).ok


async def test_resume_after_a_trip_restores_the_plc_and_is_recorded_after_start(
    site: Site,
    engine: BatchEngine,
    driver: Driver,
    gateway: Any,
    sim: Any,
    alarm_feed: None,
) -> None:
    await blend_running(engine, driver, sim, gateway)
    with monitoring(engine):
        await sim.acall(lambda server: server.inject_fault(Fault.ESTOP))
        await eventually(
            lambda: engine.get(BATCH).status is BatchStatus.HELD, timeout=15, what="batch held"
        )
        await eventually(lambda: engine.deviations(BATCH), timeout=15, what="alarm deviation")
        await driver.handle_deviations(BATCH)
        supervisor = driver.people.login("sup1")
        with pytest.raises(PlcCommandFailed, match="emergency stop"):
            await engine.resume(supervisor, BATCH, "checked the drive after the stop")
        assert engine.get(BATCH).status is BatchStatus.HELD  # the PLC refused Clear
        assert "emergency stop" in (engine.get(BATCH).hold_reason or "")
        assert event_ids(site, "batch.resumed") == []
        await sim.acall(lambda server: server.clear_fault(Fault.ESTOP))
        await set_model(sim, time_scale=TIME_SCALE)
        await driver.handle_deviations(BATCH)
        supervisor = driver.people.login("sup1")
        resumed = await engine.resume(supervisor, BATCH, "e-stop released, drive checked")
        assert resumed.status is BatchStatus.RUNNING
        assert await plc_state(gateway) in ("Starting", "Execute", "Completing", "Complete")
        commands = [c.command for c in engine.record(BATCH).plc_commands]
        assert commands[-5:] == ["clear", "reset", "write", "write", "start"]
        [resumed_id] = event_ids(site, "batch.resumed")
        assert max(event_ids(site, "batch.plc.command.result")) < resumed_id
        driver.session = None
        await retry(lambda: engine.complete_step(driver.operator(), BATCH, "blend", {}), timeout=30)
    assert engine.current_step(BATCH).step_id == "stopped"  # type: ignore[union-attr]
    assert verify_chain(site).ok


async def test_plc_restart_during_the_blend_holds_and_resume_restores_the_setpoints(
    site: Site, engine: BatchEngine, driver: Driver, gateway: Any, sim: Any
) -> None:
    await blend_running(engine, driver, sim, gateway)
    with monitoring(engine):

        async def power_cycle(server: Any) -> None:
            await server.reset_simulation()
            server.model.blend_time_setpoint = 120.0  # this PLC powers up with another time

        await sim.acall(power_cycle)
        await eventually(
            lambda: engine.get(BATCH).status is BatchStatus.HELD, timeout=15, what="batch held"
        )
        [lost] = engine.deviations(BATCH)
        assert lost.kind is DeviationKind.PLC_MISMATCH and lost.step_id == "blend"
        assert lost.description.startswith("PLC lost state")
        assert "PLC lost state" in (engine.get(BATCH).hold_reason or "")
        await driver.handle_deviations(BATCH)
        # The power cycle can freeze the heartbeat long enough for the link to be dropped and
        # made again; the supervisor resumes once the screen shows the PLC connected.
        await eventually(
            lambda: gateway.state is ConnectionState.CONNECTED, timeout=30, what="PLC connected"
        )
        supervisor = driver.people.login("sup1")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while True:
            try:
                resumed = await engine.resume(supervisor, BATCH, "PLC back after the power cut")
                break
            except PlcCommandFailed as exc:
                # the link dropped again while the PLC came up: the batch stays held (checked)
                # and the supervisor presses Resume again once the PLC is back
                assert "not connected" in str(exc) and loop.time() < deadline, exc
                assert engine.get(BATCH).status is BatchStatus.HELD
                await eventually(
                    lambda: gateway.state is ConnectionState.CONNECTED, timeout=30,
                    what="PLC connected",
                )  # fmt: skip
        assert resumed.status is BatchStatus.RUNNING
        assert float((await gateway.read("blend_time_setpoint")).value) == 900.0
        assert await plc_state(gateway) in ("Starting", "Execute", "Completing", "Complete")
        [resumed_id] = event_ids(site, "batch.resumed")
        assert max(event_ids(site, "batch.plc.command.result")) < resumed_id
        assert len(engine.deviations(BATCH)) == 1  # the restore is not a second loss
        driver.session = None
        await retry(lambda: engine.complete_step(driver.operator(), BATCH, "blend", {}), timeout=30)
    assert verify_chain(site).ok


async def test_a_refused_unhold_leaves_the_batch_held_with_the_plc_reason(
    site: Site, engine: BatchEngine, driver: Driver, gateway: Any, sim: Any
) -> None:
    await blend_running(engine, driver, sim, gateway)
    with monitoring(engine):
        supervisor = driver.people.login("sup1")
        await engine.hold(supervisor, BATCH, "EQUIPMENT", "unusual noise from the drive")
        await until_state(gateway, "Held")
        await sim.acall(lambda server: server.inject_fault(Fault.LID_OPEN))
        with pytest.raises(PlcCommandFailed):
            await engine.resume(supervisor, BATCH, "drive inspected, noise gone")
        info = engine.get(BATCH)
        assert info.status is BatchStatus.HELD
        assert "lid open" in (info.hold_reason or "")
        assert event_ids(site, "batch.resumed") == []
        refusals = [r for a, _e, r in audit_actions(site, "batch.resume.refused")]
        assert refusals and "lid open" in (refusals[-1] or "")
        assert await plc_state(gateway) == "Held"
        await sim.acall(lambda server: server.clear_fault(Fault.LID_OPEN))
        await set_model(sim, time_scale=TIME_SCALE)
        resumed = await engine.resume(supervisor, BATCH, "lid closed, drive inspected")
        assert resumed.status is BatchStatus.RUNNING
        [resumed_id] = event_ids(site, "batch.resumed")
        assert max(event_ids(site, "batch.plc.command.result")) < resumed_id
    assert verify_chain(site).ok
