"""The documented OPC UA interface is what the simulator serves, node by node.

Browsed with a bare asyncua client (no HMI code), so a PLC programmer can trust
docs/plc-interface.md: every variable with its type, unit, range and access, every method with
its arguments, the alarm event type, and the default tag map of the HMI pointing at them.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

from hmi.plc import PlcSettings
from plc_sim import interface as itf
from plc_sim.model import ALARM_CATALOGUE, Fault
from plc_sim.server import SimulatorThread
from tests.integration.plc.support import APPLICATION_URI, PASSWORD, ClientSite

DOC = Path(__file__).resolve().parents[3] / "docs" / "plc-interface.md"
TYPE_IDS = {"Double": 11, "String": 12, "Boolean": 1, "UInt32": 7, "Int32": 6, "Int64": 8}
HMI_TYPES = {"Double": "float", "String": "str", "Boolean": "bool", "UInt32": "int", "Int32": "int"}


@pytest.fixture
async def client(sim: SimulatorThread, client_site: ClientSite) -> AsyncIterator[Any]:
    opc = Client(sim.endpoint, timeout=4)
    opc.application_uri = APPLICATION_URI
    opc.session_timeout = 60_000
    opc.set_user("hmi")
    opc.set_password(PASSWORD)
    await opc.set_security(
        SecurityPolicyBasic256Sha256,
        certificate=str(client_site.client_certificate),
        private_key=str(client_site.client_key),
        server_certificate=str(client_site.trusted("inproc")),
    )
    async with opc:
        yield opc


async def test_every_documented_variable_has_its_type_unit_range_and_access(client: Any) -> None:
    ns = await client.get_namespace_index(itf.NAMESPACE_URI)
    for prefix, table in (
        ("Blender", itf.BLENDER_VARIABLES),
        ("Simulation", itf.SIMULATION_VARIABLES),
    ):
        parent = await client.nodes.objects.get_child(f"{ns}:{prefix}")
        for var in table:
            node = await parent.get_child(f"{ns}:{var.name}")
            assert node.nodeid == ua.NodeId(f"{prefix}.{var.name}", ns)
            data_type = await node.read_data_type()
            assert data_type == ua.NodeId(TYPE_IDS[var.data_type]), var.name
            rank = await node.read_value_rank()
            assert rank == (1 if var.array else -1), var.name
            access = await node.read_attribute(ua.AttributeIds.UserAccessLevel)
            writable = bool(access.Value.Value & ua.AccessLevel.CurrentWrite.mask)
            assert writable is var.writable, var.name
            if var.low is not None:
                eu_range = await (await node.get_child("0:EURange")).read_value()
                assert (eu_range.Low, eu_range.High) == (var.low, var.high), var.name
            if var.unit is not None:
                units = await (await node.get_child("0:EngineeringUnits")).read_value()
                assert units.DisplayName.Text == var.unit.display, var.name
            description = await node.read_description()
            assert description.Text == var.description


async def test_every_documented_method_has_its_arguments(client: Any) -> None:
    ns = await client.get_namespace_index(itf.NAMESPACE_URI)
    for prefix, table in (("Blender", itf.BLENDER_METHODS), ("Simulation", itf.SIMULATION_METHODS)):
        parent = await client.nodes.objects.get_child(f"{ns}:{prefix}")
        for method in table:
            node = await parent.get_child(f"{ns}:{method.name}")
            assert await node.read_node_class() == ua.NodeClass.Method
            for kind, declared in (
                ("InputArguments", method.inputs),
                ("OutputArguments", method.outputs),
            ):
                if not declared:
                    continue
                arguments = await (await node.get_child(f"0:{kind}")).read_value()
                assert [(a.Name, a.DataType) for a in arguments] == [
                    (d.name, ua.NodeId(TYPE_IDS[d.data_type])) for d in declared
                ], method.name


async def test_alarm_events_carry_code_and_active_flag(client: Any) -> None:
    ns = await client.get_namespace_index(itf.NAMESPACE_URI)
    event_type = await client.nodes.base_event_type.get_child(f"{ns}:{itf.ALARM_EVENT_TYPE}")
    names = {(await p.read_browse_name()).Name for p in await event_type.get_properties()}
    assert names == {"AlarmCode", "Active"}


async def test_writes_are_type_strict_and_read_only_values_refuse_writes(client: Any) -> None:
    ns = await client.get_namespace_index(itf.NAMESPACE_URI)
    setpoint = client.get_node(ua.NodeId("Blender.SpeedSetpoint", ns))
    with pytest.raises(ua.uaerrors.BadTypeMismatch):
        await setpoint.write_value(ua.DataValue(ua.Variant(14.0, ua.VariantType.Float)))
    await setpoint.write_value(ua.DataValue(ua.Variant(14.0, ua.VariantType.Double)))
    assert await setpoint.read_value() == 14.0
    with pytest.raises(ua.uaerrors.BadOutOfRange):
        await setpoint.write_value(ua.DataValue(ua.Variant(31.0, ua.VariantType.Double)))
    speed = client.get_node(ua.NodeId("Blender.Speed", ns))
    with pytest.raises(ua.uaerrors.BadUserAccessDenied):
        await speed.write_value(ua.DataValue(ua.Variant(5.0, ua.VariantType.Double)))


async def test_refused_commands_answer_with_a_status_and_a_reason(client: Any) -> None:
    ns = await client.get_namespace_index(itf.NAMESPACE_URI)
    blender = await client.nodes.objects.get_child(f"{ns}:Blender")
    with pytest.raises(ua.uaerrors.BadInvalidState):
        await blender.call_method(f"{ns}:Start")  # powered up in Stopped
    reason = await client.get_node(ua.NodeId("Blender.LastCommandResult", ns)).read_value()
    assert reason == "rejected: Start refused in state Stopped"
    with pytest.raises(ua.uaerrors.BadTypeMismatch):
        await blender.call_method(f"{ns}:Charge", ua.Variant(5, ua.VariantType.Int32))


def test_the_document_names_every_node_method_alarm_and_fault() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert itf.NAMESPACE_URI in text
    for var in (*itf.BLENDER_VARIABLES, *itf.SIMULATION_VARIABLES):
        row = re.search(rf"^\| `[A-Za-z/]*{var.name}` \|.*$", text, re.MULTILINE)
        assert row is not None, f"{var.name} is not documented"
        assert var.data_type in row.group(0), var.name
        assert ("read/write" in row.group(0)) is var.writable, var.name
    for method in (*itf.BLENDER_METHODS, *itf.SIMULATION_METHODS):
        assert f"`{method.name}(" in text, f"method {method.name} is not documented"
    for alarm in ALARM_CATALOGUE:
        assert re.search(rf"\| `{alarm.code}` \| {alarm.severity} \|", text), alarm.code
    for fault in Fault:
        assert f"`{fault.value}`" in text, fault.value


def test_the_hmi_default_tag_map_matches_the_simulator_interface() -> None:
    defaults = PlcSettings()
    by_path = {f"Blender/{v.name}": v for v in itf.BLENDER_VARIABLES}
    for name, tag in defaults.tags.items():
        var = by_path[tag.path or ""]
        expected = "str_list" if var.array else HMI_TYPES[var.data_type]
        assert tag.type == expected, name
        assert tag.writable is var.writable, name
        assert (tag.low, tag.high) == (var.low, var.high), name
        assert tag.unit == (var.unit.display if var.unit else ""), name
    methods = {f"Blender/{m.name}": m for m in itf.BLENDER_METHODS}
    for name, spec in defaults.methods.items():
        method = methods[spec.path or ""]
        assert [HMI_TYPES[a.data_type] for a in method.inputs] == [a.type for a in spec.args], name
    assert defaults.namespace_uri == itf.NAMESPACE_URI
    assert defaults.endpoint.endswith(f":{itf.DEFAULT_PORT}{itf.ENDPOINT_PATH}")
    assert defaults.alarms.event_type == itf.ALARM_EVENT_TYPE
