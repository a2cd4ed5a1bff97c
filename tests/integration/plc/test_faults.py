"""Every fault the simulator can inject, and what the HMI sees: alarms, states, BAD values."""

from __future__ import annotations

import asyncio
import time

import pytest

from hmi.plc import (
    COMM_LOSS_ALARM,
    AsyncuaGateway,
    ConnectionState,
    ConnectionStateChanged,
    PlcAlarmEvent,
    PlcEvent,
    PlcEventStream,
    PlcNotConnected,
    PlcValueRejected,
    TagSpec,
    TagUpdate,
    TagValuesChanged,
)
from plc_sim.model import Fault
from plc_sim.server import SimulatorThread
from tests.integration.plc.support import ClientSite, next_event, wait_for_tag, wait_state


def alarm(code: str, active: bool = True) -> object:
    def match(event: PlcEvent) -> bool:
        return isinstance(event, PlcAlarmEvent) and event.code == code and event.active is active

    return match


def connection(state: ConnectionState) -> object:
    return lambda e: isinstance(e, ConnectionStateChanged) and e.state is state


async def start_blend(gateway: AsyncuaGateway) -> None:
    await gateway.call("reset")
    await wait_state(gateway, "Idle")
    await gateway.write("blend_time_setpoint", 3600.0)
    await gateway.call("start")
    await wait_state(gateway, "Execute")


@pytest.fixture
async def stream(gateway: AsyncuaGateway) -> PlcEventStream:
    return gateway.events()


async def test_over_current_raises_an_alarm_and_aborts(
    gateway: AsyncuaGateway, stream: PlcEventStream
) -> None:
    await start_blend(gateway)
    await gateway.call("inject_fault", "over_current", 0.0)
    raised = await next_event(stream, alarm("MOTOR_OVERCURRENT"))
    assert isinstance(raised, PlcAlarmEvent)
    assert (raised.severity, raised.source) == (900, "plc")
    assert raised.message == "Motor current above the trip limit (active)"
    await wait_for_tag(gateway, "state", lambda v: v == "Aborted")
    assert "MOTOR_OVERCURRENT" in (await gateway.read("active_alarms")).value  # type: ignore[operator]
    await gateway.call("clear_fault", "over_current")
    await gateway.call("clear")
    await next_event(stream, alarm("MOTOR_OVERCURRENT", active=False))
    await wait_state(gateway, "Stopped")


async def test_over_temperature_holds_the_batch_until_it_cools(
    gateway: AsyncuaGateway, stream: PlcEventStream
) -> None:
    await start_blend(gateway)
    await gateway.call("inject_fault", "over_temperature", 0.0)
    raised = await next_event(stream, alarm("TEMP_HIGH"))
    assert isinstance(raised, PlcAlarmEvent) and raised.severity == 700
    await wait_for_tag(gateway, "state", lambda v: v == "Held")
    temperature = gateway.snapshot()["product_temperature"]
    assert temperature.good and temperature.value >= 39.9  # type: ignore[operator]
    await gateway.call("clear_fault", "over_temperature")
    await next_event(stream, alarm("TEMP_HIGH", active=False), timeout=10)
    await gateway.call("unhold")
    await wait_state(gateway, "Execute")


async def test_lid_opened_while_running_trips(
    gateway: AsyncuaGateway, stream: PlcEventStream
) -> None:
    await start_blend(gateway)
    await gateway.call("inject_fault", "lid_open", 0.0)
    raised = await next_event(stream, alarm("LID_OPEN_RUNNING"))
    assert isinstance(raised, PlcAlarmEvent) and raised.severity == 900
    await wait_for_tag(gateway, "lid_closed", lambda v: v is False)
    await wait_state(gateway, "Aborted")


async def test_emergency_stop_aborts_until_released(
    gateway: AsyncuaGateway, stream: PlcEventStream
) -> None:
    await start_blend(gateway)
    await gateway.call("inject_fault", "estop", 0.0)
    raised = await next_event(stream, alarm("ESTOP"))
    assert isinstance(raised, PlcAlarmEvent) and raised.severity == 1000
    await wait_for_tag(gateway, "estop", lambda v: v is True)
    await wait_state(gateway, "Aborted")
    await gateway.call("clear_fault", "estop")
    await next_event(stream, alarm("ESTOP", active=False))
    await gateway.call("clear")
    await wait_state(gateway, "Stopped")


async def test_load_cell_drift_warns_and_fails_the_calibration_check(
    gateway: AsyncuaGateway, stream: PlcEventStream
) -> None:
    await gateway.call("set_mode", "service")
    await gateway.call("inject_fault", "load_cell_drift", 0.0)
    raised = await next_event(stream, alarm("LOADCELL_DRIFT"))
    assert isinstance(raised, PlcAlarmEvent) and raised.severity == 500
    _, measured, passed = await gateway.call("calibration_check")
    assert passed is False and measured > 20.4  # type: ignore[operator]  # drift >= 0.5 kg


