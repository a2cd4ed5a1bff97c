"""One injectable clock for the whole product.

Every timestamp the product records comes from a :class:`Clock` so tests can freeze or step
time and so that stored times are always timezone-aware UTC.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    """Source of the current time (always timezone-aware, UTC)."""

    def now(self) -> datetime: ...


class SystemClock:
    """The real wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to: for deterministic tests and demos."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 5, 8, 0, 0, tzinfo=UTC)
        if self._now.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start time")
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta | float) -> datetime:
        """Move the clock forward by a timedelta or a number of seconds."""
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        with self._lock:
            self._now = self._now + step
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = when


def to_utc_text(moment: datetime) -> str:
    """Format a moment as stored: ISO 8601 UTC with microseconds and a ``Z`` suffix."""
    if moment.tzinfo is None:
        raise ValueError("refusing to store a naive datetime; give a timezone-aware one")
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def from_utc_text(text: str) -> datetime:
    """Parse a stored UTC timestamp (``2026-01-05T08:00:00.000000Z``)."""
    if not text.endswith("Z"):
        raise ValueError(f"stored timestamps end in 'Z', got {text!r}")
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def to_local_text(moment: datetime) -> str:
    """Format a moment for people: local time with its UTC offset.

    Example: ``2026-01-05 09:00:00 +01:00``.
    """
    local = moment.astimezone()
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M:%S} {offset[:3]}:{offset[3:]}"
