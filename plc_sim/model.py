"""A pure, tick-based model of a powder blender: PackML states, physics, interlocks and alarms.

The model knows nothing about OPC UA or wall-clock time: the server (or a test) calls
:meth:`BlenderModel.tick` with elapsed wall seconds and the model advances ``elapsed *
time_scale`` simulated seconds in small fixed sub-steps. All randomness (measurement noise)
comes from one seeded :class:`random.Random`, so the same seed and the same sequence of ticks
and commands always produce the same values: tests can replay a 15-minute blend in a few
milliseconds and assert on exact numbers.

Commands that the equipment would refuse raise :class:`CommandRejected` with a reason an
operator understands; they never change state half-way.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import NoReturn

SUBSTEP_S = 0.05
"""Largest simulated step; small enough for the load-cell dynamics to stay stable."""


class PackMLState(enum.Enum):
    """Equipment states (ISA-TR88.00.02); the value is the PackML state number."""

    CLEARING = 1
    STOPPED = 2
    STARTING = 3
    IDLE = 4
    EXECUTE = 6
    STOPPING = 7
    ABORTING = 8
    ABORTED = 9
    HOLDING = 10
    HELD = 11
    UNHOLDING = 12
    RESETTING = 15
    COMPLETING = 16
    COMPLETE = 17

    @property
    def label(self) -> str:
        """The state name as published (``Execute``, ``Held``...)."""
        return self.name.capitalize()


class Mode(enum.Enum):
    """Production runs recipes; service allows jog and load-cell checks only."""

    PRODUCTION = "production"
    SERVICE = "service"


class Fault(enum.Enum):
    """Faults a trainer (or a test) can inject into the simulated equipment."""

    OVER_CURRENT = "over_current"
    OVER_TEMPERATURE = "over_temperature"
    LID_OPEN = "lid_open"
    ESTOP = "estop"
    LOAD_CELL_DRIFT = "load_cell_drift"
    LOAD_CELL_FAILURE = "load_cell_failure"
    IGNORE_WRITES = "ignore_writes"
    COMM_FREEZE = "comm_freeze"


class RejectKind(enum.Enum):
    """Why a command was refused; the server maps each to an OPC UA status code."""

    STATE = "state"
    INTERLOCK = "interlock"
    ARGUMENT = "argument"
    MODE = "mode"


class CommandRejected(Exception):
    """The equipment refused a command; nothing changed."""

    def __init__(self, kind: RejectKind, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True)
class AlarmDefinition:
    """One entry of the alarm catalogue (documented in docs/plc-interface.md)."""

    code: str
    severity: int
    message: str


ALARM_ESTOP = AlarmDefinition("ESTOP", 1000, "Emergency stop pressed")
ALARM_LID_OPEN_RUNNING = AlarmDefinition(
    "LID_OPEN_RUNNING", 900, "Lid opened while the blender was rotating"
)
ALARM_MOTOR_OVERCURRENT = AlarmDefinition(
    "MOTOR_OVERCURRENT", 900, "Motor current above the trip limit"
)
ALARM_TEMP_HIGH = AlarmDefinition("TEMP_HIGH", 700, "Product temperature high")
ALARM_LOADCELL_DRIFT = AlarmDefinition(
    "LOADCELL_DRIFT", 500, "Load cells disagree: weight reading drifting"
)
ALARM_LOADCELL_FAULT = AlarmDefinition("LOADCELL_FAULT", 700, "Load-cell signal lost")
ALARM_CATALOGUE: tuple[AlarmDefinition, ...] = (
    ALARM_ESTOP,
    ALARM_LID_OPEN_RUNNING,
    ALARM_MOTOR_OVERCURRENT,
    ALARM_TEMP_HIGH,
    ALARM_LOADCELL_DRIFT,
    ALARM_LOADCELL_FAULT,
)


@dataclass(frozen=True)
class Alarm:
    """An alarm occurrence as the PLC reports it: active until its condition clears."""

    code: str
    severity: int
    message: str
    active: bool
    raised_at: float
    cleared_at: float | None = None


@dataclass(frozen=True)
class BlenderLimits:
    """Equipment constants; the defaults describe a 500 kg bin blender."""

    max_speed_rpm: float = 30.0
    jog_max_rpm: float = 5.0
    jog_duration_s: float = 5.0
    ramp_rpm_per_s: float = 5.0
    brake_rpm_per_s: float = 30.0
    capacity_kg: float = 500.0
    load_cell_max_kg: float = 600.0
    max_blend_time_s: float = 3600.0
    max_revolutions: int = 100_000
    acting_state_s: float = 1.0
    charge_rate_kg_per_s: float = 10.0
    discharge_rate_kg_per_s: float = 20.0
    discharge_close_delay_s: float = 2.0
    trip_current_a: float = 8.0
    trip_delay_s: float = 1.0
    jam_extra_current_a: float = 6.0
    ambient_c: float = 22.0
    temp_high_c: float = 40.0
    temp_hysteresis_c: float = 2.0
    heating_c_per_s: float = 1.0
    drift_kg_per_s: float = 0.02
    drift_alarm_kg: float = 0.5
    calibration_reference_kg: float = 20.0
    calibration_tolerance_kg: float = 0.1


@dataclass(frozen=True)
class BlenderSnapshot:
    """Everything the PLC publishes, at one instant of simulated time."""

    sim_time: float
    state: PackMLState
    mode: Mode
    speed_setpoint: float
    speed: float
    blend_time_setpoint: float
    revolutions_setpoint: int
    elapsed_time: float
    revolutions: float
    motor_current: float
    product_temperature: float
    weight: float
    weight_stable: bool
    lid_closed: bool
    discharge_valve_open: bool
    estop: bool
    last_command_result: str
    active_alarms: tuple[str, ...]
    active_faults: tuple[str, ...]


@dataclass(frozen=True)
class CalibrationResult:
    """Outcome of a load-cell check against the reference weight."""

    reference_kg: float
    measured_kg: float
    passed: bool


_ACTING_STATES = {
    PackMLState.RESETTING: PackMLState.IDLE,
    PackMLState.STARTING: PackMLState.EXECUTE,
    PackMLState.UNHOLDING: PackMLState.EXECUTE,
    PackMLState.CLEARING: PackMLState.STOPPED,
}
"""Timed acting states and the state each one ends in."""

_DECELERATING = {
    PackMLState.COMPLETING: PackMLState.COMPLETE,
    PackMLState.HOLDING: PackMLState.HELD,
    PackMLState.STOPPING: PackMLState.STOPPED,
    PackMLState.ABORTING: PackMLState.ABORTED,
}
"""States that end once the drum has come to rest, and the state each one ends in."""

_STOPPABLE = frozenset(PackMLState) - {
    PackMLState.STOPPING,
    PackMLState.STOPPED,
    PackMLState.ABORTING,
    PackMLState.ABORTED,
    PackMLState.CLEARING,
}
_AT_REST = frozenset(
    {PackMLState.STOPPED, PackMLState.IDLE, PackMLState.COMPLETE, PackMLState.ABORTED}
)
_PRODUCTION_ROTATION = frozenset(
    {
        PackMLState.EXECUTE,
        PackMLState.COMPLETING,
        PackMLState.HOLDING,
        PackMLState.STOPPING,
        PackMLState.ABORTING,
    }
)


@dataclass
class _LoadCell:
    """Second-order load-cell response: material lands, the reading overshoots and settles."""

    reading: float = 0.0
    velocity: float = 0.0
    stable_for: float = 0.0

    def step(self, target: float, dt: float) -> None:
        omega, zeta = 3.0, 0.45
        accel = omega * omega * (target - self.reading) - 2.0 * zeta * omega * self.velocity
        self.velocity += accel * dt
        self.reading += self.velocity * dt


@dataclass
class _Faults:
    active: set[Fault] = field(default_factory=set)


class BlenderModel:
    """The simulated blender. Mutable; drive it with commands and :meth:`tick`."""

    def __init__(
        self,
        *,
        seed: int = 0,
        time_scale: float = 1.0,
        limits: BlenderLimits | None = None,
        initial_state: PackMLState = PackMLState.STOPPED,
    ) -> None:
        if time_scale <= 0 or not math.isfinite(time_scale):
            raise ValueError(f"time_scale must be a positive number, got {time_scale!r}")
        self.seed = seed
        self.time_scale = time_scale
        self.limits = limits or BlenderLimits()
        self._rng = random.Random(seed)
        self.sim_time = 0.0
        self.state = initial_state
        self.mode = Mode.PRODUCTION
        self._state_time = 0.0
        self.speed_setpoint = 12.0
        self.blend_time_setpoint = 900.0
        self.revolutions_setpoint = 0
        self._true_speed = 0.0
        self.elapsed_time = 0.0
        self.revolutions = 0.0
        self._mass = 0.0
        self._charge_pending = 0.0
        self._discharging = False
        self._empty_for = 0.0
        self._cell = _LoadCell()
        self._drift = 0.0
        self.temperature = self.limits.ambient_c
        self._lid_closed = True
        self.discharge_valve_open = False
        self._jog_speed = 0.0
        self._jog_left = 0.0
        self._overcurrent_for = 0.0
        self._faults = _Faults()
        self._alarms: dict[str, Alarm] = {}
        self._alarm_log: list[Alarm] = []
        self.last_command_result = "ready"
        self._current = 0.0
        self._noisy_speed = 0.0
        self._noisy_current = 0.0
        self._noisy_temperature = self.temperature
        self._noisy_weight = 0.0
        self._sample_noise()

    # ------------------------------------------------------------------ readings

    @property
    def lid_closed(self) -> bool:
        """The lid switch: closed unless opened or forced open by the lid fault."""
        return self._lid_closed and Fault.LID_OPEN not in self._faults.active

    @property
    def estop(self) -> bool:
        return Fault.ESTOP in self._faults.active

    @property
    def speed(self) -> float:
        """Measured drum speed (rpm), with encoder noise."""
        return self._noisy_speed

    @property
    def motor_current(self) -> float:
        return self._noisy_current

    @property
    def product_temperature(self) -> float:
        return self._noisy_temperature

    @property
    def weight(self) -> float:
        """Load-cell reading (kg): settling dynamics, drift and noise included."""
        return self._noisy_weight

    @property
    def weight_stable(self) -> bool:
        return self._cell.stable_for >= 1.0 and self.load_cell_ok

    @property
    def load_cell_ok(self) -> bool:
        """False while the load-cell signal is lost: the weight reading is then invalid."""
        return Fault.LOAD_CELL_FAILURE not in self._faults.active

    @property
    def mass(self) -> float:
        """The true amount of material in the bin (what a perfect scale would read)."""
        return self._mass

    @property
    def active_faults(self) -> tuple[str, ...]:
        return tuple(sorted(f.value for f in self._faults.active))

    def fault_active(self, fault: Fault) -> bool:
        return fault in self._faults.active

    @property
    def active_alarms(self) -> tuple[Alarm, ...]:
        return tuple(a for a in self._alarms.values() if a.active)

    def drain_alarm_events(self) -> list[Alarm]:
        """Alarm transitions (raised and cleared) since the last call, oldest first."""
        events, self._alarm_log = self._alarm_log, []
        return events

    def snapshot(self) -> BlenderSnapshot:
        return BlenderSnapshot(
            sim_time=self.sim_time,
            state=self.state,
            mode=self.mode,
            speed_setpoint=self.speed_setpoint,
            speed=round(self.speed, 2),
            blend_time_setpoint=self.blend_time_setpoint,
            revolutions_setpoint=self.revolutions_setpoint,
            elapsed_time=round(self.elapsed_time, 1),
            revolutions=round(self.revolutions, 2),
            motor_current=round(self.motor_current, 2),
            product_temperature=round(self.product_temperature, 2),
            weight=round(self.weight, 2),
            weight_stable=self.weight_stable,
            lid_closed=self.lid_closed,
            discharge_valve_open=self.discharge_valve_open,
            estop=self.estop,
            last_command_result=self.last_command_result,
            active_alarms=tuple(sorted(a.code for a in self.active_alarms)),
            active_faults=self.active_faults,
        )

    # ------------------------------------------------------------------ state commands

    def start(self) -> None:
        self._require_state("Start", {PackMLState.IDLE})
        if self.mode is not Mode.PRODUCTION:
            self._reject(RejectKind.MODE, "Start refused: the blender is in service mode")
        self._require_safe_to_rotate("Start")
        warnings = (ALARM_LOADCELL_DRIFT.code, ALARM_LOADCELL_FAULT.code)
        blocking = [a.code for a in self.active_alarms if a.code not in warnings]
        if blocking:
            self._reject(RejectKind.INTERLOCK, f"Start refused: alarm active ({blocking[0]})")
        if self.speed_setpoint < 1.0:
            self._reject(
                RejectKind.ARGUMENT, "Start refused: speed setpoint must be at least 1 rpm"
            )
        if self.blend_time_setpoint <= 0 and self.revolutions_setpoint <= 0:
            self._reject(RejectKind.ARGUMENT, "Start refused: no blend time or revolutions set")
        self.elapsed_time = 0.0
        self.revolutions = 0.0
        self._enter(PackMLState.STARTING, "Start accepted")

    def hold(self) -> None:
        self._require_state(
            "Hold", {PackMLState.EXECUTE, PackMLState.STARTING, PackMLState.UNHOLDING}
        )
        self._enter(PackMLState.HOLDING, "Hold accepted")

    def unhold(self) -> None:
        self._require_state("Unhold", {PackMLState.HELD})
        self._require_safe_to_rotate("Unhold")
        if self._alarm_is_active(ALARM_TEMP_HIGH.code):
            self._reject(RejectKind.INTERLOCK, "Unhold refused: product temperature still high")
        self._enter(PackMLState.UNHOLDING, "Unhold accepted")

    def stop(self) -> None:
        self._require_state("Stop", _STOPPABLE)
        self._jog_speed = 0.0
        self._enter(PackMLState.STOPPING, "Stop accepted")

    def abort(self) -> None:
        self._require_state(
            "Abort", frozenset(PackMLState) - {PackMLState.ABORTING, PackMLState.ABORTED}
        )
        self._enter(PackMLState.ABORTING, "Abort accepted")

    def reset(self) -> None:
        self._require_state("Reset", {PackMLState.STOPPED, PackMLState.COMPLETE})
        self._enter(PackMLState.RESETTING, "Reset accepted")

    def clear(self) -> None:
        self._require_state("Clear", {PackMLState.ABORTED})
        if self.estop:
            self._reject(RejectKind.INTERLOCK, "Clear refused: emergency stop still pressed")
        self._enter(PackMLState.CLEARING, "Clear accepted")

    # ------------------------------------------------------------------ process actions

    def charge(self, quantity_kg: float) -> None:
        """Pour material into the bin through the open lid; it lands over a few seconds."""
        if not math.isfinite(quantity_kg) or quantity_kg <= 0:
            self._reject(RejectKind.ARGUMENT, "Charge refused: quantity must be above 0 kg")
        room = self.limits.capacity_kg - self._mass - self._charge_pending
        if quantity_kg > room + 1e-9:
            self._reject(
                RejectKind.ARGUMENT,
                f"Charge refused: {quantity_kg:.2f} kg exceeds the remaining capacity "
                f"({max(room, 0.0):.2f} kg)",
            )
        self._require_at_rest("Charge")
        if self.lid_closed:
            self._reject(RejectKind.INTERLOCK, "Charge refused: open the lid to charge material")
        if self.discharge_valve_open:
            self._reject(RejectKind.INTERLOCK, "Charge refused: discharge valve open")
        self._charge_pending += quantity_kg
        self._cell.stable_for = 0.0
        self.last_command_result = f"Charge accepted: {quantity_kg:.2f} kg"

    def discharge(self) -> None:
        """Open the discharge valve; the PLC closes it again once the bin is empty."""
        self._require_at_rest("Discharge")
        if self.estop:
            self._reject(RejectKind.INTERLOCK, "Discharge refused: emergency stop pressed")
        self.discharge_valve_open = True
        self._discharging = True
        self._empty_for = 0.0
        self.last_command_result = "Discharge accepted"

    def close_valve(self) -> None:
        self.discharge_valve_open = False
        self._discharging = False
        self.last_command_result = "Close valve accepted"

    def open_lid(self) -> None:
        if self._rotating() or self.state not in _AT_REST:
            self._reject(RejectKind.INTERLOCK, "Open lid refused: the drum is not at rest")
        self._lid_closed = False
        self.last_command_result = "Open lid accepted"

    def close_lid(self) -> None:
        self._lid_closed = True
        self.last_command_result = "Close lid accepted"

    # ------------------------------------------------------------------ service actions

    def set_mode(self, mode: str) -> None:
        try:
            wanted = Mode(mode)
        except ValueError:
            self._reject(RejectKind.ARGUMENT, f"Set mode refused: unknown mode {mode!r}")
        self._require_at_rest("Set mode")
        self.mode = wanted
        self.last_command_result = f"Mode set to {wanted.value}"

    def jog(self, speed_rpm: float) -> None:
        """Inch the drum in service mode at a limited speed for a few seconds (0 stops)."""
        if self.mode is not Mode.SERVICE:
            self._reject(RejectKind.MODE, "Jog refused: switch to service mode first")
        if not math.isfinite(speed_rpm) or speed_rpm < 0 or speed_rpm > self.limits.jog_max_rpm:
            self._reject(
                RejectKind.ARGUMENT,
                f"Jog refused: speed must be 0-{self.limits.jog_max_rpm:g} rpm",
            )
        if speed_rpm == 0:
            self._jog_speed, self._jog_left = 0.0, 0.0
            self.last_command_result = "Jog stopped"
            return
        self._require_state("Jog", {PackMLState.STOPPED, PackMLState.IDLE, PackMLState.COMPLETE})
        self._require_safe_to_rotate("Jog")
        self._jog_speed = speed_rpm
        self._jog_left = self.limits.jog_duration_s
        self.last_command_result = f"Jog accepted: {speed_rpm:g} rpm"

    def calibration_check(self) -> CalibrationResult:
        """Hang the reference weight and compare; a drifting load cell fails the check."""
        if self.mode is not Mode.SERVICE:
            self._reject(RejectKind.MODE, "Calibration check refused: switch to service mode first")
        self._require_at_rest("Calibration check")
        reference = self.limits.calibration_reference_kg
        measured = round(reference + self._drift + self._rng.gauss(0.0, 0.01), 3)
        passed = abs(measured - reference) <= self.limits.calibration_tolerance_kg
        self.last_command_result = (
            f"Calibration check {'passed' if passed else 'FAILED'}: {measured:.3f} kg "
            f"for {reference:.3f} kg"
        )
        return CalibrationResult(reference, measured, passed)

    # ------------------------------------------------------------------ setpoints

    def set_speed_setpoint(self, rpm: float) -> None:
        if not math.isfinite(rpm) or rpm < 0 or rpm > self.limits.max_speed_rpm:
            self._reject(
                RejectKind.ARGUMENT,
                f"speed setpoint must be 0-{self.limits.max_speed_rpm:g} rpm",
            )
        if Fault.IGNORE_WRITES not in self._faults.active:
            self.speed_setpoint = float(rpm)

    def set_blend_time_setpoint(self, seconds: float) -> None:
        if not math.isfinite(seconds) or seconds < 0 or seconds > self.limits.max_blend_time_s:
            self._reject(
                RejectKind.ARGUMENT,
                f"blend time setpoint must be 0-{self.limits.max_blend_time_s:g} s",
            )
        if self.state in (PackMLState.STARTING, PackMLState.EXECUTE, PackMLState.COMPLETING):
            self._reject(RejectKind.STATE, "blend time is latched while the blend runs")
        if Fault.IGNORE_WRITES not in self._faults.active:
            self.blend_time_setpoint = float(seconds)

    def set_revolutions_setpoint(self, revolutions: int) -> None:
        if revolutions < 0 or revolutions > self.limits.max_revolutions:
            self._reject(
                RejectKind.ARGUMENT,
                f"revolutions setpoint must be 0-{self.limits.max_revolutions}",
            )
        if self.state in (PackMLState.STARTING, PackMLState.EXECUTE, PackMLState.COMPLETING):
            self._reject(RejectKind.STATE, "revolutions setpoint is latched while the blend runs")
        if Fault.IGNORE_WRITES not in self._faults.active:
            self.revolutions_setpoint = int(revolutions)

    # ------------------------------------------------------------------ faults

    def inject_fault(self, fault: Fault) -> None:
        """Make something go wrong; the model reacts on the next tick, as the PLC would."""
        self._faults.active.add(fault)

    def clear_fault(self, fault: Fault | None = None) -> None:
        """Remove one injected fault (or all with ``None``); latched alarms stay until Clear."""
        removed: Iterable[Fault] = list(self._faults.active) if fault is None else [fault]
        for item in removed:
            self._faults.active.discard(item)
            if item is Fault.LOAD_CELL_DRIFT:
                self._drift = 0.0

    # ------------------------------------------------------------------ time

    def tick(self, elapsed_wall_s: float) -> None:
        """Advance by ``elapsed_wall_s * time_scale`` simulated seconds."""
        if elapsed_wall_s < 0:
            raise ValueError("time never runs backwards")
        remaining = elapsed_wall_s * self.time_scale
        while remaining > 1e-12:
            step = min(SUBSTEP_S, remaining)
            self._step(step)
            remaining -= step
        self._sample_noise()

    def run_for(self, sim_seconds: float) -> None:
        """Advance a number of simulated seconds (whatever the time scale)."""
        self.tick(sim_seconds / self.time_scale)

    # ------------------------------------------------------------------ internals

    def _step(self, dt: float) -> None:
        self.sim_time += dt
        self._state_time += dt
        self._check_safety()
        self._advance_speed(dt)
        self._advance_process(dt)
        self._advance_material(dt)
        self._advance_motor(dt)
        self._advance_temperature(dt)
        self._advance_load_cell(dt)
        self._advance_state(dt)
        self._update_alarms()

    def _check_safety(self) -> None:
        if self.estop:
            self._raise_alarm(ALARM_ESTOP)
            self._trip()
        elif self._alarm_is_active(ALARM_ESTOP.code):
            self._clear_alarm(ALARM_ESTOP.code)
        unsafe_lid = not self.lid_closed and self._rotating()
        if unsafe_lid:
            self._raise_alarm(ALARM_LID_OPEN_RUNNING)
            self._trip()
        if self.discharge_valve_open and self._rotating():
            self._trip()

    def _trip(self) -> None:
        """Stop the drum now: jog ends, a running machine aborts."""
        self._jog_speed, self._jog_left = 0.0, 0.0
        if self.state not in (PackMLState.ABORTING, PackMLState.ABORTED):
            self._enter(PackMLState.ABORTING, self.last_command_result)

    def _rotating(self) -> bool:
        return self._true_speed > 1e-6 or self._target_speed() > 0

    def _target_speed(self) -> float:
        if self.state is PackMLState.EXECUTE:
            return self.speed_setpoint
        if self._jog_speed > 0 and self.state in _AT_REST:
            return self._jog_speed
        return 0.0

    def _advance_speed(self, dt: float) -> None:
        target = self._target_speed()
        rate = (
            self.limits.brake_rpm_per_s
            if self.state is PackMLState.ABORTING
            else self.limits.ramp_rpm_per_s
        )
        delta = target - self._true_speed
        self._true_speed += max(-rate * dt, min(rate * dt, delta))
        if self._jog_left > 0:
            self._jog_left -= dt
            if self._jog_left <= 0:
                self._jog_speed, self._jog_left = 0.0, 0.0

    def _advance_process(self, dt: float) -> None:
        if self.state in _PRODUCTION_ROTATION:
            self.revolutions += self._true_speed / 60.0 * dt
        if self.state is PackMLState.EXECUTE:
            self.elapsed_time += dt

    def _advance_material(self, dt: float) -> None:
        if self._charge_pending > 0:
            flow = min(self._charge_pending, self.limits.charge_rate_kg_per_s * dt)
            self._charge_pending -= flow
            self._mass += flow
        if self._discharging and self.discharge_valve_open:
            flow = min(self._mass, self.limits.discharge_rate_kg_per_s * dt)
            self._mass -= flow
            if self._mass <= 1e-9:
                self._mass = 0.0
                self._empty_for += dt
                if self._empty_for >= self.limits.discharge_close_delay_s:
                    self.discharge_valve_open = False
                    self._discharging = False
        if Fault.LOAD_CELL_DRIFT in self._faults.active:
            self._drift += self.limits.drift_kg_per_s * dt

    def _advance_motor(self, dt: float) -> None:
        speed = self._true_speed
        if speed <= 1e-6:
            self._current = 0.0
        else:
            load = 1.2 + 0.004 * self._mass + 0.08 * speed
            if Fault.OVER_CURRENT in self._faults.active:
                load += self.limits.jam_extra_current_a
            self._current = load
        if self._current > self.limits.trip_current_a:
            self._overcurrent_for += dt
            if self._overcurrent_for >= self.limits.trip_delay_s:
                self._raise_alarm(ALARM_MOTOR_OVERCURRENT)
                self._trip()
        else:
            self._overcurrent_for = 0.0

    def _advance_temperature(self, dt: float) -> None:
        equilibrium = self.limits.ambient_c + 0.1 * self._true_speed
        tau = 60.0
        heating = (
            self.limits.heating_c_per_s if Fault.OVER_TEMPERATURE in self._faults.active else 0.0
        )
        self.temperature += ((equilibrium - self.temperature) / tau + heating) * dt

    def _advance_load_cell(self, dt: float) -> None:
        inflow = self._charge_pending > 0
        impact = self.limits.charge_rate_kg_per_s * 0.2 if inflow else 0.0
        wobble = 0.3 * self._mass / 100.0 * math.sin(self.revolutions * 2 * math.pi)
        self._cell.step(self._mass + impact + wobble, dt)
        if (
            abs(self._cell.velocity) < 0.05
            and not inflow
            and self._true_speed <= 1e-6
            and not self.discharge_valve_open
        ):
            self._cell.stable_for += dt
        else:
            self._cell.stable_for = 0.0

    def _advance_state(self, dt: float) -> None:
        state = self.state
        if state in _ACTING_STATES and self._state_time >= self.limits.acting_state_s:
            if state is PackMLState.RESETTING:
                self.elapsed_time = 0.0
                self.revolutions = 0.0
            if state is PackMLState.CLEARING:
                for code in (ALARM_MOTOR_OVERCURRENT.code, ALARM_LID_OPEN_RUNNING.code):
                    self._clear_alarm(code)
            self._enter(_ACTING_STATES[state], self.last_command_result)
        elif state in _DECELERATING and self._true_speed <= 1e-6:
            self._enter(_DECELERATING[state], self.last_command_result)
        elif state is PackMLState.EXECUTE and self._blend_done():
            self._enter(PackMLState.COMPLETING, "Blend complete")

    def _blend_done(self) -> bool:
        if self.revolutions_setpoint > 0:
            return self.revolutions >= self.revolutions_setpoint
        return self.elapsed_time >= self.blend_time_setpoint

    def _update_alarms(self) -> None:
        limits = self.limits
        if self.temperature >= limits.temp_high_c:
            if not self._alarm_is_active(ALARM_TEMP_HIGH.code):
                self._raise_alarm(ALARM_TEMP_HIGH)
                if self.state in (PackMLState.EXECUTE, PackMLState.STARTING, PackMLState.UNHOLDING):
                    self._enter(PackMLState.HOLDING, "Hold by PLC: product temperature high")
        elif self.temperature < limits.temp_high_c - limits.temp_hysteresis_c:
            self._clear_alarm(ALARM_TEMP_HIGH.code)
        if abs(self._drift) > limits.drift_alarm_kg:
            self._raise_alarm(ALARM_LOADCELL_DRIFT)
        elif abs(self._drift) < limits.drift_alarm_kg / 2:
            self._clear_alarm(ALARM_LOADCELL_DRIFT.code)
        if not self.load_cell_ok:
            self._raise_alarm(ALARM_LOADCELL_FAULT)
        else:
            self._clear_alarm(ALARM_LOADCELL_FAULT.code)

    def _sample_noise(self) -> None:
        rng = self._rng
        rotating = self._true_speed > 1e-6
        self._noisy_speed = max(0.0, self._true_speed + (rng.gauss(0.0, 0.03) if rotating else 0.0))
        self._noisy_current = max(0.0, self._current + (rng.gauss(0.0, 0.02) if rotating else 0.0))
        self._noisy_temperature = self.temperature + rng.gauss(0.0, 0.01)
        reading = self._cell.reading + self._drift + rng.gauss(0.0, 0.01)
        self._noisy_weight = min(self.limits.load_cell_max_kg, max(0.0, reading))

    def _raise_alarm(self, definition: AlarmDefinition) -> None:
        if self._alarm_is_active(definition.code):
            return
        alarm = Alarm(definition.code, definition.severity, definition.message, True, self.sim_time)
        self._alarms[definition.code] = alarm
        self._alarm_log.append(alarm)

    def _clear_alarm(self, code: str) -> None:
        alarm = self._alarms.get(code)
        if alarm is None or not alarm.active:
            return
        cleared = replace(alarm, active=False, cleared_at=self.sim_time)
        self._alarms[code] = cleared
        self._alarm_log.append(cleared)

    def _alarm_is_active(self, code: str) -> bool:
        alarm = self._alarms.get(code)
        return alarm is not None and alarm.active

    def _enter(self, state: PackMLState, result: str) -> None:
        self.state = state
        self._state_time = 0.0
        self.last_command_result = result

    def _reject(self, kind: RejectKind, reason: str) -> NoReturn:
        self.last_command_result = f"rejected: {reason}"
        raise CommandRejected(kind, reason)

    def _require_state(self, command: str, allowed: Iterable[PackMLState]) -> None:
        if self.state not in set(allowed):
            self._reject(RejectKind.STATE, f"{command} refused in state {self.state.label}")

    def _require_at_rest(self, command: str) -> None:
        if self.state not in _AT_REST or self._true_speed > 1e-6 or self._jog_speed > 0:
            self._reject(
                RejectKind.STATE, f"{command} refused: the drum is not at rest ({self.state.label})"
            )

    def _require_safe_to_rotate(self, command: str) -> None:
        if self.estop:
            self._reject(RejectKind.INTERLOCK, f"{command} refused: emergency stop pressed")
        if not self.lid_closed:
            self._reject(RejectKind.INTERLOCK, f"{command} refused: lid open")
        if self.discharge_valve_open:
            self._reject(RejectKind.INTERLOCK, f"{command} refused: discharge valve open")
