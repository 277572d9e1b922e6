"""Live events for the agents' pages: new visitor messages, escalations, assignment, resolution, typing.

One interface, `EventBus`: `publish` from any replica, `subscribe` on any replica. The in-process bus serves
one replica; the PostgreSQL LISTEN/NOTIFY and Redis pub/sub adapters reach every replica: what one publishes,
each replica's listener receives and hands to its own subscribers (the SSE streams of its agents).
An event is a small JSON object: {"type", "conversation_id", "id", ...}; never message text beyond a short
preview. Publishing never fails a request: when the outside system is down the event reaches this
replica's subscribers only, and the listener reconnects on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.engine import make_url

from .config import Settings

if TYPE_CHECKING:
    import psycopg

# psycopg and redis are imported by the bus that uses them: a server on SQLite with in-process events loads
# neither (~15 MB resident; bench/findings.md 0j).

log = logging.getLogger(__name__)

Event = dict[str, Any]
QUEUE_SIZE = 256  # a subscriber that falls this far behind loses the oldest events (the page reloads its data)
CHANNEL = "supportbot_events"  # the NOTIFY channel and the Redis pub/sub channel
MAX_PAYLOAD_BYTES = 7900  # PostgreSQL refuses NOTIFY payloads of 8000 bytes or more
PREVIEW_CHARS = 80  # of a visitor message, for the inbox; never more
PUBLISH_TIMEOUT = 3.0
RETRY_MIN, RETRY_MAX = 0.5, 30.0  # seconds between a lost listener's reconnection attempts

# Event types; `assignment` is published by the assignment desk. `resync` (no conversation) tells this
# replica's streams that events may have been missed while its listener reconnected: pages fetch afresh.
MESSAGE, ESCALATION, AGENT_REPLY, RESOLVED, TYPING, PRESENCE, ASSIGNMENT, RESYNC = (
    "message", "escalation", "agent_reply", "resolved", "typing", "presence", "assignment", "resync")

STREAM_END: Event = {"type": "end"}  # put (this very object) to a subscription to end its stream: shutdown
_PREFIX = secrets.token_hex(4)  # per process: ids stay unique across replicas without coordination
_COUNTER = itertools.count(1)


def new_event(kind: str, conversation_id: str, **fields: Any) -> Event:
    """An event of `kind` about a conversation, with an id that is unique across replicas."""
    return {"type": kind, "conversation_id": conversation_id, "id": f"{_PREFIX}-{next(_COUNTER)}", **fields}


def with_id(event: Event) -> Event:
    """The event with an `id` (SSE clients tell events apart by it); one published without is given one."""
    return event if "id" in event else {**event, "id": f"{_PREFIX}-{next(_COUNTER)}"}


def preview(text: str) -> str:
    """The start of a visitor's message as the inbox may show it (one line, at most PREVIEW_CHARS)."""
    line = " ".join(text.split())
    return line if len(line) <= PREVIEW_CHARS else line[:PREVIEW_CHARS - 1] + "…"


def encode(event: Event) -> str | None:
    """The event as compact JSON under the payload limit (the preview dropped if need be); None if too big."""
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    if len(data.encode()) > MAX_PAYLOAD_BYTES and "preview" in event:
        data = json.dumps({k: v for k, v in event.items() if k != "preview"}, ensure_ascii=False,
                          separators=(",", ":"))
    return data if len(data.encode()) <= MAX_PAYLOAD_BYTES else None


class Subscription:
    """One subscriber's queue of events; `next` waits at most `timeout` seconds (None: nothing came)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE_SIZE)

    async def next(self, timeout: float | None = None) -> Event | None:
        """The next event, or None after `timeout` seconds without one."""
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None

    def put(self, event: Event) -> None:
        """Queue an event, dropping the oldest when the subscriber is too far behind."""
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(event)


class EventBus(Protocol):
    """Publishes events to every subscriber of every replica."""

    name: str  # memory, postgres or redis: for the start-up log

    async def publish(self, event: Event) -> None:
        """Send `event` to every subscriber; never raises."""
        ...

    def subscribe(self) -> AbstractAsyncContextManager[Subscription]:
        """A subscription for the duration of the `async with`."""
        ...

    async def start(self) -> None:
        """Begin listening (a no-op in process)."""
        ...

    def close_streams(self) -> None:
        """End this process's subscriptions (their SSE streams), as the process shuts down."""
        ...

    async def aclose(self) -> None:
        """Stop listening and release connections."""
        ...


