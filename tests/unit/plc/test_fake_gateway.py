"""The in-memory PLC keeps the gateway's contract: values pass the same tag-map checks as the
real gateway's, refusals come as the same errors, and a lost connection refuses everything."""

from __future__ import annotations

import pytest

from hmi.plc.errors import (
    PlcCommandNotConfirmed,
    PlcCommandRejected,
    PlcConfigError,
    PlcNotConnected,
    PlcValueRejected,
    PlcWriteRejected,
)
from hmi.plc.fake import FakeGateway, Refusal
from hmi.plc.types import ConnectionState, ConnectionStateChanged, TagValuesChanged


async def connected() -> FakeGateway:
    fake = FakeGateway()
    await fake.connect()
    return fake


async def test_values_pass_the_tag_map_checks_of_the_real_gateway() -> None:
    fake = await connected()
    with pytest.raises(PlcValueRejected, match="above the valid range"):
        await fake.write("speed_setpoint", 31.0)
    with pytest.raises(PlcValueRejected, match="read-only"):
        await fake.write("speed", 10.0)
    with pytest.raises(PlcValueRejected, match="quantity"):
        await fake.call("charge", 0.0)
    with pytest.raises(PlcConfigError, match="no tag 'valve'"):
        await fake.read("valve")
    fake.report(product_temperature=250.0)  # outside the tag map's -10..100 °C
    with pytest.raises(PlcValueRejected, match="above the valid range") as refused:
        await fake.read("product_temperature")
    assert refused.value.update is not None and not refused.value.update.good
    assert fake.received == []  # nothing refused by the checks reached the PLC


async def test_the_blender_follows_packml_and_its_interlocks() -> None:
    fake = await connected()
    with pytest.raises(PlcCommandRejected, match="the blender is Stopped"):
        await fake.call("start")
    assert (await fake.read("last_command_result")).value == "Start refused: the blender is Stopped"
    await fake.call("reset")
    await fake.write("speed_setpoint", 12.0)
    await fake.write("blend_time_setpoint", 600.0)
    fake.report(lid_closed=False)
    with pytest.raises(PlcCommandRejected, match="lid open"):
        await fake.call("start")
    fake.report(lid_closed=True)
    await fake.call("start")
    assert (await fake.read("state")).value == "Execute"
    with pytest.raises(PlcWriteRejected, match="latched"):
        await fake.write("blend_time_setpoint", 900.0)
    fake.advance(599)
    assert (await fake.read("state")).value == "Execute"
    fake.advance(10)
    assert [(await fake.read(t)).value for t in ("state", "elapsed_time", "speed")] == [
        "Complete", 600.0, 0.0,
    ]  # fmt: skip


async def test_a_revolution_count_ends_the_blend_at_that_count() -> None:
    fake = await connected()
    await fake.call("reset")
    await fake.write("speed_setpoint", 10.0)
    await fake.write("revolutions_setpoint", 200)
    await fake.call("start")
    fake.advance(3600)
    assert fake.values["state"] == "Complete"
    assert (fake.values["revolutions"], fake.values["elapsed_time"]) == (200.0, 1200.0)


async def test_refusals_unknown_outcomes_and_a_lost_link_come_as_the_gateway_errors() -> None:
    fake = await connected()
    fake.refuse_next("reset", Refusal("BadInvalidState", "Reset refused: guard open"))
    with pytest.raises(PlcCommandRejected, match="guard open"):
        await fake.call("reset")
    fake.refuse_next("reset", Refusal(silent=True))
    with pytest.raises(PlcCommandNotConfirmed):
        await fake.call("reset")
    assert fake.values["state"] == "Stopped"  # neither did anything
    assert [name for _kind, name, _args in fake.received] == ["reset", "reset"]
    stream = fake.events()
    fake.lose("switch rebooted")
    assert fake.state is ConnectionState.LOST
    with pytest.raises(PlcNotConnected, match="switch rebooted"):
        await fake.read("state")
    assert not fake.snapshot()["state"].good
    seen = [stream.get_nowait() for _ in range(stream.backlog)]
    stream.close()
    states = [e.state for e in seen if isinstance(e, ConnectionStateChanged)]
    assert states == [ConnectionState.CONNECTED, ConnectionState.LOST]
    bad = [e for e in seen if isinstance(e, TagValuesChanged) and not e.updates["state"].good]
    assert bad, "the tags were published BAD when the link was lost"
