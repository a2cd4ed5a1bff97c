"""The alarm list (ISA-18.2): raise, clear, acknowledge, shelve; persisted and audited."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from hmi.alarms.service import (
    AlarmChange,
    AlarmError,
    AlarmNotFound,
    AlarmService,
    AlarmStateError,
    AlarmTransition,
)
from hmi.auth.errors import PermissionDenied
from hmi.auth.services import AuthServices
from hmi.clock import ManualClock
from hmi.plc.stream import PlcEventStream
from hmi.plc.types import COMM_LOSS_ALARM, ConnectionState, ConnectionStateChanged, PlcAlarmEvent
from hmi.site import Site
from tests.integration.batch.support import (
    People,
    audit_actions,
    auth_services,
    build_alarms,
    verify_chain,
)

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def event(code: str, active: bool, severity: int = 900) -> PlcAlarmEvent:
    return PlcAlarmEvent(code, active, severity, f"{code} message", NOW)


@pytest.fixture
def auth(site: Site) -> AuthServices:
    return auth_services(site)


@pytest.fixture
def people(auth: AuthServices, clock: ManualClock) -> People:
    return People.create(auth, clock)


@pytest.fixture
def alarms(site: Site, auth: AuthServices) -> AlarmService:
    return build_alarms(site, auth)


def test_raise_clear_acknowledge_lifecycle(
    site: Site, alarms: AlarmService, people: People
) -> None:
    seen: list[AlarmChange] = []
    alarms.subscribe(seen.append)
    alarms.context_provider = lambda: ("B-1", 3)
    raised = alarms.handle(event("MOTOR_OVERCURRENT", True))
    assert raised is not None and raised.active and not raised.acknowledged
    assert (raised.batch_id, raised.step_index, raised.source) == ("B-1", 3, "plc")
    again = alarms.handle(event("MOTOR_OVERCURRENT", True))
    assert again is not None and again.alarm_id == raised.alarm_id  # no duplicate
    assert alarms.unacknowledged_count() == 1
    cleared = alarms.handle(event("MOTOR_OVERCURRENT", False))
    assert cleared is not None and not cleared.active and cleared.cleared_at is not None
    assert [a.alarm_id for a in alarms.active()] == [raised.alarm_id]  # cleared, not yet acked
    assert alarms.active()[0].state_label == "cleared, unacknowledged"
    operator = people.login("op1")
    acked = alarms.acknowledge(operator, raised.alarm_id, "drive checked")
    assert acked.acknowledged_by == "op1" and acked.acknowledged_at is not None
    assert alarms.active() == [] and alarms.unacknowledged_count() == 0
    with pytest.raises(AlarmStateError):
        alarms.acknowledge(operator, raised.alarm_id)
    with pytest.raises(AlarmNotFound):
        alarms.acknowledge(operator, 999)
    assert [c.transition for c in seen] == [
        AlarmTransition.RAISED, AlarmTransition.CLEARED, AlarmTransition.ACKNOWLEDGED,
    ]  # fmt: skip
    assert [h.alarm_id for h in alarms.history(batch_id="B-1")] == [raised.alarm_id]
    actions = [a for a, _e, _r in audit_actions(site, "alarm.")]
    assert actions == [
        "alarm.raised", "alarm.cleared", "alarm.acknowledged", "alarm.acknowledge.refused",
    ]  # fmt: skip
    # A new occurrence after the first cleared is a new alarm.
    second = alarms.handle(event("MOTOR_OVERCURRENT", True))
    assert second is not None and second.alarm_id != raised.alarm_id
    assert verify_chain(site).ok


def test_acknowledging_needs_the_right_role(alarms: AlarmService, people: People) -> None:
    raised = alarms.raise_alarm("TEMP_HIGH", "Product temperature high", 700)
    with pytest.raises(PermissionDenied):
        alarms.acknowledge(people.login("qa1"), raised.alarm_id)
    assert not alarms.get(raised.alarm_id).acknowledged


def test_shelving_is_bounded_needs_a_reason_and_expires(
    site: Site, alarms: AlarmService, people: People, clock: ManualClock
) -> None:
    raised = alarms.raise_alarm("LOADCELL_DRIFT", "Load cells disagree", 500)
    with pytest.raises(PermissionDenied):
        alarms.shelve(people.login("op1"), raised.alarm_id, timedelta(minutes=10), "known issue")
    supervisor = people.login("sup1")
    with pytest.raises(AlarmError, match="1 to 480 minutes"):
        alarms.shelve(supervisor, raised.alarm_id, timedelta(hours=9), "calibration booked")
    with pytest.raises(AlarmError, match="reason"):
        alarms.shelve(supervisor, raised.alarm_id, timedelta(minutes=10), "")
    shelved = alarms.shelve(
        supervisor, raised.alarm_id, timedelta(minutes=10), "calibration booked WO-4471"
    )
    assert shelved.shelved and shelved.shelved_by == "sup1"
    assert alarms.active() == [] and alarms.unacknowledged_count() == 0
    assert [a.alarm_id for a in alarms.active(include_shelved=True)] == [raised.alarm_id]
    with pytest.raises(AlarmStateError):
        alarms.shelve(supervisor, raised.alarm_id, timedelta(minutes=5), "shelve it again")
    clock.advance(timedelta(minutes=9))
    assert alarms.expire_shelving() == []
    clock.advance(timedelta(minutes=2))
    [back] = alarms.expire_shelving()
    assert back.alarm_id == raised.alarm_id and not back.shelved
    assert [a.alarm_id for a in alarms.active()] == [raised.alarm_id]
    events = audit_actions(site, "alarm.unshelved")
    assert events == [("alarm.unshelved", str(raised.alarm_id), "shelving time is up")]
    again = alarms.shelve(supervisor, raised.alarm_id, timedelta(minutes=5), "still booked")
    unshelved = alarms.unshelve(supervisor, raised.alarm_id, "calibration done early")
    assert again.shelved and not unshelved.shelved
    with pytest.raises(AlarmStateError):
        alarms.unshelve(supervisor, raised.alarm_id, "not shelved any more")


def test_communication_loss_is_an_hmi_alarm(alarms: AlarmService) -> None:
    lost = ConnectionStateChanged(ConnectionState.LOST, "heartbeat frozen", NOW, True, "opc")
    record = alarms.handle(lost)
    assert record is not None and record.code == COMM_LOSS_ALARM and record.source == "hmi"
    assert alarms.active_codes() == {COMM_LOSS_ALARM}
    back = ConnectionStateChanged(ConnectionState.CONNECTED, "connected", NOW, True, "opc")
    cleared = alarms.handle(back)
    assert cleared is not None and not cleared.active
    connecting = ConnectionStateChanged(ConnectionState.CONNECTING, "", NOW, True, "opc")
    assert alarms.handle(connecting) is None


def test_reconcile_with_the_plc_list_at_start_up(alarms: AlarmService) -> None:
    alarms.raise_alarm("ESTOP", "Emergency stop pressed", 1000)
    alarms.raise_alarm("TEMP_HIGH", "Product temperature high", 700)
    changed = alarms.reconcile(["TEMP_HIGH", "LOADCELL_DRIFT"])
    assert {(c.code, c.active) for c in changed} == {("ESTOP", False), ("LOADCELL_DRIFT", True)}
    assert alarms.active_codes() == {"TEMP_HIGH", "LOADCELL_DRIFT"}
    ordered = [a.code for a in alarms.active()]
    assert ordered[0] == "ESTOP"  # most severe first (cleared but unacknowledged)


class _BusyGateway:
    """A PLC whose event stream always has the next event ready (a fault storm)."""

    def __init__(self) -> None:
        self.stream = PlcEventStream()

    def events(self) -> PlcEventStream:
        return self.stream


async def test_the_alarm_feed_stops_when_cancelled_even_while_events_pour_in(
    alarms: AlarmService,
) -> None:
    # A cancellation that lands as an event arrives must end the feed: in Python 3.11
    # asyncio.wait_for swallows it and the feed ran on for ever (a kiosk that would not close).
    loop = asyncio.get_running_loop()
    for steps in range(40):
        gateway = _BusyGateway()
        stream = gateway.stream

        def refill(stream: PlcEventStream = stream) -> None:
            if not stream.closed:
                stream.push(event("MOTOR_OVERCURRENT", True))
                loop.call_soon(refill)

        refill()
        feed = loop.create_task(alarms.run(gateway))
        for _ in range(steps % 8):
            await asyncio.sleep(0)
        feed.cancel()
        done, _ = await asyncio.wait([feed], timeout=5)
        assert done, f"the feed ran on after cancel (cancelled after {steps % 8} loop steps)"
        assert feed.cancelled()
        assert stream.closed or steps % 8 == 0  # a feed cancelled before it began opens none
