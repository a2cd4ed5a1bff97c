"""The PLC gateway: how the HMI reaches equipment over OPC UA (no Textual, no audit).

Services depend on :class:`PlcGateway`; :class:`AsyncuaGateway` is the OPC UA implementation,
configured by :class:`PlcSettings` (``[plc]`` in hmi.toml) including the tag map.


:class:`AsyncuaGateway` is imported on first use (``from hmi.plc import AsyncuaGateway`` still
works): asyncua takes most of a second to import, and the services only need the protocol and
the types, so the terminal paints its login screen before the OPC UA client is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hmi.plc.certificates import (
    describe_certificate,
    ensure_client_certificate,
    load_trusted_certificate,
    trust_server_certificate,
)
from hmi.plc.errors import (
    PlcAuthenticationFailed,
    PlcCertificateUntrusted,
    PlcClientCertificateRejected,
    PlcCommandNotConfirmed,
    PlcCommandRejected,
    PlcConfigError,
    PlcConnectionFailed,
    PlcError,
    PlcNotConnected,
    PlcSecurityError,
    PlcValueRejected,
    PlcWriteNotConfirmed,
    PlcWriteRejected,
)
from hmi.plc.gateway import PlcGateway
from hmi.plc.settings import AlarmSettings, ArgSpec, MethodSpec, PlcSettings, TagSpec
from hmi.plc.stream import PlcEventStream
from hmi.plc.types import (
    COMM_LOSS_ALARM,
    ConnectionState,
    ConnectionStateChanged,
    PlcAlarmEvent,
    PlcEvent,
    Quality,
    ServerCertificate,
    TagUpdate,
    TagValue,
    TagValuesChanged,
)

if TYPE_CHECKING:
    from hmi.plc.asyncua_gateway import AsyncuaGateway


def __getattr__(name: str) -> Any:
    """Load the OPC UA implementation when it is first asked for (PEP 562)."""
    if name == "AsyncuaGateway":
        from hmi.plc.asyncua_gateway import AsyncuaGateway

        globals()[name] = AsyncuaGateway
        return AsyncuaGateway
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "COMM_LOSS_ALARM",
    "AlarmSettings",
    "ArgSpec",
    "AsyncuaGateway",
    "ConnectionState",
    "ConnectionStateChanged",
    "MethodSpec",
    "PlcAlarmEvent",
    "PlcAuthenticationFailed",
    "PlcCertificateUntrusted",
    "PlcClientCertificateRejected",
    "PlcCommandNotConfirmed",
    "PlcCommandRejected",
    "PlcConfigError",
    "PlcConnectionFailed",
    "PlcError",
    "PlcEvent",
    "PlcEventStream",
    "PlcGateway",
    "PlcNotConnected",
    "PlcSecurityError",
    "PlcSettings",
    "PlcValueRejected",
    "PlcWriteNotConfirmed",
    "PlcWriteRejected",
    "Quality",
    "ServerCertificate",
    "TagSpec",
    "TagUpdate",
    "TagValue",
    "TagValuesChanged",
    "describe_certificate",
    "ensure_client_certificate",
    "load_trusted_certificate",
    "trust_server_certificate",
]
