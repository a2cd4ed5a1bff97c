"""One consumer's stream of PLC events: tag values coalesced, alarms and state changes kept.

A screen that repaints slower than the PLC publishes must see the latest value of each tag, not
a backlog of old ones; but it must see every alarm and every connection change, in order. The
stream keeps an open batch of tag updates (a newer value of a tag replaces the older one) and
a queue of discrete events; when a discrete event arrives the open batch is sealed before it,
so the order of what happened is preserved.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping
from types import TracebackType

from hmi.plc.types import (
    ConnectionStateChanged,
    PlcAlarmEvent,
    PlcEvent,
    TagUpdate,
    TagValuesChanged,
)

DEFAULT_MAX_BACKLOG = 10_000


class PlcEventStream:
    """Async iterator of :data:`~hmi.plc.types.PlcEvent`; close it (or use ``async with``)."""

    def __init__(
        self,
        on_close: Callable[[PlcEventStream], None] | None = None,
        *,
        max_backlog: int = DEFAULT_MAX_BACKLOG,
    ) -> None:
        self._items: deque[PlcEvent] = deque()
        self._pending: dict[str, TagUpdate] = {}
        self._wakeup = asyncio.Event()
        self._closed = False
        self._on_close = on_close
        self._max_backlog = max_backlog
        self.dropped = 0
        self.coalesced = 0

    # ---------------------------------------------------------------- producer side

    def push_tags(self, updates: Mapping[str, TagUpdate]) -> None:
        """Merge tag updates into the open batch (newer values replace older ones)."""
        if self._closed or not updates:
            return
        pending = self._pending
        before = len(pending)
        pending.update(updates)
        self.coalesced += before + len(updates) - len(pending)
        self._wakeup.set()

    def push(self, event: PlcAlarmEvent | ConnectionStateChanged) -> None:
        """Queue a discrete event after everything already pushed."""
        if self._closed:
            return
        self._seal()
        self._items.append(event)
        while len(self._items) > self._max_backlog:
            self._items.popleft()
            self.dropped += 1
        self._wakeup.set()

    def _seal(self) -> None:
        if self._pending:
            self._items.append(TagValuesChanged(self._pending))
            self._pending = {}

    # ---------------------------------------------------------------- consumer side

    @property
    def backlog(self) -> int:
        """Events waiting to be read (an open batch of tag values counts as one)."""
        return len(self._items) + (1 if self._pending else 0)

    @property
    def closed(self) -> bool:
        return self._closed

    def get_nowait(self) -> PlcEvent | None:
        """The next event, or ``None`` if nothing is waiting."""
        if self._items:
            return self._items.popleft()
        if self._pending:
            batch, self._pending = self._pending, {}
            return TagValuesChanged(batch)
        return None

    async def get(self) -> PlcEvent:
        """Wait for the next event; raise ``StopAsyncIteration`` once closed and drained."""
        while True:
            event = self.get_nowait()
            if event is not None:
                return event
            if self._closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()

    def __aiter__(self) -> PlcEventStream:
        return self

    async def __anext__(self) -> PlcEvent:
        return await self.get()

    def close(self) -> None:
        """Stop receiving; a consumer waiting in :meth:`get` ends its iteration."""
        if self._closed:
            return
        self._closed = True
        self._wakeup.set()
        if self._on_close is not None:
            self._on_close(self)

    async def __aenter__(self) -> PlcEventStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
