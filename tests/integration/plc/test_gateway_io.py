"""Reading, confirmed writing, commands and live values through the gateway, on a real server."""

from __future__ import annotations

import asyncio
import re

import pytest

from hmi.plc import (
    AsyncuaGateway,
    ConnectionState,
    PlcCommandRejected,
    PlcConfigError,
    PlcNotConnected,
    PlcValueRejected,
    PlcWriteNotConfirmed,
    PlcWriteRejected,
    TagSpec,
    TagValuesChanged,
)
from plc_sim.server import SimulatorThread
from tests.integration.batch.support import set_model
from tests.integration.plc.support import TIME_SCALE, ClientSite, wait_for_tag, wait_state


def model_value(sim: SimulatorThread, name: str) -> object:
    return getattr(sim.server.model, name)


async def start_blend(gateway: AsyncuaGateway, blend_time: float = 600.0) -> None:
    await gateway.call("reset")
    await wait_state(gateway, "Idle")
    await gateway.write("blend_time_setpoint", blend_time)
    await gateway.call("start")
    await wait_state(gateway, "Execute")


async def test_connects_securely_with_every_tag_good(gateway: AsyncuaGateway) -> None:
    assert gateway.state is ConnectionState.CONNECTED
    assert gateway.secure
    assert gateway.security_description == "Basic256Sha256 SignAndEncrypt, user hmi"
    snapshot = gateway.snapshot()
    assert set(snapshot) == set(gateway.tags)
    assert all(update.good for update in snapshot.values()), snapshot
    assert snapshot["state"].value == "Stopped"
    assert snapshot["lid_closed"].value is True
    assert snapshot["active_alarms"].value == ()
    assert snapshot["speed"].unit == "rpm"


async def test_read_returns_a_checked_value_with_unit_and_source_time(
    gateway: AsyncuaGateway,
) -> None:
    update = await gateway.read("product_temperature")
    assert update.good and update.unit == "°C"
    assert isinstance(update.value, float) and 20.0 < update.value < 25.0
    assert update.timestamp.tzinfo is not None
    with pytest.raises(PlcConfigError, match="no tag 'sped'"):
        await gateway.read("sped")


async def test_writes_are_confirmed_by_reading_back(
    gateway: AsyncuaGateway, sim: SimulatorThread
) -> None:
    confirmed = await gateway.write("speed_setpoint", 14.5)
    assert confirmed.good and confirmed.value == 14.5
    assert model_value(sim, "speed_setpoint") == 14.5
    revolutions = await gateway.write("revolutions_setpoint", 40)  # a UInt32 node
    assert revolutions.value == 40
    assert model_value(sim, "revolutions_setpoint") == 40


@pytest.mark.parametrize(
    ("tag", "value", "fragment"),
    [
        ("speed_setpoint", 31.0, "above the valid range 0..30"),
        ("speed_setpoint", "fast", "expected a number"),
        ("speed", 5.0, "read-only"),
        ("revolutions_setpoint", 12.5, "expected an integer"),
    ],
)
async def test_invalid_writes_are_refused_before_anything_is_sent(
    gateway: AsyncuaGateway, sim: SimulatorThread, tag: str, value: object, fragment: str
) -> None:
    before = sim.server.model.last_command_result
    with pytest.raises(PlcValueRejected, match=re.escape(fragment)):
        await gateway.write(tag, value)  # type: ignore[arg-type]
    assert model_value(sim, "speed_setpoint") == 12.0
    assert sim.server.model.last_command_result == before  # the PLC heard nothing


async def test_a_write_the_plc_refuses_reports_the_plcs_reason(gateway: AsyncuaGateway) -> None:
    await start_blend(gateway)
    with pytest.raises(PlcWriteRejected) as info:
        await gateway.write("blend_time_setpoint", 60.0)
    assert info.value.status == "BadInvalidState"
    assert "latched while the blend runs" in info.value.detail


async def test_a_write_the_plc_ignores_is_not_confirmed(
    gateway: AsyncuaGateway, sim: SimulatorThread
) -> None:
    await gateway.call("inject_fault", "ignore_writes", 0.0)
    with pytest.raises(PlcWriteNotConfirmed) as info:
        await gateway.write("speed_setpoint", 20.0)
    assert info.value.actual == 12.0
    assert "the PLC holds 12.0" in str(info.value)
    await gateway.call("clear_fault", "ignore_writes")
    assert (await gateway.write("speed_setpoint", 20.0)).value == 20.0
    assert model_value(sim, "speed_setpoint") == 20.0


