"""Live events for the agents' pages: new visitor messages, escalations, assignment, resolution, typing.

One interface, `EventBus`: `publish` from any replica, `subscribe` on any replica. This module holds the
in-process bus (one replica); the PostgreSQL LISTEN/NOTIFY and Redis pub/sub adapters reach every replica.
An event is a small JSON object: {"type", "conversation_id", ...}; never message text beyond a short preview.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

Event = dict[str, Any]
QUEUE_SIZE = 256  # a subscriber that falls this far behind loses the oldest events (the page reloads its data)


class EventBus(Protocol):
    """Publishes events to every subscriber of every replica."""

    async def publish(self, event: Event) -> None:
        """Send `event` to every subscriber."""
        ...

    def subscribe(self) -> Any:
        """An async context manager yielding an async iterator of events."""
        ...


class LocalBus:
    """Events within this process only: enough for one replica."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[Event]] = set()

    async def publish(self, event: Event) -> None:
        for queue in list(self._queues):
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(event)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[Event]]:
        queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE_SIZE)
        self._queues.add(queue)

        async def events() -> AsyncIterator[Event]:
            while True:
                yield await queue.get()
        try:
            yield events()
        finally:
            self._queues.discard(queue)
