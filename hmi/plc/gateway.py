"""The port through which the HMI reaches equipment: what services may ask of a PLC.

Services (batch engine, alarms, the TUI's subscription worker) depend on this protocol, never
on asyncua; tests can give them a fake. The gateway knows nothing about users or the audit
trail: a service records its intent before a write or command and the result after it, using
what the gateway returns or raises.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from hmi.plc.settings import MethodSpec, TagSpec
from hmi.plc.stream import PlcEventStream
from hmi.plc.types import ConnectionState, ServerCertificate, TagUpdate, TagValue


class PlcGateway(Protocol):
    """Connection, reads, confirmed writes, commands and a stream of events from one PLC."""

    @property
    def state(self) -> ConnectionState:
        """The connection state now; changes also arrive on :meth:`events`."""
        ...

    @property
    def endpoint(self) -> str: ...

    @property
    def secure(self) -> bool:
        """False when the connection is configured without security (show it on screen)."""
        ...

    @property
    def security_description(self) -> str:
        """``"Basic256Sha256 SignAndEncrypt, user hmi"`` or a visible ``INSECURE`` notice."""
        ...

    @property
    def tags(self) -> Mapping[str, TagSpec]: ...

    @property
    def methods(self) -> Mapping[str, MethodSpec]: ...

    async def connect(self, *, retry: bool = False) -> None:
        """Connect and start supervising the connection.

        With ``retry=False`` a failed first attempt raises
        :class:`~hmi.plc.errors.PlcConnectionFailed` (or a subclass); with ``retry=True`` a
        network failure leaves the gateway ``LOST`` and reconnecting in the background.
        Security failures (untrusted certificate, refused credentials) always raise: retrying
        cannot fix them.
        """
        ...

    async def disconnect(self) -> None:
        """Stop supervising and close the connection; every tag becomes BAD."""
        ...

    async def read(self, tag: str) -> TagUpdate:
        """Read a tag now; a bad value raises :class:`~hmi.plc.errors.PlcValueRejected`."""
        ...

    async def write(self, tag: str, value: TagValue) -> TagUpdate:
        """Write a tag and confirm it by reading it back; return the confirmed value.

        Raises ``PlcValueRejected`` (nothing sent), ``PlcNotConnected`` (nothing sent),
        ``PlcWriteRejected`` (the PLC refused it) or ``PlcWriteNotConfirmed`` (outcome not
        confirmed: treat as failed).
        """
        ...

    async def call(self, method: str, *args: TagValue) -> tuple[TagValue, ...]:
        """Call a command; return its output arguments.

        Raises ``PlcValueRejected`` / ``PlcNotConnected`` (nothing sent),
        ``PlcCommandRejected`` (refused, with the PLC's reason if it gives one) or
        ``PlcCommandNotConfirmed`` (no answer: it may or may not have happened).
        """
        ...

    def snapshot(self) -> dict[str, TagUpdate]:
        """The latest update of every tag in the map (BAD while not connected)."""
        ...

    def events(self) -> PlcEventStream:
        """A new stream: current state and snapshot first, then everything that happens."""
        ...

    async def fetch_server_certificate(self) -> ServerCertificate:
        """The certificate the PLC presents now, for an administrator to review and trust."""
        ...