class LocalBus:
    """Events within this process only: enough for one replica."""

    name = "memory"

    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()

    @property
    def subscribers(self) -> int:
        """How many subscriptions are open (an SSE stream each)."""
        return len(self._subscriptions)

    async def publish(self, event: Event) -> None:
        """Hand `event` to every subscriber of this process."""
        event = with_id(event)
        for subscription in list(self._subscriptions):
            subscription.put(event)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        """A subscription, removed when the block ends (the client went away)."""
        subscription = Subscription()
        self._subscriptions.add(subscription)
        try:
            yield subscription
        finally:
            self._subscriptions.discard(subscription)

    def close_streams(self) -> None:
        """End every subscription of this process: each gets STREAM_END."""
        for subscription in list(self._subscriptions):
            subscription.put(STREAM_END)

    async def start(self) -> None:
        """Nothing to listen to."""

    async def aclose(self) -> None:
        """Nothing to release."""


class RelayBus:
    """Publishes through an outside system; a listener task hands what arrives to this process's subscribers."""

    name = "relay"

    def __init__(self) -> None:
        self.local = LocalBus()
        self.listening = asyncio.Event()  # set while the listener is subscribed (tests wait for it)
        self._task: asyncio.Task[None] | None = None
        self._delay = RETRY_MIN
        self._publish_failing = False
        self._was_listening = False

    @property
    def subscribers(self) -> int:
        """How many subscriptions are open in this process."""
        return self.local.subscribers

    def subscribe(self) -> AbstractAsyncContextManager[Subscription]:
        """A subscription to the events of every replica."""
        return self.local.subscribe()

    def close_streams(self) -> None:
        """End this process's subscriptions."""
        self.local.close_streams()

    async def start(self) -> None:
        """Start the listener; it keeps reconnecting, so the service serves while the system is down."""
        if self._task is None:
            self.listening = asyncio.Event()  # bound to the loop that runs the listener
            self._task = asyncio.create_task(self._listen_forever(), name=f"{self.name}-events")

    async def wait_listening(self, timeout: float) -> bool:
        """True once the listener is connected; False after `timeout` seconds without it."""
        try:
            await asyncio.wait_for(self.listening.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def aclose(self) -> None:
        """Stop the listener."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def publish(self, event: Event) -> None:
        """Send through the outside system; when it fails, this replica's subscribers still get the event."""
        event = with_id(event)
        data = encode(event)
        if data is None:
            log.warning("live event %s for conversation %s is too large to send; dropped",
                        event.get("type"), event.get("conversation_id"))
            return
        try:
            await asyncio.wait_for(self._send(data), PUBLISH_TIMEOUT)
        except Exception as error:  # no request fails for want of a live update
            if not self._publish_failing:
                log.warning("live events: cannot publish through %s (%s); other replicas miss events until it "
                            "is back", self.name, error or type(error).__name__)
            self._publish_failing = True
            await self.local.publish(event)
            return
        if self._publish_failing:
            log.info("live events: publishing through %s again", self.name)
        self._publish_failing = False

    async def _listen_forever(self) -> None:
        while True:
            try:
                await self._listen()
                problem = "connection closed"
            except asyncio.CancelledError:
                raise
            except Exception as error:
                problem = str(error).strip() or type(error).__name__
            self.listening.clear()
            log.warning("live events: %s listener lost (%s); reconnecting in %.1f s", self.name, problem,
                        self._delay)
            await asyncio.sleep(self._delay)
            self._delay = min(self._delay * 2, RETRY_MAX)

    async def _connected(self) -> None:
        if self._delay > RETRY_MIN:
            log.info("live events: %s listener connected", self.name)
        self._delay = RETRY_MIN
        if self._was_listening:
            await self.local.publish({"type": RESYNC, "conversation_id": None})
        self._was_listening = True
        self.listening.set()

    async def _deliver(self, payload: str | bytes) -> None:
        try:
            event = json.loads(payload)
        except ValueError:
            log.warning("live events: ignored a payload on %s that is not JSON", CHANNEL)
            return
        if isinstance(event, dict) and isinstance(event.get("type"), str):
            await self.local.publish(event)

    async def _listen(self) -> None:
        raise NotImplementedError

    async def _send(self, data: str) -> None:
        raise NotImplementedError


class PostgresBus(RelayBus):
    """LISTEN/NOTIFY on the service's PostgreSQL database: one listening connection per replica."""

    name = "postgres"

    def __init__(self, conninfo: str) -> None:
        super().__init__()
        self.conninfo = conninfo
        self.listener_pid: int | None = None  # the listening connection's server process (for operators and tests)
        self._sender: psycopg.AsyncConnection[Any] | None = None
        self._send_lock = asyncio.Lock()

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        import psycopg

        # Keepalives: a connection silently cut (no reset) is noticed within half a minute, then re-made.
        return await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True, connect_timeout=5,
                                                     keepalives=1, keepalives_idle=10, keepalives_interval=5,
                                                     keepalives_count=3)

    async def _listen(self) -> None:
        async with await self._connect() as connection:
            await connection.execute(f"LISTEN {CHANNEL}")
            self.listener_pid = connection.info.backend_pid
            await self._connected()
            async for notify in connection.notifies():
                await self._deliver(notify.payload)

    async def _send(self, data: str) -> None:
        import psycopg

        async with self._send_lock:
            for attempt in (1, 2):  # a connection that dropped since the last event is re-made once
                if self._sender is None or self._sender.closed:
                    self._sender = await self._connect()
                try:
                    await self._sender.execute("SELECT pg_notify(%s, %s)", (CHANNEL, data))
                    return
                except psycopg.OperationalError:
                    await self._sender.close()
                    self._sender = None
                    if attempt == 2:
                        raise
                except BaseException:
                    # Cut off mid-statement (timeout): its state is unknown, so the next event uses a new one.
                    self._sender = None
                    raise

    async def aclose(self) -> None:
        """Stop the listener and close the sending connection."""
        await super().aclose()
        if self._sender is not None:
            await self._sender.close()
            self._sender = None


