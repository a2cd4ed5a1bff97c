"""The simulator's OPC UA server: the blender model behind a real PLC-style address space.

One :class:`SimulatorServer` owns a :class:`~plc_sim.model.BlenderModel`, ticks it on a
fixed scan interval (the "PLC scan"), publishes every changed value with a source timestamp,
increments a heartbeat each scan, and turns model alarm transitions into OPC UA events. Client
writes to setpoints go through the model, so a write the PLC logic refuses is refused on the
wire and a write the PLC ignores reads back unchanged, exactly the cases the HMI must handle.

Run it with ``async with SimulatorServer(config) as sim:`` inside an event loop, with
:class:`SimulatorThread` from synchronous code (tests), or as the ``plc-sim`` command.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import logging
import math
import random
import socket
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from plc_sim import interface as itf
from plc_sim._ua import Server, ServiceError, ua
from plc_sim.model import BlenderModel, CommandRejected, Fault, RejectKind
from plc_sim.security import (
    APPLICATION_URI,
    PasswordUserManager,
    PkiLayout,
    TrustedClientValidator,
    ensure_server_certificate,
    fingerprint,
    load_or_create_password,
    trust_client_certificate,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

_UNITS_NAMESPACE = "http://www.opcfoundation.org/UA/units/un/cefact"
_REJECT_STATUS = {
    RejectKind.STATE: ua.StatusCodes.BadInvalidState,
    RejectKind.MODE: ua.StatusCodes.BadInvalidState,
    RejectKind.INTERLOCK: ua.StatusCodes.BadRequestNotAllowed,
    RejectKind.ARGUMENT: ua.StatusCodes.BadOutOfRange,
}


class SimulatorError(Exception):
    """The simulator could not start (port in use, unreadable key material...)."""


@dataclass(frozen=True)
class SimulatorConfig:
    """How to run the simulator; defaults match the HMI's default ``[plc]`` settings."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = itf.DEFAULT_PORT
    seed: int = 0
    time_scale: float = 1.0
    insecure: bool = False
    username: str = itf.DEFAULT_USERNAME
    password: str | None = None
    password_file: Path | None = None
    tick_interval_s: float = 0.05
    bench_tags: int = 0
    bench_rate_hz: float = 10.0
    trusted_clients: Sequence[Path] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not (0 <= self.port <= 65535):
            raise ValueError(f"port must be 0-65535, got {self.port}")
        if self.time_scale <= 0 or not math.isfinite(self.time_scale):
            raise ValueError(f"time scale must be a positive number, got {self.time_scale}")
        if not (0.005 <= self.tick_interval_s <= 1.0):
            raise ValueError("tick interval must be 0.005-1 s")
        if self.bench_tags < 0 or self.bench_tags > 10_000:
            raise ValueError("bench tags must be 0-10000")
        if self.bench_rate_hz <= 0 or self.bench_rate_hz > 1000:
            raise ValueError("bench rate must be above 0 and at most 1000 Hz")
        if not self.username:
            raise ValueError("a username is required")

    @property
    def pki(self) -> PkiLayout:
        return PkiLayout(self.data_dir / "pki")

    @property
    def resolved_password_file(self) -> Path:
        return self.password_file or self.data_dir / "password"


def find_free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the OS picks it); for tests and ``--port 0``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's server does
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise SimulatorError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _unit_id(code: str) -> int:
    value = 0
    for char in code:
        value = (value << 8) | ord(char)
    return value


def _variant_type(name: str) -> Any:
    return ua.VariantType[name]


