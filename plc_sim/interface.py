"""The simulator's OPC UA interface as data: one table the server builds from and tests check.

``docs/plc-interface.md`` documents exactly this table; a PLC programmer who exposes the same
namespace, browse names, types and methods can replace the simulator without any change to the
HMI. Node IDs are strings (``ns=<index of NAMESPACE_URI>;s=Blender.Speed``) so they stay the
same from one start to the next.
"""

from __future__ import annotations

from dataclasses import dataclass

NAMESPACE_URI = "urn:line-hmi:plc-sim:blender"
BLENDER = "Blender"
SIMULATION = "Simulation"
ALARM_EVENT_TYPE = "BlenderAlarmEventType"
DEFAULT_PORT = 4840
ENDPOINT_PATH = "/blender/"
DEFAULT_USERNAME = "hmi"

RW = "read/write"
RO = "read"


@dataclass(frozen=True)
class UnitDef:
    """Engineering unit as OPC UA publishes it (UNECE common code and display text)."""

    code: str
    display: str


RPM = UnitDef("RPM", "rpm")
SECOND = UnitDef("SEC", "s")
AMPERE = UnitDef("AMP", "A")
CELSIUS = UnitDef("CEL", "°C")
KILOGRAM = UnitDef("KGM", "kg")


@dataclass(frozen=True)
class VariableDef:
    """One published variable: browse name, type, unit, engineering range and access."""

    name: str
    data_type: str
    description: str
    unit: UnitDef | None = None
    low: float | None = None
    high: float | None = None
    access: str = RO
    array: bool = False

    @property
    def writable(self) -> bool:
        return self.access == RW


@dataclass(frozen=True)
class ArgumentDef:
    name: str
    data_type: str
    description: str


@dataclass(frozen=True)
class MethodDef:
    name: str
    description: str
    inputs: tuple[ArgumentDef, ...] = ()
    outputs: tuple[ArgumentDef, ...] = ()


BLENDER_VARIABLES: tuple[VariableDef, ...] = (
    VariableDef("State", "String", "PackML state name (Stopped, Idle, Execute, Held...)"),
    VariableDef("StateCode", "Int32", "PackML state number (ISA-TR88.00.02)", low=1, high=17),
    VariableDef("Mode", "String", "Unit mode: production or service"),
    VariableDef("SpeedSetpoint", "Double", "Drum speed setpoint", RPM, 0, 30, access=RW),
    VariableDef("Speed", "Double", "Measured drum speed", RPM, 0, 35),
    VariableDef(
        "BlendTimeSetpoint",
        "Double",
        "Blend time at speed; latched while the blend runs",
        SECOND,
        0,
        3600,
        access=RW,
    ),
    VariableDef(
        "RevolutionsSetpoint",
        "UInt32",
        "Revolutions to blend; 0 means use the blend time",
        None,
        0,
        100_000,
        access=RW,
    ),
    VariableDef("ElapsedTime", "Double", "Time in Execute for this batch", SECOND, 0, 86_400),
    VariableDef("Revolutions", "Double", "Drum revolutions for this batch", None, 0, 1_000_000),
    VariableDef("MotorCurrent", "Double", "Drive motor current", AMPERE, 0, 20),
    VariableDef("ProductTemperature", "Double", "Product temperature", CELSIUS, -10, 100),
    VariableDef("Weight", "Double", "Load-cell weight of the bin contents", KILOGRAM, 0, 600),
    VariableDef("WeightStable", "Boolean", "Load-cell reading settled (no motion, no inflow)"),
    VariableDef("LidClosed", "Boolean", "Lid closed switch"),
    VariableDef("DischargeValveOpen", "Boolean", "Discharge valve open"),
    VariableDef("EStop", "Boolean", "Emergency stop pressed"),
    VariableDef("Heartbeat", "UInt32", "Incremented every PLC scan (about 20 Hz); wraps"),
    VariableDef("LastCommandResult", "String", "Outcome of the last command, with the reason"),
    VariableDef("ActiveAlarms", "String", "Codes of the alarms active now", array=True),
)

SIMULATION_VARIABLES: tuple[VariableDef, ...] = (
    VariableDef("TimeScale", "Double", "Simulated seconds per wall-clock second"),
    VariableDef("Seed", "Int64", "Seed of the measurement-noise generator"),
    VariableDef("ActiveFaults", "String", "Faults injected now", array=True),
)

_QUANTITY = ArgumentDef("Quantity", "Double", "Material to charge, kg (0 < q <= free capacity)")
_JOG_SPEED = ArgumentDef("Speed", "Double", "Jog speed, rpm (0 stops, at most 5)")
_MODE = ArgumentDef("Mode", "String", "production or service")

BLENDER_METHODS: tuple[MethodDef, ...] = (
    MethodDef("Start", "Idle -> Starting -> Execute (production mode, interlocks healthy)"),
    MethodDef("Hold", "Starting/Execute/Unholding -> Holding -> Held"),
    MethodDef("Unhold", "Held -> Unholding -> Execute"),
    MethodDef("Stop", "Any state except Stopping/Stopped/Aborting/Aborted/Clearing -> Stopping"),
    MethodDef("Abort", "Any state except Aborting/Aborted -> Aborting -> Aborted"),
    MethodDef("Reset", "Stopped/Complete -> Resetting -> Idle"),
    MethodDef("Clear", "Aborted -> Clearing -> Stopped (resets latched trips)"),
    MethodDef("Charge", "Pour material through the open lid", (_QUANTITY,)),
    MethodDef("Discharge", "Open the discharge valve; closes itself 2 s after empty"),
    MethodDef("CloseValve", "Close the discharge valve now"),
    MethodDef("OpenLid", "Open the lid (drum at rest only)"),
    MethodDef("CloseLid", "Close the lid"),
    MethodDef("Jog", "Service mode: inch the drum for 5 s at a limited speed", (_JOG_SPEED,)),
    MethodDef(
        "CalibrationCheck",
        "Service mode: check the load cell against the 20 kg reference weight",
        outputs=(
            ArgumentDef("ReferenceWeight", "Double", "Reference weight, kg"),
            ArgumentDef("MeasuredWeight", "Double", "Weight the load cell read, kg"),
            ArgumentDef("Passed", "Boolean", "Within 0.1 kg of the reference"),
        ),
    ),
    MethodDef("SetMode", "Switch unit mode (drum at rest only)", (_MODE,)),
)

SIMULATION_METHODS: tuple[MethodDef, ...] = (
    MethodDef(
        "InjectFault",
        "Make something go wrong (see the fault table)",
        (
            ArgumentDef("Fault", "String", "Fault name"),
            ArgumentDef("Value", "Double", "comm_freeze: seconds (0 = until cleared); else 0"),
        ),
    ),
    MethodDef(
        "ClearFault",
        "Remove an injected fault ('' or 'all' removes every fault)",
        (ArgumentDef("Fault", "String", "Fault name, '' or 'all'"),),
    ),
    MethodDef("ResetSimulation", "Back to the power-on state with the same seed"),
)

METHOD_RESULT_CODES: dict[str, str] = {
    "state": "BadInvalidState",
    "mode": "BadInvalidState",
    "interlock": "BadRequestNotAllowed",
    "argument": "BadOutOfRange",
}
"""How a refused command is reported (the reason is in ``LastCommandResult``)."""


def string_node_id(*parts: str) -> str:
    """The string identifier of a node: ``Blender.Speed``, ``Simulation.InjectFault``."""
    return ".".join(parts)