async def test_a_failed_load_cell_makes_the_weight_bad_never_a_number(
    gateway: AsyncuaGateway, stream: PlcEventStream
) -> None:
    assert gateway.snapshot()["weight"].good
    await gateway.call("inject_fault", "load_cell_failure", 0.0)
    await next_event(stream, alarm("LOADCELL_FAULT"))
    update = await wait_until_bad(gateway, "weight")
    assert update.value is None and update.reason == "PLC reports BadSensorFailure"
    with pytest.raises(PlcValueRejected, match="BadSensorFailure") as info:
        await gateway.read("weight")
    assert info.value.update is not None and not info.value.update.good
    await gateway.call("clear_fault", "load_cell_failure")
    assert await wait_for_tag(gateway, "weight", lambda v: v is not None) == pytest.approx(
        0, abs=0.1
    )


async def test_values_outside_the_valid_range_are_reported_bad(
    sim: SimulatorThread, client_site: ClientSite
) -> None:
    tags = dict(client_site.settings(sim.endpoint).tags)
    tags["speed"] = TagSpec(path="Blender/Speed", type="float", unit="rpm", low=0, high=5)
    gateway = client_site.gateway(sim.endpoint, tags=tags)
    await gateway.connect()
    stream = gateway.events()
    try:
        await start_blend(gateway)

        def speed_bad(event: PlcEvent) -> bool:
            return (
                isinstance(event, TagValuesChanged)
                and "speed" in event.updates
                and (not event.updates["speed"].good)
            )

        event = await next_event(stream, speed_bad)
        assert isinstance(event, TagValuesChanged)
        assert "above the valid range 0..5" in event.updates["speed"].reason
        with pytest.raises(PlcValueRejected, match="above the valid range"):
            await gateway.read("speed")
    finally:
        await gateway.disconnect()


async def test_frozen_communication_is_detected_within_two_seconds_and_recovers(
    gateway: AsyncuaGateway, stream: PlcEventStream
) -> None:
    await gateway.call("inject_fault", "comm_freeze", 1.6)
    frozen_at = time.monotonic()
    lost = await next_event(stream, connection(ConnectionState.LOST))
    detected_after = time.monotonic() - frozen_at
    assert detected_after <= 2.0
    assert isinstance(lost, ConnectionStateChanged) and "heartbeat" in lost.reason
    comm = await next_event(stream, alarm(COMM_LOSS_ALARM))
    assert isinstance(comm, PlcAlarmEvent) and comm.source == "hmi" and comm.severity == 900
    assert not any(update.good for update in gateway.snapshot().values())
    with pytest.raises(PlcNotConnected):
        await gateway.write("speed_setpoint", 15.0)
    restored = await next_event(stream, connection(ConnectionState.CONNECTED), timeout=8)
    assert isinstance(restored, ConnectionStateChanged)
    assert restored.reason.startswith("connection restored after")
    await next_event(stream, alarm(COMM_LOSS_ALARM, active=False))
    assert all(update.good for update in gateway.snapshot().values())
    assert (await gateway.write("speed_setpoint", 15.0)).value == 15.0


async def test_alarms_missed_while_disconnected_are_resynchronised(
    gateway: AsyncuaGateway, stream: PlcEventStream, sim: SimulatorThread
) -> None:
    await gateway.call("inject_fault", "estop", 0.0)
    await next_event(stream, alarm("ESTOP"))
    await gateway.disconnect()
    await sim.acall(lambda server: server.clear_fault(Fault.ESTOP))
    await sim.acall(lambda server: server.inject_fault(Fault.LOAD_CELL_FAILURE))
    await wait_model(
        sim, lambda: "LOADCELL_FAULT" in [a.code for a in sim.server.model.active_alarms]
    )
    await gateway.connect()
    seen: dict[tuple[str, bool], PlcAlarmEvent] = {}

    def both(event: PlcEvent) -> bool:
        if isinstance(event, PlcAlarmEvent):
            seen[(event.code, event.active)] = event
        return {("ESTOP", False), ("LOADCELL_FAULT", True)} <= seen.keys()

    await next_event(stream, both)
    assert seen[("LOADCELL_FAULT", True)].source == "plc"
    assert gateway.snapshot()["active_alarms"].value == ("LOADCELL_FAULT",)


async def wait_until_bad(gateway: AsyncuaGateway, tag: str, timeout: float = 5.0) -> TagUpdate:
    deadline = time.monotonic() + timeout
    while (update := gateway.snapshot()[tag]).good:
        assert time.monotonic() < deadline, f"{tag} stayed good: {update.value!r}"
        await asyncio.sleep(0.01)
    return update


async def wait_model(sim: SimulatorThread, condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the simulator never reached the expected state"
        await asyncio.sleep(0.02)