async def test_commands_run_and_refusals_carry_the_plcs_reason(gateway: AsyncuaGateway) -> None:
    with pytest.raises(PlcCommandRejected) as info:
        await gateway.call("start")
    assert info.value.status == "BadInvalidState"
    assert info.value.reason == "rejected: Start refused in state Stopped"
    assert await gateway.call("reset") == ()
    await wait_state(gateway, "Idle")
    with pytest.raises(PlcValueRejected, match=r"charge\(quantity\)"):
        await gateway.call("charge", 0.0)
    with pytest.raises(PlcValueRejected, match="expects 1 argument"):
        await gateway.call("charge")
    with pytest.raises(PlcCommandRejected, match="open the lid to charge"):
        await gateway.call("charge", 50.0)
    await gateway.call("set_mode", "service")
    reference, measured, passed = await gateway.call("calibration_check")
    assert reference == 20.0 and passed is True
    assert isinstance(measured, float) and abs(measured - 20.0) < 0.1


async def test_live_values_follow_the_running_blend(
    gateway: AsyncuaGateway, sim: SimulatorThread
) -> None:
    speeds: list[object] = []

    async def consume() -> None:
        async with gateway.events() as stream:
            async for event in stream:
                if isinstance(event, TagValuesChanged) and "speed" in event.updates:
                    speeds.append(event.updates["speed"].value)

    consumer = asyncio.create_task(consume())
    # the ramp at real time (about 2.4 s): at the suite's 50x it fits in one publish, and a
    # busy machine's coalescing stream then rightly hands over only its end
    await set_model(sim, time_scale=1.0)
    await start_blend(gateway)
    await wait_for_tag(gateway, "speed", lambda v: v > 11.0)
    await set_model(sim, time_scale=TIME_SCALE)
    await wait_for_tag(gateway, "elapsed_time", lambda v: v > 30.0)
    current = await wait_for_tag(gateway, "motor_current", lambda v: v > 0)
    assert 2.0 < current < 8.0
    consumer.cancel()
    assert speeds[0] == 0.0 and max(speeds) > 11.0  # type: ignore[type-var]
    rising = [v for v in speeds if 0.0 < v < 11.0]  # type: ignore[operator]
    assert rising, speeds  # the ramp itself was published, not just its end


async def test_a_slow_consumer_gets_the_latest_values_not_a_backlog(
    gateway: AsyncuaGateway,
) -> None:
    stream = gateway.events()
    await asyncio.sleep(1.0)  # ~20 heartbeats and many noisy values meanwhile
    events = []
    while (event := stream.get_nowait()) is not None:
        events.append(event)
    stream.close()
    batches = [e for e in events if isinstance(e, TagValuesChanged)]
    assert len(events) <= 3  # state, alarms, one batch: not a backlog of 20 publishes
    latest = batches[-1].updates["heartbeat"]
    assert latest.value == gateway.snapshot()["heartbeat"].value
    assert stream.coalesced >= 10


async def test_nothing_is_sent_once_disconnected_and_values_turn_bad(
    sim: SimulatorThread, client_site: ClientSite
) -> None:
    gateway = client_site.gateway(sim.endpoint)
    await gateway.connect()
    await gateway.disconnect()
    assert gateway.state is ConnectionState.DISCONNECTED
    with pytest.raises(PlcNotConnected, match="not connected"):
        await gateway.write("speed_setpoint", 15.0)
    with pytest.raises(PlcNotConnected):
        await gateway.call("reset")
    assert all(not u.good and u.reason == "disconnected" for u in gateway.snapshot().values())
    assert model_value(sim, "speed_setpoint") == 12.0


async def test_tags_can_be_addressed_by_node_id_with_a_namespace_uri(
    sim: SimulatorThread, client_site: ClientSite
) -> None:
    tags = dict(client_site.settings(sim.endpoint).tags)
    tags["drum_speed"] = TagSpec(
        node="nsu=urn:line-hmi:plc-sim:blender;s=Blender.Speed", type="float", unit="rpm"
    )
    tags["service_level"] = TagSpec(node="i=2267", type="int")  # Server/ServiceLevel, ns 0
    gateway = client_site.gateway(sim.endpoint, tags=tags)
    await gateway.connect()
    try:
        assert (await gateway.read("drum_speed")).value == 0.0
        assert (await gateway.read("service_level")).value == 255  # a Byte node
    finally:
        await gateway.disconnect()


async def test_a_tag_map_that_does_not_match_the_plc_is_refused_by_name(
    sim: SimulatorThread, client_site: ClientSite
) -> None:
    tags = dict(client_site.settings(sim.endpoint).tags)
    tags["state"] = TagSpec(path="Blender/State", type="float")
    tags["torque"] = TagSpec(path="Blender/Torque", type="float")
    gateway = client_site.gateway(sim.endpoint, tags=tags)
    with pytest.raises(PlcConfigError) as info:
        await gateway.connect()
    message = str(info.value)
    assert "tag state: configured as float but the PLC node is String" in message
    assert "tag torque not found at 'Blender/Torque'" in message
    assert gateway.state is ConnectionState.DISCONNECTED