class SimulatorServer:
    """The blender simulator as an OPC UA server (start/stop or ``async with``)."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.model = BlenderModel(seed=config.seed, time_scale=config.time_scale)
        self._server: Any = None
        self._port = config.port
        self._ns = 0
        self._nodes: dict[str, Any] = {}
        self._types: dict[str, Any] = {}
        self._published: dict[str, Any] = {}
        self._dirty: set[str] = set()
        self._writable: set[str] = set()
        self._bench_nodes: list[Any] = []
        self._heartbeat = 0
        self._frozen_until: float | None = None
        self._internal_write = False
        self._event_gen: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._publish_lock = asyncio.Lock()
        self.certificate_path: Path = config.pki.certificate
        self.password_file: Path = config.resolved_password_file
        self.started = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle

    @property
    def port(self) -> int:
        return self._port

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.config.host}:{self._port}{itf.ENDPOINT_PATH}"

    @property
    def certificate_fingerprint(self) -> str:
        return fingerprint(self.certificate_path.read_bytes())

    @property
    def heartbeat(self) -> int:
        return self._heartbeat

    async def __aenter__(self) -> SimulatorServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Build the address space and listen; returns once clients can connect."""
        config = self.config
        if config.port:
            _check_port_free(config.host, config.port)  # fail before the slow part
        config.data_dir.mkdir(parents=True, exist_ok=True)
        pki = config.pki
        self.certificate_path = ensure_server_certificate(pki, config.host)
        for client_cert in config.trusted_clients:
            trust_client_certificate(pki, client_cert)
        password = (
            config.password
            if config.password is not None
            else load_or_create_password(self.password_file)
        )
        server = Server(user_manager=PasswordUserManager({config.username: password}))
        await server.init()
        server.set_server_name("line-hmi PLC simulator (powder blender)")
        await server.set_application_uri(APPLICATION_URI)
        policies = [ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt]
        if config.insecure:
            policies.append(ua.SecurityPolicyType.NoSecurity)
        server.set_security_policy(policies)
        server.set_identity_tokens([ua.UserNameIdentityToken])
        await server.load_certificate(str(pki.certificate))
        await server.load_private_key(str(pki.private_key))
        server.set_certificate_validator(TrustedClientValidator(pki))
        self._server = server
        await self._build_address_space(server)
        await self._listen(server)
        await self._publish(force=True)
        self._tasks.append(asyncio.create_task(self._scan_loop(), name="plc-sim-scan"))
        if config.bench_tags:
            self._tasks.append(asyncio.create_task(self._bench_loop(), name="plc-sim-bench"))
        self.started.set()
        log.info("simulator listening on %s", self.endpoint)

    async def _listen(self, server: Any) -> None:
        server.set_endpoint(self.endpoint)
        try:
            await server.start()
        except OSError as exc:
            raise SimulatorError(
                f"cannot listen on {self.config.host}:{self._port}: {exc.strerror or exc}"
            ) from None
        if server.bserver is not None:
            self._port = server.bserver.port  # the real port when 0 asked the OS to pick one
        server.set_endpoint(self.endpoint)

    async def stop(self) -> None:
        """Stop scanning and close every client connection."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop()
        self.started.clear()

    # ------------------------------------------------------------------ address space

    async def _build_address_space(self, server: Any) -> None:
        self._ns = await server.register_namespace(itf.NAMESPACE_URI)
        objects = server.nodes.objects
        blender = await objects.add_object(
            ua.NodeId(itf.BLENDER, self._ns), ua.QualifiedName(itf.BLENDER, self._ns)
        )
        simulation = await objects.add_object(
            ua.NodeId(itf.SIMULATION, self._ns), ua.QualifiedName(itf.SIMULATION, self._ns)
        )
        for var in itf.BLENDER_VARIABLES:
            await self._add_variable(blender, itf.BLENDER, var)
        for var in itf.SIMULATION_VARIABLES:
            await self._add_variable(simulation, itf.SIMULATION, var)
        blender_actions = self._blender_actions()
        for method in itf.BLENDER_METHODS:
            await self._add_method(blender, itf.BLENDER, method, blender_actions[method.name])
        sim_actions = self._simulation_actions()
        for method in itf.SIMULATION_METHODS:
            await self._add_method(simulation, itf.SIMULATION, method, sim_actions[method.name])
        if self.config.bench_tags:
            bench = await simulation.add_folder(
                ua.NodeId("Simulation.Bench", self._ns), ua.QualifiedName("Bench", self._ns)
            )
            for i in range(self.config.bench_tags):
                name = f"Tag{i:04d}"
                node = await bench.add_variable(
                    ua.NodeId(f"Simulation.Bench.{name}", self._ns),
                    ua.QualifiedName(name, self._ns),
                    0.0,
                    ua.VariantType.Double,
                )
                self._bench_nodes.append(node.nodeid)
        event_type = await server.nodes.base_event_type.add_object_type(
            ua.NodeId(itf.ALARM_EVENT_TYPE, self._ns),
            ua.QualifiedName(itf.ALARM_EVENT_TYPE, self._ns),
        )
        await event_type.add_property(
            ua.NodeId(f"{itf.ALARM_EVENT_TYPE}.AlarmCode", self._ns),
            ua.QualifiedName("AlarmCode", self._ns),
            "",
            ua.VariantType.String,
        )
        await event_type.add_property(
            ua.NodeId(f"{itf.ALARM_EVENT_TYPE}.Active", self._ns),
            ua.QualifiedName("Active", self._ns),
            False,
            ua.VariantType.Boolean,
        )
        self._event_gen = await server.get_event_generator(event_type, blender)

    async def _add_variable(self, parent: Any, prefix: str, var: itf.VariableDef) -> None:
        assert self._server is not None
        vtype = _variant_type(var.data_type)
        key = itf.string_node_id(prefix, var.name)
        initial: Any = [] if var.array else ua.get_default_value(vtype)
        item = ua.AddNodesItem()
        item.RequestedNewNodeId = ua.NodeId(key, self._ns)
        item.BrowseName = ua.QualifiedName(var.name, self._ns)
        item.NodeClass = ua.NodeClass.Variable
        item.ParentNodeId = parent.nodeid
        item.ReferenceTypeId = ua.NodeId(ua.ObjectIds.HasComponent)
        analog = var.unit is not None or var.low is not None
        item.TypeDefinition = ua.NodeId(
            ua.ObjectIds.AnalogItemType if analog else ua.ObjectIds.BaseDataVariableType
        )
        attrs = ua.VariableAttributes()
        attrs.Description = ua.LocalizedText(var.description)
        attrs.DisplayName = ua.LocalizedText(var.name)
        attrs.DataType = ua.NodeId(vtype.value)
        attrs.Value = ua.Variant(initial, vtype, is_array=var.array)
        attrs.ValueRank = ua.ValueRank.OneDimension if var.array else ua.ValueRank.Scalar
        attrs.ArrayDimensions = [0] if var.array else None
        access = ua.AccessLevel.CurrentRead.mask
        if var.writable:
            access |= ua.AccessLevel.CurrentWrite.mask
        attrs.AccessLevel = access
        attrs.UserAccessLevel = access
        attrs.WriteMask = 0
        attrs.UserWriteMask = 0
        item.NodeAttributes = attrs
        result = (await self._server.iserver.isession.add_nodes([item]))[0]
        result.StatusCode.check()
        node = self._server.get_node(result.AddedNodeId)
        if var.low is not None and var.high is not None:
            await node.add_property(
                ua.NodeId(f"{key}.EURange", self._ns),
                ua.QualifiedName("EURange", 0),
                ua.Range(Low=float(var.low), High=float(var.high)),
                ua.VariantType.ExtensionObject,
                ua.ObjectIds.Range,
            )
        if var.unit is not None:
            await node.add_property(
                ua.NodeId(f"{key}.EngineeringUnits", self._ns),
                ua.QualifiedName("EngineeringUnits", 0),
                ua.EUInformation(
                    NamespaceUri=_UNITS_NAMESPACE,
                    UnitId=_unit_id(var.unit.code),
                    DisplayName=ua.LocalizedText(var.unit.display),
                    Description=ua.LocalizedText(var.unit.display),
                ),
                ua.VariantType.ExtensionObject,
                ua.ObjectIds.EUInformation,
            )
        self._nodes[key] = node.nodeid
        self._types[key] = vtype
        if var.writable:
            self._writable.add(key)
            self._server.set_attribute_value_setter(node.nodeid, self._make_setter(key))

    async def _add_method(
        self,
        parent: Any,
        prefix: str,
        method: itf.MethodDef,
        action: Callable[..., Awaitable[list[Any]]],
    ) -> None:
        inputs = [self._argument(arg) for arg in method.inputs]
        outputs = [self._argument(arg) for arg in method.outputs]
        handler = self._method_handler(method, action)
        node = await parent.add_method(
            ua.NodeId(itf.string_node_id(prefix, method.name), self._ns),
            ua.QualifiedName(method.name, self._ns),
            handler,
            inputs,
            outputs,
        )
        await node.write_attribute(
            ua.AttributeIds.Description,
            ua.DataValue(ua.Variant(ua.LocalizedText(method.description))),
        )

    @staticmethod
    def _argument(arg: itf.ArgumentDef) -> Any:
        result = ua.Argument()
        result.Name = arg.name
        result.DataType = ua.NodeId(_variant_type(arg.data_type).value)
        result.ValueRank = ua.ValueRank.Scalar
        result.Description = ua.LocalizedText(arg.description)
        return result

    def _method_handler(
        self, method: itf.MethodDef, action: Callable[..., Awaitable[list[Any]]]
    ) -> Callable[..., Coroutine[Any, Any, Any]]:
        in_types = [_variant_type(arg.data_type) for arg in method.inputs]
        out_types = [_variant_type(arg.data_type) for arg in method.outputs]

        async def handler(parent: Any, *args: Any) -> Any:
            if len(args) < len(in_types):
                return ua.StatusCode(ua.StatusCodes.BadArgumentsMissing)
            if len(args) > len(in_types):
                return ua.StatusCode(ua.StatusCodes.BadTooManyArguments)
            values = []
            for arg, wanted in zip(args, in_types, strict=True):
                if arg.VariantType != wanted or arg.Value is None:
                    return ua.StatusCode(ua.StatusCodes.BadTypeMismatch)
                values.append(arg.Value)
            try:
                results = await action(*values)
            except CommandRejected as exc:
                log.info("%s refused: %s", method.name, exc.reason)
                await self._publish()
                return ua.StatusCode(_REJECT_STATUS[exc.kind])
            log.info("%s accepted", method.name)
            await self._publish()
            return [
                ua.Variant(value, vtype) for value, vtype in zip(results, out_types, strict=True)
            ]

        return handler

    def _make_setter(self, key: str) -> Callable[[Any, Any, Any], None]:
        def setter(node: Any, attr: Any, value: Any) -> None:
            stored = value
            if self._internal_write:
                self._internal_write = False
            else:
                written = value.Value.Value if value.Value is not None else None
                if written is None:
                    raise ServiceError(ua.StatusCodes.BadTypeMismatch)
                try:
                    self._apply_setpoint(key, written)
                except CommandRejected as exc:
                    log.info("write to %s refused: %s", key, exc.reason)
                    self._poke("Blender.LastCommandResult")
                    raise ServiceError(_REJECT_STATUS[exc.kind]) from None
                accepted = self._value_of(key)
                log.info("write to %s accepted: %s", key, accepted)
                if accepted != written:
                    stored = ua.DataValue(
                        ua.Variant(accepted, self._types[key]),
                        SourceTimestamp=value.SourceTimestamp,
                        ServerTimestamp=value.ServerTimestamp,
                    )
                    self._dirty.add(key)  # subscribers saw the written value: correct them
                self._published[key] = accepted
            node.attributes[attr].value = stored

        return setter

    def _poke(self, key: str) -> None:
        """Update a node's value at once, from a synchronous setter, so that a client reading
        it right after its refused write sees the reason; subscribers get it on the next scan.
        """
        node = self._server.iserver.aspace.get(self._nodes[key])
        if node is None:  # pragma: no cover - every key in the table has a node
            return
        stamp = dt.datetime.now(dt.UTC)
        variant = ua.Variant(self._value_of(key), self._types[key])
        node.attributes[ua.AttributeIds.Value].value = ua.DataValue(
            variant, SourceTimestamp=stamp, ServerTimestamp=stamp
        )
        self._dirty.add(key)

    def _apply_setpoint(self, key: str, value: Any) -> None:
        model = self.model
        if key == "Blender.SpeedSetpoint":
            model.set_speed_setpoint(float(value))
        elif key == "Blender.BlendTimeSetpoint":
            model.set_blend_time_setpoint(float(value))
        elif key == "Blender.RevolutionsSetpoint":
            model.set_revolutions_setpoint(int(value))
        else:  # pragma: no cover - the interface table and this switch are kept together
            raise ServiceError(ua.StatusCodes.BadNotWritable)

    # ------------------------------------------------------------------ actions

    def _blender_actions(self) -> dict[str, Callable[..., Awaitable[list[Any]]]]:
        def simple(fn_name: str) -> Callable[..., Awaitable[list[Any]]]:
            async def run(*args: Any) -> list[Any]:
                getattr(self.model, fn_name)(*args)
                return []

            return run

        async def calibration_check() -> list[Any]:
            result = self.model.calibration_check()
            return [result.reference_kg, result.measured_kg, result.passed]

        return {
            "Start": simple("start"),
            "Hold": simple("hold"),
            "Unhold": simple("unhold"),
            "Stop": simple("stop"),
            "Abort": simple("abort"),
            "Reset": simple("reset"),
            "Clear": simple("clear"),
            "Charge": simple("charge"),
            "Discharge": simple("discharge"),
            "CloseValve": simple("close_valve"),
            "OpenLid": simple("open_lid"),
            "CloseLid": simple("close_lid"),
            "Jog": simple("jog"),
            "CalibrationCheck": calibration_check,
            "SetMode": simple("set_mode"),
        }

    def _simulation_actions(self) -> dict[str, Callable[..., Awaitable[list[Any]]]]:
        async def inject(name: str, value: float) -> list[Any]:
            await self.inject_fault(_parse_fault(name), value)
            return []

        async def clear(name: str) -> list[Any]:
            await self.clear_fault(None if name in ("", "all") else _parse_fault(name))
            return []

        async def reset() -> list[Any]:
            await self.reset_simulation()
            return []

        return {"InjectFault": inject, "ClearFault": clear, "ResetSimulation": reset}

    async def inject_fault(self, fault: Fault, value: float = 0.0) -> None:
        """Inject a fault; for ``comm_freeze`` ``value`` is the freeze length in seconds."""
        if not math.isfinite(value) or value < 0:
            raise CommandRejected(RejectKind.ARGUMENT, "fault value must be 0 or positive")
        self.model.inject_fault(fault)
        if fault is Fault.COMM_FREEZE:
            loop = asyncio.get_running_loop()
            self._frozen_until = loop.time() + value if value > 0 else math.inf
        log.info("fault injected: %s", fault.value)

    async def clear_fault(self, fault: Fault | None = None) -> None:
        self.model.clear_fault(fault)
        if fault is None or fault is Fault.COMM_FREEZE:
            self._frozen_until = None
        log.info("fault cleared: %s", "all" if fault is None else fault.value)

    async def reset_simulation(self) -> None:
        """Power-cycle the simulated blender: same seed, no faults, no alarms."""
        self.model = BlenderModel(seed=self.config.seed, time_scale=self.config.time_scale)
        self._frozen_until = None
        await self._publish(force=True)

    # ------------------------------------------------------------------ scanning

    def _frozen(self, now: float) -> bool:
        if self._frozen_until is None:
            return False
        if now >= self._frozen_until:
            self.model.clear_fault(Fault.COMM_FREEZE)
            self._frozen_until = None
            return False
        return True

    async def _scan_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        interval = self.config.tick_interval_s
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            try:
                self.model.tick(now - last)
                last = now
                if self._frozen(now):
                    continue
                self._heartbeat = (self._heartbeat + 1) & 0xFFFFFFFF
                await self._publish()
            except Exception:  # keep scanning: a crashed PLC scan would freeze the trainer
                log.exception("simulator scan failed")

    async def _bench_loop(self) -> None:
        """Change every bench tag about ``bench_rate_hz`` times a second.

        The intervals are random (0.5 to 1.5 periods, seeded) so that changes land at every
        phase of a client's publishing cycle: latencies measured on them are not an artefact
        of two clocks ticking in step.
        """
        assert self._server is not None
        period = 1.0 / self.config.bench_rate_hz
        rng = random.Random(self.config.seed)
        loop = asyncio.get_running_loop()
        counter = 0
        next_at = loop.time()
        while True:
            next_at += period * rng.uniform(0.5, 1.5)
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            counter += 1
            stamp = dt.datetime.now(dt.UTC)
            for node_id in self._bench_nodes:
                await self._server.write_attribute_value(
                    node_id,
                    ua.DataValue(
                        ua.Variant(float(counter), ua.VariantType.Double),
                        SourceTimestamp=stamp,
                        ServerTimestamp=stamp,
                    ),
                )

    def _value_of(self, key: str) -> Any:
        model = self.model
        match key:
            case "Blender.State":
                return model.state.label
            case "Blender.StateCode":
                return model.state.value
            case "Blender.Mode":
                return model.mode.value
            case "Blender.SpeedSetpoint":
                return model.speed_setpoint
            case "Blender.Speed":
                return round(model.speed, 2)
            case "Blender.BlendTimeSetpoint":
                return model.blend_time_setpoint
            case "Blender.RevolutionsSetpoint":
                return model.revolutions_setpoint
            case "Blender.ElapsedTime":
                return round(model.elapsed_time, 1)
            case "Blender.Revolutions":
                return round(model.revolutions, 2)
            case "Blender.MotorCurrent":
                return round(model.motor_current, 2)
            case "Blender.ProductTemperature":
                return round(model.product_temperature, 2)
            case "Blender.Weight":
                return round(model.weight, 2)
            case "Blender.WeightStable":
                return model.weight_stable
            case "Blender.LidClosed":
                return model.lid_closed
            case "Blender.DischargeValveOpen":
                return model.discharge_valve_open
            case "Blender.EStop":
                return model.estop
            case "Blender.Heartbeat":
                return self._heartbeat
            case "Blender.LastCommandResult":
                return model.last_command_result
            case "Blender.ActiveAlarms":
                return sorted(a.code for a in model.active_alarms)
            case "Simulation.TimeScale":
                return model.time_scale
            case "Simulation.Seed":
                return model.seed
            case "Simulation.ActiveFaults":
                return list(model.active_faults)
        raise KeyError(key)  # pragma: no cover

    def _status_of(self, key: str) -> int | None:
        """A bad status to publish instead of the value (a failed sensor), or None."""
        if key == "Blender.Weight" and not self.model.load_cell_ok:
            return int(ua.StatusCodes.BadSensorFailure)
        return None

    async def _publish(self, *, force: bool = False) -> None:
        """Write every changed value (and pending alarm events) into the address space."""
        server = self._server
        if server is None:
            return
        if self._frozen_until is not None and not force:
            return
        async with self._publish_lock:
            stamp = dt.datetime.now(dt.UTC)
            for key, node_id in self._nodes.items():
                value = self._value_of(key)
                status = self._status_of(key)
                published = value if status is None else (status, None)
                if not force and key not in self._dirty and self._published.get(key) == published:
                    continue
                self._dirty.discard(key)
                self._published[key] = published
                if status is None:
                    variant = ua.Variant(value, self._types[key], is_array=isinstance(value, list))
                    data = ua.DataValue(variant, SourceTimestamp=stamp, ServerTimestamp=stamp)
                else:
                    data = ua.DataValue(
                        ua.Variant(None, ua.VariantType.Null),
                        StatusCode=ua.StatusCode(status),
                        SourceTimestamp=stamp,
                        ServerTimestamp=stamp,
                    )
                self._internal_write = key in self._writable
                try:
                    await server.write_attribute_value(node_id, data)
                finally:
                    self._internal_write = False
            for alarm in self.model.drain_alarm_events():
                await self._emit_alarm(alarm.code, alarm.severity, alarm.message, alarm.active)

    async def _emit_alarm(self, code: str, severity: int, message: str, active: bool) -> None:
        gen = self._event_gen
        if gen is None:
            return
        gen.event.AlarmCode = code
        gen.event.Active = active
        gen.event.Severity = severity
        state = "active" if active else "cleared"
        await gen.trigger(message=f"{message} ({state})")
        log.info("alarm %s %s", code, state)


def _parse_fault(name: str) -> Fault:
    try:
        return Fault(name)
    except ValueError:
        known = ", ".join(f.value for f in Fault)
        raise CommandRejected(
            RejectKind.ARGUMENT, f"unknown fault {name!r}; known faults: {known}"
        ) from None


class SimulatorThread:
    """Run a :class:`SimulatorServer` on its own event loop in a background thread.

    For synchronous code and test fixtures: the server keeps its own loop, so clients in the
    caller's loop see it as a separate machine. Use :meth:`call` to act on the server.
    """

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: SimulatorServer | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    @property
    def server(self) -> SimulatorServer:
        if self._server is None:
            raise SimulatorError("the simulator thread is not running")
        return self._server

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    def start(self, timeout: float = 30.0) -> SimulatorThread:
        self._thread = threading.Thread(target=self._run, name="plc-sim", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise SimulatorError(f"the simulator did not start within {timeout} s")
        if self._error is not None:
            raise SimulatorError(f"the simulator failed to start: {self._error}") from self._error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        server = SimulatorServer(self.config)
        try:
            await server.start()
        except BaseException as exc:  # reported to the thread that called start()
            self._error = exc
            self._ready.set()
            with contextlib.suppress(Exception):
                await server.stop()
            return
        self._server = server
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await server.stop()

    def call(self, fn: Callable[[SimulatorServer], Awaitable[T]], timeout: float = 10.0) -> T:
        """Run ``fn(server)`` on the simulator's loop and return its result."""
        if self._loop is None:
            raise SimulatorError("the simulator thread is not running")

        async def runner() -> T:
            return await fn(self.server)

        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(
            runner(), self._loop
        )
        return future.result(timeout)

    async def acall(
        self, fn: Callable[[SimulatorServer], Awaitable[T]], timeout: float = 10.0
    ) -> T:
        """Like :meth:`call`, awaitable from another event loop."""
        if self._loop is None:
            raise SimulatorError("the simulator thread is not running")

        async def runner() -> T:
            return await fn(self.server)

        future = asyncio.run_coroutine_threadsafe(runner(), self._loop)
        async with asyncio.timeout(timeout):
            return await asyncio.wrap_future(future)

    def stop(self, timeout: float = 10.0) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
        self._server = None

    def __enter__(self) -> SimulatorThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
