"""The event stream coalesces tag values but keeps every alarm and state change, in order."""

from __future__ import annotations

from datetime import UTC, datetime

from hmi.plc.stream import PlcEventStream
from hmi.plc.types import (
    ConnectionState,
    ConnectionStateChanged,
    PlcAlarmEvent,
    Quality,
    TagUpdate,
    TagValuesChanged,
)

NOW = datetime(2026, 3, 2, 7, 30, tzinfo=UTC)


def update(tag: str, value: float) -> TagUpdate:
    return TagUpdate(tag, value, "rpm", NOW, Quality.GOOD)


def test_a_slow_consumer_sees_only_the_latest_value_per_tag() -> None:
    stream = PlcEventStream()
    for i in range(1000):
        stream.push_tags({"speed": update("speed", float(i)), "weight": update("weight", 1.0)})
    assert stream.backlog == 1
    event = stream.get_nowait()
    assert isinstance(event, TagValuesChanged)
    assert event.updates["speed"].value == 999.0
    assert set(event.updates) == {"speed", "weight"}
    assert stream.coalesced == 2 * 999
    assert stream.get_nowait() is None


def test_alarms_and_state_changes_keep_their_place_between_tag_batches() -> None:
    stream = PlcEventStream()
    alarm = PlcAlarmEvent("ESTOP", True, 1000, "Emergency stop pressed", NOW)
    lost = ConnectionStateChanged(ConnectionState.LOST, "socket closed", NOW, True, "opc.tcp://x:1")
    stream.push_tags({"speed": update("speed", 1.0)})
    stream.push_tags({"speed": update("speed", 2.0)})
    stream.push(alarm)
    stream.push_tags({"speed": update("speed", 3.0)})
    stream.push(lost)
    got = [stream.get_nowait() for _ in range(4)]
    assert isinstance(got[0], TagValuesChanged) and got[0].updates["speed"].value == 2.0
    assert got[1] is alarm
    assert isinstance(got[2], TagValuesChanged) and got[2].updates["speed"].value == 3.0
    assert got[3] is lost
    assert stream.get_nowait() is None


def test_closing_unregisters_and_stops_accepting() -> None:
    closed: list[PlcEventStream] = []
    stream = PlcEventStream(on_close=closed.append)
    stream.push_tags({"speed": update("speed", 1.0)})
    stream.close()
    stream.close()
    assert closed == [stream] and stream.closed
    stream.push_tags({"speed": update("speed", 2.0)})
    event = stream.get_nowait()  # what was queued before closing is still delivered
    assert isinstance(event, TagValuesChanged) and event.updates["speed"].value == 1.0
    assert stream.get_nowait() is None


def test_a_consumer_that_never_reads_cannot_grow_memory_without_bound() -> None:
    stream = PlcEventStream(max_backlog=10)
    for i in range(25):
        stream.push(PlcAlarmEvent(f"A{i}", True, 500, "x", NOW))
    assert stream.backlog == 10 and stream.dropped == 15
    first = stream.get_nowait()
    assert isinstance(first, PlcAlarmEvent) and first.code == "A15"
