"""The values the PLC gateway hands to the rest of the HMI: facts, never live objects.

Every value carries its quality. A value the PLC reported with a bad status, of the wrong
type, or outside its configured range arrives as a :class:`TagUpdate` with
``quality=BAD``, ``value=None`` and a reason; so does every tag while the connection is down.
A screen that shows ``update.value`` only when ``update.good`` can never show stale or
implausible data as good.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

TagValue = float | int | bool | str | tuple[str, ...]
"""What a tag can hold: numbers, flags, text, or a list of texts (alarm codes)."""


class ConnectionState(enum.Enum):
    """Where the gateway stands with the PLC."""

    DISCONNECTED = "disconnected"
    """Not connected and not trying (before connect, after disconnect)."""
    CONNECTING = "connecting"
    """First connection attempt in progress."""
    CONNECTED = "connected"
    """Session up, subscriptions live, heartbeat moving: values are current."""
    LOST = "lost"
    """The connection failed or froze; reconnecting with back-off. Nothing is written."""


class Quality(enum.Enum):
    GOOD = "good"
    BAD = "bad"


@dataclass(frozen=True, slots=True)
class TagUpdate:
    """The latest value of one logical tag, with unit, time and quality."""

    tag: str
    value: TagValue | None
    unit: str
    timestamp: datetime
    quality: Quality
    reason: str = ""

    @property
    def good(self) -> bool:
        return self.quality is Quality.GOOD


@dataclass(frozen=True, slots=True)
class TagValuesChanged:
    """Tag updates coalesced since the consumer last looked: the latest value per tag."""

    updates: Mapping[str, TagUpdate]


@dataclass(frozen=True, slots=True)
class PlcAlarmEvent:
    """An alarm became active or cleared (ISA-18.2 acknowledgement is the HMI's business).

    ``source`` is ``"plc"`` for alarms the equipment raised and ``"hmi"`` for alarms the
    gateway raises itself (communication loss).
    """

    code: str
    active: bool
    severity: int
    message: str
    timestamp: datetime
    source: str = "plc"


@dataclass(frozen=True, slots=True)
class ConnectionStateChanged:
    """The connection changed state; ``reason`` says why in one sentence."""

    state: ConnectionState
    reason: str
    timestamp: datetime
    secure: bool
    endpoint: str


PlcEvent = TagValuesChanged | PlcAlarmEvent | ConnectionStateChanged
"""Everything :meth:`PlcGateway.events` yields, in the order it happened."""


@dataclass(frozen=True, slots=True)
class ServerCertificate:
    """A PLC's application certificate as a person reviews it before trusting it."""

    der: bytes
    sha256: str
    subject: str
    not_valid_after: datetime
    application_uri: str | None


COMM_LOSS_ALARM = "PLC_COMM_LOSS"
"""Code of the alarm the gateway raises while the PLC cannot be reached or is frozen."""