class RedisBus(RelayBus):
    """Pub/sub on SUPPORTBOT_REDIS_URL."""

    name = "redis"
    POLL_SECONDS = 15.0  # the subscriber pings this often while idle, so a dead connection is noticed
    CLIENT_NAME = "supportbot-events"

    def __init__(self, url: str) -> None:
        super().__init__()
        import redis.asyncio as aioredis

        self.url = url
        self._sender = aioredis.from_url(url, socket_connect_timeout=3, socket_timeout=PUBLISH_TIMEOUT)

    async def _listen(self) -> None:
        import redis.asyncio as aioredis

        # Named, so an operator finds the listeners in CLIENT LIST.
        client = aioredis.from_url(self.url, socket_connect_timeout=3, health_check_interval=self.POLL_SECONDS,
                                   client_name=self.CLIENT_NAME)
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(CHANNEL)
            await self._connected()
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=self.POLL_SECONDS)
                if message is not None and message.get("type") == "message":
                    await self._deliver(message["data"])
                elif message is None:
                    await pubsub.ping()
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
            await client.aclose()

    async def _send(self, data: str) -> None:
        await self._sender.publish(CHANNEL, data)

    async def aclose(self) -> None:
        """Stop the listener and close the sending connection."""
        await super().aclose()
        await self._sender.aclose()


def event_bus(settings: Settings, database_url: str) -> LocalBus | RelayBus:
    """The bus SUPPORTBOT_EVENTS asks for; `auto`: Redis when SUPPORTBOT_REDIS_URL is set, else PostgreSQL's
    LISTEN/NOTIFY on a PostgreSQL database, else in process (one replica)."""
    url = make_url(database_url)
    on_postgres = url.get_backend_name() == "postgresql"
    choice = settings.events
    if choice == "auto":
        choice = "redis" if settings.redis_url else "postgres" if on_postgres else "memory"
    if choice == "redis":
        if not settings.redis_url:
            raise ValueError("SUPPORTBOT_EVENTS=redis needs SUPPORTBOT_REDIS_URL (such as redis://localhost:6379/0)")
        return RedisBus(settings.redis_url)
    if choice == "postgres":
        if not on_postgres:
            raise ValueError("SUPPORTBOT_EVENTS=postgres needs a PostgreSQL SUPPORTBOT_DATABASE_URL; "
                             "use redis or memory with SQLite")
        return PostgresBus(url.set(drivername="postgresql").render_as_string(hide_password=False))
    return LocalBus()
