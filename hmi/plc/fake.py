"""An in-memory PLC behind the gateway port, for fast and deterministic tests of the services
above it (the batch engine, alarms, service mode) and for benchmarks of their own cost.

It is the product's test support, not a simulator: the blender it models is the contract of
``docs/plc-interface.md`` reduced to what a service can observe (PackML states, setpoints,
interlocks, the load cell, the bin, alarms), with every transition immediate and simulated time
advanced only when the test says so (:meth:`FakeGateway.advance`) or, with ``time_scale``, by
wall-clock time times that factor. Values go through the same checks as the real gateway's
(:mod:`hmi.plc.tagmap`), so a value the tag map refuses is refused here too. The bundled
simulator over OPC UA stays the integration test.

A test can also make the PLC misbehave: refuse the next command or write with a status and
reason, answer nothing (outcome unknown), hold by itself, raise or clear an alarm, lose the
connection.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from hmi.clock import Clock, SystemClock
from hmi.plc.errors import (
    PlcCommandNotConfirmed,
    PlcCommandRejected,
    PlcConfigError,
    PlcNotConnected,
    PlcValueRejected,
    PlcWriteNotConfirmed,
    PlcWriteRejected,
)
from hmi.plc.settings import MethodSpec, PlcSettings, TagSpec
from hmi.plc.stream import PlcEventStream
from hmi.plc.tagmap import bad, check_arguments, check_write, received
from hmi.plc.types import (
    ConnectionState,
    ConnectionStateChanged,
    PlcAlarmEvent,
    Quality,
    ServerCertificate,
    TagUpdate,
    TagValue,
)

#: PackML state numbers (ISA-TR88.00.02), as ``StateCode`` publishes them.
STATE_CODES = {
    "Clearing": 1, "Stopped": 2, "Starting": 3, "Idle": 4, "Suspended": 5, "Execute": 6,
    "Stopping": 7, "Aborting": 8, "Aborted": 9, "Holding": 10, "Held": 11, "Unholding": 12,
    "Suspending": 13, "Unsuspending": 14, "Resetting": 15, "Completing": 16, "Complete": 17,
}  # fmt: skip

#: What the blender holds at power-on (docs/plc-interface.md): stopped, empty, lid closed,
#: every setpoint 0 (a real PLC's; the simulator starts at 12 rpm and 900 s).
POWER_ON: dict[str, TagValue] = {
    "state": "Stopped",
    "state_code": 2,
    "mode": "production",
    "speed_setpoint": 0.0,
    "speed": 0.0,
    "blend_time_setpoint": 0.0,
    "revolutions_setpoint": 0,
    "elapsed_time": 0.0,
    "revolutions": 0.0,
    "motor_current": 0.0,
    "product_temperature": 21.5,
    "weight": 0.0,
    "weight_stable": True,
    "lid_closed": True,
    "discharge_valve_open": False,
    "estop": False,
    "heartbeat": 0,
    "last_command_result": "",
    "active_alarms": (),
}

CAPACITY_KG = 500.0
ROTATING = frozenset({"Starting", "Execute", "Unholding", "Holding", "Completing", "Stopping"})


@dataclass(frozen=True)
class Refusal:
    """How the PLC answers the next command or write it is told to refuse."""

    status: str = "BadRequestNotAllowed"
    reason: str = ""
    #: no answer at all: the outcome is unknown (the command did nothing here)
    silent: bool = False


class _Refused(Exception):
    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class FakeGateway:
    """A :class:`~hmi.plc.gateway.PlcGateway` in memory: see the module's description."""

    def __init__(
        self,
        settings: PlcSettings | None = None,
        *,
        clock: Clock | None = None,
        time_scale: float | None = None,
        values: Mapping[str, TagValue] | None = None,
    ) -> None:
        self._settings = settings or PlcSettings(endpoint="opc.tcp://fake-plc.invalid:4840/")
        self._clock = clock or SystemClock()
        self.time_scale = time_scale
        self._wall = time.monotonic()
        self.values: dict[str, TagValue] = {**POWER_ON, **(values or {})}
        self._state = ConnectionState.DISCONNECTED
        self._reason = "not connected yet"
        self._streams: set[PlcEventStream] = set()
        self._published: dict[str, tuple[TagValue | None, Quality, str]] = {}
        self._alarms: dict[str, PlcAlarmEvent] = {}
        self._refusals: dict[str, Refusal] = {}
        #: every command and write the PLC received, in order: ``("call", "start", ())`` or
        #: ``("write", "speed_setpoint", 12.0)`` (refused ones too)
        self.received: list[tuple[str, str, object]] = []
        self._handlers: dict[str, Callable[..., None]] = {
            "start": self._start, "hold": self._hold, "unhold": self._unhold,
            "stop": self._stop, "abort": self._abort, "reset": self._reset,
            "clear": self._clear, "charge": self._charge, "discharge": self._discharge,
            "close_valve": self._close_valve, "open_lid": self._open_lid,
            "close_lid": self._close_lid, "jog": self._jog, "set_mode": self._set_mode,
        }  # fmt: skip

    # ------------------------------------------------------------------ the port

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def state_reason(self) -> str:
        return self._reason

    @property
    def endpoint(self) -> str:
        return self._settings.endpoint

    @property
    def secure(self) -> bool:
        return True

    @property
    def security_description(self) -> str:
        return "in-memory test PLC"

    @property
    def tags(self) -> Mapping[str, TagSpec]:
        return self._settings.tags

    @property
    def methods(self) -> Mapping[str, MethodSpec]:
        return self._settings.methods

    async def connect(self, *, retry: bool = False) -> None:
        self._set_connection(ConnectionState.CONNECTED, "connected to the in-memory test PLC")
        self._publish()

    async def disconnect(self) -> None:
        self._set_connection(ConnectionState.DISCONNECTED, "disconnected")
        self._publish()

    async def read(self, tag: str) -> TagUpdate:
        spec = self._tag(tag)
        self._require_connected(f"read {tag}")
        self._catch_up()
        update = self._update(tag, spec)
        if not update.good:
            raise PlcValueRejected(tag, update.reason, update=update)
        return update

    async def write(self, tag: str, value: TagValue) -> TagUpdate:
        spec = self._tag(tag)
        checked = check_write(tag, spec, value)
        self._require_connected(f"write {tag}")
        self._catch_up()
        self.received.append(("write", tag, checked))
        refusal = self._refusals.pop(f"write:{tag}", None)
        if refusal is not None:
            if refusal.silent:
                raise PlcWriteNotConfirmed(tag, checked, "no answer from the PLC")
            raise PlcWriteRejected(tag, checked, refusal.status, refusal.reason)
        if tag == "blend_time_setpoint" and self.values["state"] in ROTATING:
            self.values["last_command_result"] = "Write refused: blend time latched while running"
            raise PlcWriteRejected(
                tag, checked, "BadRequestNotAllowed", str(self.values["last_command_result"])
            )
        self.values[tag] = checked
        self._publish()
        return self._update(tag, spec)

    async def call(self, method: str, *args: TagValue) -> tuple[TagValue, ...]:
        spec = self._method(method)
        checked = check_arguments(method, spec.args, args)
        self._require_connected(method)
        self._catch_up()
        self.received.append(("call", method, tuple(checked)))
        refusal = self._refusals.pop(method, None)
        if refusal is not None:
            if refusal.silent:
                raise PlcCommandNotConfirmed(method, "no answer from the PLC")
            self.values["last_command_result"] = refusal.reason
            self._publish()
            raise PlcCommandRejected(method, refusal.status, refusal.reason)
        if method == "calibration_check":
            return self._calibration_check()
        handler = self._handlers.get(method)
        if handler is None:
            raise PlcCommandRejected(method, "BadNotImplemented", f"{method} is not modelled")
        try:
            handler(*checked)
        except _Refused as refused:
            self.values["last_command_result"] = refused.reason
            self._publish()
            raise PlcCommandRejected(method, refused.status, refused.reason) from None
        self.values["last_command_result"] = f"{method} accepted"
        self._publish()
        return ()

    def snapshot(self) -> dict[str, TagUpdate]:
        return {tag: self._update(tag, spec) for tag, spec in self.tags.items()}

    def events(self) -> PlcEventStream:
        stream = PlcEventStream(on_close=self._streams.discard)
        stream.push(self._connection_event())
        stream.push_tags(self.snapshot())
        for alarm in self._alarms.values():
            stream.push(alarm)
        self._streams.add(stream)
        return stream

    async def fetch_server_certificate(self) -> ServerCertificate:
        raise PlcNotConnected("the in-memory test PLC has no certificate")

    # ------------------------------------------------------------------ the test's controls

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` of simulated time pass: a running blend turns and completes once its
        blend time (or, when set, its revolutions) is reached."""
        if seconds <= 0:
            return
        values = self.values
        if values["state"] == "Execute":
            speed = self._number("speed_setpoint")
            elapsed = self._number("elapsed_time")
            turned = self._number("revolutions")
            target_revs = int(self._number("revolutions_setpoint"))
            target_s = self._number("blend_time_setpoint")
            if target_revs > 0:
                needed = (target_revs - turned) * 60.0 / speed if speed > 0 else float("inf")
            else:
                needed = target_s - elapsed
            run = min(seconds, max(needed, 0.0))
            values["elapsed_time"] = elapsed + run
            values["revolutions"] = (
                float(target_revs) if target_revs > 0 and run == needed
                else turned + speed * run / 60.0
            )  # fmt: skip
            if run >= needed:
                self._enter("Complete", speed=0.0)
        values["heartbeat"] = (int(self._number("heartbeat")) + 1) % 2**32
        self._publish()

    def report(self, **values: TagValue) -> None:
        """Change what the PLC reports (a lid opened by hand, a temperature), as it would."""
        for tag, value in values.items():
            self._tag(tag)
            self.values[tag] = value
        self._publish()

    def refuse_next(self, what: str, refusal: Refusal | None = None) -> None:
        """The next call of method ``what`` (or write of ``write:TAG``) is refused."""
        self._refusals[what] = refusal or Refusal(reason=f"{what} refused by the test")

    def hold_by_itself(self, reason: str) -> None:
        """The PLC holds the running blend on its own (an interlock, a temperature trip)."""
        self.values["last_command_result"] = reason
        self._enter("Held", speed=0.0)
        self._publish()

    def raise_alarm(self, code: str, message: str, severity: int = 700) -> None:
        alarm = PlcAlarmEvent(code, True, severity, message, self._clock.now())
        self._alarms[code] = alarm
        self.values["active_alarms"] = tuple(sorted(self._alarms))
        self._push(alarm)
        self._publish()

    def clear_alarm(self, code: str) -> None:
        alarm = self._alarms.pop(code, None)
        if alarm is None:
            return
        self.values["active_alarms"] = tuple(sorted(self._alarms))
        self._push(PlcAlarmEvent(code, False, alarm.severity, alarm.message, self._clock.now()))
        self._publish()

    def lose(self, reason: str = "the test cut the connection") -> None:
        """The connection drops: every tag BAD, every request refused as not connected."""
        self._set_connection(ConnectionState.LOST, reason)
        self._publish()

    def restore(self) -> None:
        self._set_connection(ConnectionState.CONNECTED, "reconnected to the in-memory test PLC")
        self._publish()

    # ------------------------------------------------------------------ the blender

    def _start(self) -> None:
        self._require_state("Start", {"Idle"})
        if self.values["mode"] != "production":
            raise _Refused("BadInvalidState", "Start refused: the blender is in service mode")
        self._require_safe("Start")
        if self._number("speed_setpoint") < 1.0:
            raise _Refused("BadOutOfRange", "Start refused: speed setpoint must be at least 1 rpm")
        if self._number("blend_time_setpoint") <= 0 and self._number("revolutions_setpoint") <= 0:
            raise _Refused("BadOutOfRange", "Start refused: no blend time or revolutions set")
        self.values["elapsed_time"] = 0.0
        self.values["revolutions"] = 0.0
        self._enter("Execute", speed=self._number("speed_setpoint"))

    def _hold(self) -> None:
        self._require_state("Hold", {"Starting", "Execute", "Unholding"})
        self._enter("Held", speed=0.0)

    def _unhold(self) -> None:
        self._require_state("Unhold", {"Held"})
        self._require_safe("Unhold")
        self._enter("Execute", speed=self._number("speed_setpoint"))

    def _stop(self) -> None:
        self._require_state(
            "Stop", set(STATE_CODES) - {"Stopping", "Stopped", "Aborting", "Aborted", "Clearing"}
        )
        self._enter("Stopped", speed=0.0)

    def _abort(self) -> None:
        self._require_state("Abort", set(STATE_CODES) - {"Aborting", "Aborted"})
        self._enter("Aborted", speed=0.0)

    def _reset(self) -> None:
        self._require_state("Reset", {"Stopped", "Complete"})
        self._enter("Idle", speed=0.0)

    def _clear(self) -> None:
        self._require_state("Clear", {"Aborted"})
        if self.values["estop"] is True:
            raise _Refused("BadRequestNotAllowed", "Clear refused: emergency stop still pressed")
        self._enter("Stopped", speed=0.0)

    def _charge(self, quantity: float) -> None:
        self._require_at_rest("Charge")
        if self.values["lid_closed"] is True:
            raise _Refused("BadRequestNotAllowed", "Charge refused: open the lid to charge")
        weight = self._number("weight")
        if weight + quantity > CAPACITY_KG + 1e-9:
            raise _Refused(
                "BadOutOfRange",
                f"Charge refused: {quantity:.2f} kg exceeds the remaining capacity"
                f" ({CAPACITY_KG - weight:.2f} kg)",
            )
        self.values["weight"] = weight + quantity

    def _discharge(self) -> None:
        """The valve opens, the bin empties and the valve closes again: at once, here."""
        self._require_at_rest("Discharge")
        if self.values["estop"] is True:
            raise _Refused("BadRequestNotAllowed", "Discharge refused: emergency stop pressed")
        self.values["weight"] = 0.0
        self.values["discharge_valve_open"] = False

    def _close_valve(self) -> None:
        self.values["discharge_valve_open"] = False

    def _open_lid(self) -> None:
        self._require_at_rest("OpenLid")
        self.values["lid_closed"] = False

    def _close_lid(self) -> None:
        self.values["lid_closed"] = True

    def _jog(self, speed: float) -> None:
        if self.values["mode"] != "service":
            raise _Refused("BadInvalidState", "Jog refused: switch to service mode first")
        self._require_safe("Jog")

    def _set_mode(self, mode: str) -> None:
        self._require_at_rest("SetMode")
        self.values["mode"] = mode

    def _calibration_check(self) -> tuple[TagValue, ...]:
        if self.values["mode"] != "service":
            self.values["last_command_result"] = "CalibrationCheck refused: not in service mode"
            self._publish()
            raise PlcCommandRejected(
                "calibration_check", "BadInvalidState", str(self.values["last_command_result"])
            )
        return (20.0, 20.02, True)

    def _require_state(self, command: str, allowed: set[str]) -> None:
        state = str(self.values["state"])
        if state not in allowed:
            raise _Refused("BadInvalidState", f"{command} refused: the blender is {state}")

    def _require_safe(self, command: str) -> None:
        if self.values["estop"] is True:
            raise _Refused("BadRequestNotAllowed", f"{command} refused: emergency stop pressed")
        if self.values["lid_closed"] is not True:
            raise _Refused("BadRequestNotAllowed", f"{command} refused: lid open")
        if self.values["discharge_valve_open"] is True:
            raise _Refused("BadRequestNotAllowed", f"{command} refused: discharge valve open")

    def _require_at_rest(self, command: str) -> None:
        if str(self.values["state"]) in ROTATING:
            raise _Refused("BadRequestNotAllowed", f"{command} refused: the drum is turning")

    def _enter(self, state: str, *, speed: float) -> None:
        self.values["state"] = state
        self.values["state_code"] = STATE_CODES[state]
        self.values["speed"] = speed
        self.values["motor_current"] = 4.0 + speed * 0.2 if speed else 0.0

    # ------------------------------------------------------------------ plumbing

    def _number(self, tag: str) -> float:
        """A numeric value the model works with (0 if a test made it something else)."""
        value = self.values.get(tag)
        return float(value) if isinstance(value, int | float) else 0.0

    def _catch_up(self) -> None:
        if self.time_scale is None:
            return
        now = time.monotonic()
        elapsed, self._wall = now - self._wall, now
        self.advance(elapsed * self.time_scale)

    def _tag(self, tag: str) -> TagSpec:
        spec = self.tags.get(tag)
        if spec is None:
            raise PlcConfigError(f"no tag {tag!r} in the tag map")
        return spec

    def _method(self, method: str) -> MethodSpec:
        spec = self.methods.get(method)
        if spec is None:
            raise PlcConfigError(f"no method {method!r} in the tag map")
        return spec

    def _require_connected(self, what: str) -> None:
        if self._state is not ConnectionState.CONNECTED:
            raise PlcNotConnected(
                f"cannot {what}: the PLC is not connected ({self._state.value}: {self._reason})"
            )

    def _update(self, tag: str, spec: TagSpec) -> TagUpdate:
        now = self._clock.now()
        if self._state is not ConnectionState.CONNECTED:
            return bad(tag, spec, f"PLC {self._state.value}: {self._reason}", now)
        return received(
            tag, spec, self.values.get(tag), status_good=True, status_name="Good", timestamp=now
        )

    def _publish(self) -> None:
        """Send the tags whose value or quality changed, as a PLC's subscription does."""
        updates = {
            tag: update
            for tag, update in self.snapshot().items()
            if self._published.get(tag) != (update.value, update.quality, update.reason)
        }
        for tag, update in updates.items():
            self._published[tag] = (update.value, update.quality, update.reason)
        if updates:
            for stream in list(self._streams):
                stream.push_tags(updates)

    def _push(self, event: PlcAlarmEvent | ConnectionStateChanged) -> None:
        for stream in list(self._streams):
            stream.push(event)

    def _connection_event(self) -> ConnectionStateChanged:
        return ConnectionStateChanged(
            self._state, self._reason, self._clock.now(), self.secure, self.endpoint
        )

    def _set_connection(self, state: ConnectionState, reason: str) -> None:
        if state is self._state and reason == self._reason:
            return
        self._state, self._reason = state, reason
        self._push(self._connection_event())
