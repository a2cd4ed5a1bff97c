"""PLC connection settings (``[plc]`` in hmi.toml): endpoint, security, timings and the tag map.

The tag map is what lets the HMI drive another OPC UA server by configuration alone: every
logical tag the HMI uses (``speed``, ``weight``, ``state``...) names a node (browse path or
node ID), its type, unit and valid range; every command (``start``, ``charge``...) names a
method and its arguments. The defaults describe the bundled simulator
(``docs/plc-interface.md``), so a default configuration talks to it.

Paths to files are relative to the site data directory, like everywhere in hmi.toml.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

TAG_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
SIM_NAMESPACE_URI = "urn:line-hmi:plc-sim:blender"
PACKML_STATES = (
    "Clearing",
    "Stopped",
    "Starting",
    "Idle",
    "Suspended",
    "Execute",
    "Stopping",
    "Aborting",
    "Aborted",
    "Holding",
    "Held",
    "Unholding",
    "Suspending",
    "Unsuspending",
    "Resetting",
    "Completing",
    "Complete",
)
REQUIRED_TAGS = ("state", "heartbeat")
"""Tags the gateway itself needs: the PackML state and the heartbeat it supervises."""

TagType = Literal["float", "int", "bool", "str", "str_list"]
ArgType = Literal["float", "int", "bool", "str"]
_NUMERIC = ("float", "int")


class _Strict(BaseModel):
    # Strict: a number is a number (``true`` is not 1), text is text; no inf or nan.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def _as_tuple(value: object) -> object:
    """TOML arrays are lists; these settings keep them as tuples."""
    return tuple(value) if isinstance(value, list) else value


Choices = Annotated[tuple[str, ...] | None, BeforeValidator(_as_tuple)]


def _check_range(low: float | None, high: float | None, kind: str, what: str) -> None:
    if (low is not None or high is not None) and kind not in _NUMERIC:
        raise ValueError(f"{what}: low/high only apply to float and int values, not {kind}")
    if low is not None and high is not None and low > high:
        raise ValueError(f"{what}: low ({low}) is above high ({high})")


class TagSpec(_Strict):
    """One logical tag: where it lives on the server and what a good value looks like."""

    path: str | None = None
    node: str | None = None
    type: TagType
    unit: str = ""
    low: float | None = None
    high: float | None = None
    choices: Choices = None
    writable: bool = False
    description: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.path is None) == (self.node is None):
            raise ValueError("give exactly one of path (browse path) or node (node ID)")
        _check_range(self.low, self.high, self.type, "range")
        if self.choices is not None and self.type != "str":
            raise ValueError("choices only apply to str values")
        if self.writable and self.type == "str_list":
            raise ValueError("str_list tags cannot be written")
        return self


class ArgSpec(_Strict):
    """One method input argument: checked before anything is sent."""

    name: Annotated[str, Field(min_length=1)]
    type: ArgType
    unit: str = ""
    low: float | None = None
    high: float | None = None
    choices: Choices = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        _check_range(self.low, self.high, self.type, f"argument {self.name}")
        if self.choices is not None and self.type != "str":
            raise ValueError(f"argument {self.name}: choices only apply to str values")
        return self


class MethodSpec(_Strict):
    """A command: a method found by browse path (its object is the parent) or by node IDs."""

    path: str | None = None
    node: str | None = None
    object_node: str | None = None
    args: Annotated[tuple[ArgSpec, ...], BeforeValidator(_as_tuple)] = ()
    description: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.path is None and (self.node is None or self.object_node is None):
            raise ValueError("give path, or both node and object_node")
        if self.path is not None and (self.node is not None or self.object_node is not None):
            raise ValueError("give path, or node and object_node, not both")
        return self


class AlarmSettings(_Strict):
    """Where PLC alarms come from: an event source, its event type and field names."""

    source: str = "Blender"
    event_type: str = "BlenderAlarmEventType"
    code_field: str = "AlarmCode"
    active_field: str = "Active"
    active_list_tag: str | None = "active_alarms"


def _tag(path: str, type_: TagType, unit: str = "", **extra: object) -> TagSpec:
    return TagSpec.model_validate({"path": path, "type": type_, "unit": unit, **extra})


def _method(path: str, *args: ArgSpec) -> MethodSpec:
    return MethodSpec(path=path, args=tuple(args))


DEFAULT_TAGS: dict[str, TagSpec] = {
    "state": _tag("Blender/State", "str", choices=PACKML_STATES),
    "state_code": _tag("Blender/StateCode", "int", low=1, high=17),
    "mode": _tag("Blender/Mode", "str", choices=("production", "service")),
    "speed_setpoint": _tag("Blender/SpeedSetpoint", "float", "rpm", low=0, high=30, writable=True),
    "speed": _tag("Blender/Speed", "float", "rpm", low=0, high=35),
    "blend_time_setpoint": _tag(
        "Blender/BlendTimeSetpoint", "float", "s", low=0, high=3600, writable=True
    ),
    "revolutions_setpoint": _tag(
        "Blender/RevolutionsSetpoint", "int", low=0, high=100_000, writable=True
    ),
    "elapsed_time": _tag("Blender/ElapsedTime", "float", "s", low=0, high=86_400),
    "revolutions": _tag("Blender/Revolutions", "float", low=0, high=1_000_000),
    "motor_current": _tag("Blender/MotorCurrent", "float", "A", low=0, high=20),
    "product_temperature": _tag("Blender/ProductTemperature", "float", "°C", low=-10, high=100),
    "weight": _tag("Blender/Weight", "float", "kg", low=0, high=600),
    "weight_stable": _tag("Blender/WeightStable", "bool"),
    "lid_closed": _tag("Blender/LidClosed", "bool"),
    "discharge_valve_open": _tag("Blender/DischargeValveOpen", "bool"),
    "estop": _tag("Blender/EStop", "bool"),
    "heartbeat": _tag("Blender/Heartbeat", "int"),
    "last_command_result": _tag("Blender/LastCommandResult", "str"),
    "active_alarms": _tag("Blender/ActiveAlarms", "str_list"),
}

DEFAULT_METHODS: dict[str, MethodSpec] = {
    "start": _method("Blender/Start"),
    "hold": _method("Blender/Hold"),
    "unhold": _method("Blender/Unhold"),
    "stop": _method("Blender/Stop"),
    "abort": _method("Blender/Abort"),
    "reset": _method("Blender/Reset"),
    "clear": _method("Blender/Clear"),
    "charge": _method(
        "Blender/Charge", ArgSpec(name="quantity", type="float", unit="kg", low=0.01, high=500)
    ),
    "discharge": _method("Blender/Discharge"),
    "close_valve": _method("Blender/CloseValve"),
    "open_lid": _method("Blender/OpenLid"),
    "close_lid": _method("Blender/CloseLid"),
    "jog": _method("Blender/Jog", ArgSpec(name="speed", type="float", unit="rpm", low=0, high=5)),
    "calibration_check": _method("Blender/CalibrationCheck"),
    "set_mode": _method(
        "Blender/SetMode", ArgSpec(name="mode", type="str", choices=("production", "service"))
    ),
}


class PlcSettings(_Strict):
    """Where the PLC is, how to reach it securely, and what the HMI reads, writes and calls."""

    endpoint: str = "opc.tcp://127.0.0.1:4840/blender/"
    namespace_uri: Annotated[str, Field(min_length=1)] = SIM_NAMESPACE_URI
    security_mode: Literal["SignAndEncrypt", "Sign", "None"] = "SignAndEncrypt"
    security_policy: Literal["Basic256Sha256"] = "Basic256Sha256"
    allow_insecure: bool = False
    username: str = "hmi"
    password: SecretStr = SecretStr("")
    password_file: str = "plc/password"  # noqa: S105 - a path, not a password
    server_certificate: str = "plc/pki/trusted/server.der"
    client_certificate: str = "plc/pki/own/client-cert.der"
    client_private_key: str = "plc/pki/own/client-key.pem"
    application_uri: Annotated[str, Field(min_length=1)] = "urn:line-hmi:hmi"
    publishing_interval_ms: Annotated[int, Field(ge=10, le=10_000)] = 50
    heartbeat_tag: str = "heartbeat"
    heartbeat_timeout_s: Annotated[float, Field(ge=0.2, le=60)] = 1.0
    request_timeout_s: Annotated[float, Field(ge=0.1, le=60)] = 2.0
    reconnect_initial_s: Annotated[float, Field(ge=0.05, le=60)] = 0.5
    reconnect_max_s: Annotated[float, Field(ge=0.05, le=600)] = 10.0
    last_result_tag: str | None = "last_command_result"
    alarms: AlarmSettings = AlarmSettings()
    tags: dict[str, TagSpec] = Field(default_factory=lambda: dict(DEFAULT_TAGS))
    methods: dict[str, MethodSpec] = Field(default_factory=lambda: dict(DEFAULT_METHODS))

    @field_validator("endpoint")
    @classmethod
    def _opc_tcp(cls, value: str) -> str:
        found = re.match(r"^opc\.tcp://[^/:\s]+:(\d{1,5})(/\S*)?$", value)
        if not found:
            raise ValueError("expected opc.tcp://HOST:PORT/PATH")
        if not 1 <= int(found.group(1)) <= 65535:
            raise ValueError(f"port {found.group(1)} is not a TCP port (1-65535)")
        return value

    @field_validator("tags", "methods")
    @classmethod
    def _names(cls, value: dict[str, object]) -> dict[str, object]:
        bad = [name for name in value if not re.match(TAG_NAME_PATTERN, name)]
        if bad:
            raise ValueError(
                f"names must be lower-case letters, digits and '_' (got {', '.join(bad)})"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.security_mode == "None" and not self.allow_insecure:
            raise ValueError(
                'security_mode = "None" sends commands and passwords in clear text; '
                "set allow_insecure = true to accept that (test benches only)"
            )
        if not self.username and not self.allow_insecure:
            raise ValueError("a username is required unless allow_insecure = true")
        for name in REQUIRED_TAGS:
            if name not in self.tags:
                raise ValueError(f"the tag map needs a {name!r} tag")
        references = {
            "heartbeat_tag": self.heartbeat_tag,
            "last_result_tag": self.last_result_tag,
            "alarms.active_list_tag": self.alarms.active_list_tag,
        }
        for key, tag in references.items():
            if tag is not None and tag not in self.tags:
                raise ValueError(f"{key} names {tag!r}, which is not in the tag map")
        if self.tags[self.heartbeat_tag].type != "int":
            raise ValueError("the heartbeat tag must be an int counter")
        if self.alarms.active_list_tag and self.tags[self.alarms.active_list_tag].type != (
            "str_list"
        ):
            raise ValueError("alarms.active_list_tag must name a str_list tag")
        if self.reconnect_initial_s > self.reconnect_max_s:
            raise ValueError("reconnect_initial_s must not exceed reconnect_max_s")
        if self.heartbeat_timeout_s * 1000 < 3 * self.publishing_interval_ms:
            raise ValueError(
                "heartbeat_timeout_s must be at least three publishing intervals, or every "
                "slow publish would look like a lost connection"
            )
        return self

    @property
    def secure(self) -> bool:
        return self.security_mode != "None"
