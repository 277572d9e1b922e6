"""Live events: the buses (in process, PostgreSQL LISTEN/NOTIFY and Redis pub/sub between replicas), the agents'
SSE stream (auth, filter, heartbeat, end), the visitor's typing and presence signals, and agent names in the
public transcript. Streams are read from a real server (uvicorn on a port), on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
import redis
from sqlalchemy import select

from service.api import create_app, live
from service.auth import AdminSessions
from service.config import secret_key
from service.db import transaction
from service.events import (
    MAX_PAYLOAD_BYTES,
    PREVIEW_CHARS,
    QUEUE_SIZE,
    Event,
    LocalBus,
    PostgresBus,
    RedisBus,
    Subscription,
    encode,
    event_bus,
    new_event,
    preview,
)
from service.models import ApiToken, Conversation, User
from service.people import API_TOKEN, new_token, token_sha256
from service.runtime import Runtime

from .conftest import make_settings
from .factories import send, start_conversation
from .processes import ServiceProcess, free_port
from .test_ratelimit import REDIS_URL, _redis_available
from .upstream_server import serving


async def next_event(subscription: Subscription, conversation_id: str | None, kind: str, timeout: float = 10) -> Event:
    """The next event of `kind` about `conversation_id` (others, such as other tests' on a shared server, skipped)."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        event = await subscription.next(left)
        if event is not None and event["conversation_id"] == conversation_id and event["type"] == kind:
            return event
    raise AssertionError(f"no {kind} event for {conversation_id} within {timeout} s")


async def until(condition: Callable[[], bool], timeout: float = 10, what: str = "condition") -> None:
    """Wait (polling) until `condition` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not met within {timeout} s"
        await asyncio.sleep(0.02)


# ---------------------------------------------------------------- the buses


async def test_local_bus_reaches_every_subscriber_and_a_slow_one_loses_the_oldest() -> None:
    bus = LocalBus()
    async with bus.subscribe() as first, bus.subscribe() as second:
        assert bus.subscribers == 2
        await bus.publish({"type": "message", "conversation_id": "c1"})
        for subscription in (first, second):
            event = await next_event(subscription, "c1", "message", timeout=1)
            assert event["id"]  # given one on the way: the stream's clients tell events apart by it
        for n in range(QUEUE_SIZE + 1):
            await bus.publish(new_event("typing", "c2", n=n))
        assert (await next_event(first, "c2", "typing", timeout=1))["n"] == 1  # #0 dropped, nothing blocked
    assert bus.subscribers == 0
    assert await first.next(0.01) is not None  # what was queued stays readable; nothing new arrives


def test_events_carry_ids_previews_and_stay_under_the_notify_limit() -> None:
    one, two = new_event("message", "c"), new_event("message", "c")
    assert one["id"] != two["id"]
    assert preview("  a\n b  ") == "a b"
    assert len(preview("x" * 500)) == PREVIEW_CHARS
    huge = new_event("message", "c", preview="é" * 5000)
    data = encode(huge)
    assert data is not None and "preview" not in json.loads(data) and len(data.encode()) <= MAX_PAYLOAD_BYTES
    assert encode(new_event("message", "c", other="x" * 9000)) is None


def test_the_bus_follows_the_settings(tmp_path: Path) -> None:
    sqlite, postgres = f"sqlite:///{tmp_path / 'x.db'}", "postgresql+psycopg://u:secret@db:5432/app"

    def bus(url: str, **overrides: object) -> object:
        return event_bus(make_settings(tmp_path, url, **overrides), url)

    assert isinstance(bus(sqlite), LocalBus)
    assert isinstance(bus(sqlite, redis_url="redis://r:6379/0"), RedisBus)
    assert isinstance(bus(postgres, redis_url="redis://r:6379/0"), RedisBus)
    on_postgres = bus(postgres)
    assert isinstance(on_postgres, PostgresBus)
    assert on_postgres.conninfo == "postgresql://u:secret@db:5432/app"  # psycopg's own URL, password kept
    assert isinstance(bus(postgres, events="memory"), LocalBus)
    with pytest.raises(ValueError, match="needs a PostgreSQL"):
        bus(sqlite, events="postgres")
    with pytest.raises(ValueError, match="SUPPORTBOT_REDIS_URL"):
        bus(sqlite, events="redis")


@pytest.mark.postgres
async def test_postgres_notify_reaches_the_other_replica_and_survives_a_dropped_listener(
    tmp_path: Path, postgres_schema_url: str
) -> None:
    first, second = (Runtime.build(make_settings(tmp_path / name, postgres_schema_url)) for name in ("a", "b"))
    buses = [first.events, second.events]
    assert all(isinstance(bus, PostgresBus) for bus in buses)
    try:
        for bus in buses:
            await bus.start()
            assert await bus.wait_listening(10)  # type: ignore[attr-defined]
        async with second.events.subscribe() as theirs, first.events.subscribe() as ours:
            sent = new_event("message", "pg-replicas", message_id=7, preview="Hello")
            await first.events.publish(sent)
            assert await next_event(theirs, "pg-replicas", "message") == sent
            assert await next_event(ours, "pg-replicas", "message") == sent  # once, through its own listener
            with pytest.raises(AssertionError, match="no message event"):  # (other tests may share the channel)
                await next_event(ours, "pg-replicas", "message", timeout=0.3)

            # The database ends the second replica's listening connection: it reconnects and listens again.
            listener = second.events
            assert isinstance(listener, PostgresBus) and listener.listener_pid is not None
            old_pid = listener.listener_pid
            with psycopg.connect(listener.conninfo, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (old_pid,))
            await until(lambda: listener.listening.is_set() and listener.listener_pid != old_pid, 15,
                        "the listener to reconnect")
            # Its streams are told they may have missed events meanwhile (the pages fetch afresh).
            assert (await next_event(theirs, None, "resync"))["id"]
            again = new_event("resolved", "pg-replicas", by="dana@example.com")
            await first.events.publish(again)
            assert await next_event(theirs, "pg-replicas", "resolved") == again
    finally:
        for runtime in (first, second):
            await runtime.aclose()


@pytest.mark.redis
async def test_redis_pubsub_reaches_the_other_replica(tmp_path: Path, sqlite_url: str) -> None:
    if not _redis_available():
        pytest.skip(f"Redis not reachable at {REDIS_URL}")
    first, second = (Runtime.build(make_settings(tmp_path / name, sqlite_url, redis_url=REDIS_URL))
                     for name in ("a", "b"))
    assert isinstance(first.events, RedisBus) and isinstance(second.events, RedisBus)
    try:
        for bus in (first.events, second.events):
            await bus.start()
            assert await bus.wait_listening(10)
        async with second.events.subscribe() as theirs:
            sent = new_event("escalation", "redis-replicas", reason="user_request")
            await first.events.publish(sent)
            assert await next_event(theirs, "redis-replicas", "escalation") == sent

            # Redis drops the listeners' connections: they come back by themselves and get the next event.
            admin = redis.Redis.from_url(REDIS_URL)
            listeners = [c["id"] for c in admin.client_list() if c.get("name") == RedisBus.CLIENT_NAME]
            assert len(listeners) >= 2
            for client_id in listeners:
                admin.client_kill_filter(_id=client_id)
            again = new_event("resolved", "redis-replicas", by="dana@example.com")

            seen: list[Event] = []

            async def delivered() -> bool:
                await first.events.publish(again)
                while (event := await theirs.next(0.5)) is not None:
                    seen.append(event)
                    if event == again:
                        return True
                return False

            deadline = time.monotonic() + 20
            while not await delivered():
                assert time.monotonic() < deadline, "the listener did not come back"
            admin.close()
            assert "resync" in [event["type"] for event in seen]  # its streams were told to fetch afresh
    finally:
        for runtime in (first, second):
            await runtime.aclose()


async def test_redis_down_the_service_serves_and_this_replica_still_gets_its_events(
    tmp_path: Path, sqlite_url: str
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nobody listens there
    runtime = Runtime.build(make_settings(tmp_path, sqlite_url, redis_url=dead, language_detection="fast"))
    bus = runtime.events
    assert isinstance(bus, RedisBus)
    with serving(create_app(runtime=runtime)) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            assert (await client.get("/healthz")).status_code == 200
            conversation_id, headers = await start_conversation(client)
            client.headers["Authorization"] = f"Bearer {runtime.admin_token}"
            async with stream(client, f"?conversation_id={conversation_id}") as events:
                client.headers.pop("Authorization")
                assert (await send(client, conversation_id, headers, "How do I export to CSV?")).status_code == 200
                event = await events.next(conversation_id, "message")
                assert event["preview"] == "How do I export to CSV?"
        assert not bus.listening.is_set()


# ---------------------------------------------------------------- the agents' stream (real server)


@dataclass
class Live:
    """The service on a port, its runtime, and people of each role with their credentials."""

    base: str
    runtime: Runtime
    tokens: dict[str, str]  # role -> personal API token
    cookies: dict[str, str]  # role -> session cookie value
    names: dict[str, str]  # role -> display name

    def client(self, **headers: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base, timeout=10, headers=headers)


def add_people(runtime: Runtime) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """An agent and a reviewer, each with a personal token and a signed-in session."""
    tokens, cookies, names = {}, {}, {}
    helper = AdminSessions(secret_key(runtime.settings), runtime.admin_token, runtime.log.sessions)
    for role, name in (("agent", "Dana Agent"), ("reviewer", "Rui Reviewer")):
        token = new_token()
        with transaction(runtime.log.sessions) as db:
            user = User(email=f"{role}@example.com", name=name, role=role)
            db.add(user)
            db.flush()
            db.add(ApiToken(user_id=user.id, kind=API_TOKEN, token_sha256=token_sha256(token)))
        tokens[role], names[role] = token, name
        cookies[role] = helper.issue(user)
    return tokens, cookies, names


@pytest.fixture
def live_service(tmp_path: Path, database_url: str) -> Iterator[Live]:
    # Fast language models: these tests are about serving events, not detection (tests/test_language.py).
    runtime = Runtime.build(make_settings(tmp_path, database_url, language_detection="fast"))
    tokens, cookies, names = add_people(runtime)
    with serving(create_app(runtime=runtime)) as base:
        yield Live(base, runtime, tokens, cookies, names)


class Stream:
    """An open SSE response, read event by event (comments kept apart)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()
        self.comments: list[str] = []

    async def next(self, conversation_id: str | None, kind: str | None = None, timeout: float = 10) -> Event:
        """The next event (of `kind`, about `conversation_id`), with its SSE id and name checked against its data."""
        async with asyncio.timeout(timeout):
            fields: dict[str, str] = {}
            async for line in self.lines:
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                elif line:
                    name, _, value = line.partition(": ")
                    fields[name] = value
                elif "data" in fields:
                    event = json.loads(fields["data"])
                    assert fields["id"] == event["id"] and fields["event"] == event["type"]
                    fields = {}
                    if (kind is None or event["type"] == kind) and \
                            (conversation_id is None or event["conversation_id"] == conversation_id):
                        return event
        raise AssertionError("the stream ended")

    async def comment(self, text: str, timeout: float = 10) -> None:
        """Read until a comment line `text` arrives."""
        async with asyncio.timeout(timeout):
            async for line in self.lines:
                if line.startswith(":") and line[1:].strip() == text:
                    return
        raise AssertionError("the stream ended")


@asynccontextmanager
async def stream(client: httpx.AsyncClient, query: str = "") -> AsyncIterator[Stream]:
    """Open the event stream and wait until it is subscribed (its first comment)."""
    async with client.stream("GET", f"/admin/api/events{query}") as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        opened = Stream(response)
        await opened.comment("connected")
        yield opened


async def test_events_stream_refuses_without_credentials(live_service: Live) -> None:
    cases: list[dict[str, str]] = [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic abc"},
                                   {"Cookie": "sb_admin=forged"}]
    for headers in cases:
        async with live_service.client(**headers) as client:
            response = await client.get("/admin/api/events")
        assert response.status_code == 401, headers
        assert set(response.json()["error"]) == {"code", "message"}
    async with live_service.client() as client:
        conversation_id, visitor = await start_conversation(client)
        # A visitor's token is no staff credential.
        assert (await client.get("/admin/api/events", headers=visitor)).status_code == 401


async def test_agent_stream_gets_visitor_messages_of_the_conversation_it_asked_for(live_service: Live) -> None:
    async with live_service.client() as visitor_client, \
            live_service.client(Authorization=f"Bearer {live_service.tokens['agent']}") as agent:
        watched, visitor = await start_conversation(visitor_client)
        other, other_visitor = await start_conversation(visitor_client)
        async with stream(agent, f"?conversation_id={watched}") as events:
            assert (await send(visitor_client, other, other_visitor, "Other conversation")).status_code == 200
            long_text = "My CSV export fails with an error every time I try it, " * 4
            turn = (await send(visitor_client, watched, visitor, long_text)).json()
            # The first event about either conversation is the watched one's: the other's was filtered out.
            # (On PostgreSQL other test runs may share the NOTIFY channel: their conversations are skipped.)
            event = await events.next(None)
            while event["conversation_id"] not in (watched, other):
                event = await events.next(None)
            assert event["type"] == "message" and event["conversation_id"] == watched
            assert event["message_id"] == turn["message_id"] and event["reply_id"] == turn["reply"]["message_id"]
            assert len(event["preview"]) <= PREVIEW_CHARS and event["preview"].startswith("My CSV export")
        # Without the filter, every conversation's events come.
        third, third_visitor = await start_conversation(visitor_client)
        async with stream(agent) as events:
            sent = await send(visitor_client, third, third_visitor, "I want to talk to a human")
            assert sent.status_code == 200 and sent.json()["escalated"], sent.text
            assert (await events.next(third, "message"))["conversation_id"] == third
            assert (await events.next(third, "escalation"))["reason"] == sent.json()["escalation"]["reason"]


async def test_session_cookie_and_reviewer_role_open_the_stream_and_see_agent_replies(live_service: Live) -> None:
    cookie = f"{AdminSessions.COOKIE}={live_service.cookies['reviewer']}"
    async with live_service.client() as visitor_client, live_service.client(Cookie=cookie) as reviewer, \
            live_service.client(Authorization=f"Bearer {live_service.tokens['agent']}") as agent:
        conversation_id, visitor = await start_conversation(visitor_client)
        await visitor_client.post(f"/api/conversations/{conversation_id}/handoff", headers=visitor, json={})
        async with stream(reviewer, f"?conversation_id={conversation_id}") as events:
            answer = await agent.post(f"/admin/api/conversations/{conversation_id}/messages",
                                      json={"content": "Hi, I am looking at it."})
            assert answer.status_code == 201, answer.text
            reply = await events.next(conversation_id, "agent_reply")
            assert reply["message_id"] == answer.json()["id"] and reply["author"] == live_service.names["agent"]
            assert (await agent.post(f"/admin/api/conversations/{conversation_id}/resolve")).status_code == 200
            assert (await events.next(conversation_id, "resolved"))["by"] == "agent@example.com"
        # The visitor sees the person's name on the agent's reply, and only there.
        transcript = (await visitor_client.get(f"/api/conversations/{conversation_id}", headers=visitor)).json()
        authors = {m["role"]: m["author"] for m in transcript["messages"]}
        assert authors["agent"] == "Dana Agent" and authors["assistant"] is None


async def test_stream_sends_heartbeats_and_ends_when_the_client_goes_away(
    live_service: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "HEARTBEAT_SECONDS", 0.2)
    bus = live_service.runtime.events
    async with live_service.client(Authorization=f"Bearer {live_service.runtime.admin_token}") as admin:
        async with stream(admin) as events:
            await events.comment("heartbeat", timeout=5)
            assert bus.subscribers == 1  # type: ignore[attr-defined]
        await until(lambda: bus.subscribers == 0, what="the subscription to end")  # type: ignore[attr-defined]


async def test_visitor_typing_and_presence_reach_the_agent(live_service: Live) -> None:
    runtime = live_service.runtime
    async with live_service.client() as visitor_client, \
            live_service.client(Authorization=f"Bearer {live_service.tokens['agent']}") as agent:
        conversation_id, visitor = await start_conversation(visitor_client)
        other_id, other_visitor = await start_conversation(visitor_client)
        path = f"/api/conversations/{conversation_id}"
        async with stream(agent, f"?conversation_id={conversation_id}") as events:
            typing = await visitor_client.post(f"{path}/typing", headers=visitor, json={"typing": True})
            assert typing.status_code == 204
            assert (await events.next(conversation_id, "typing"))["typing"] is True
            assert (await visitor_client.post(f"{path}/presence", headers=visitor, json={})).status_code == 204
            assert (await events.next(conversation_id, "presence"))["online"] is True
            seen_at, updated_at = seen(runtime, conversation_id)
            assert seen_at is not None
            assert (await agent.get(f"/admin{path}")).json()["visitor_online"] is True
            # A second heartbeat within 15 s is announced but not written; the inbox order is untouched.
            assert (await visitor_client.post(f"{path}/presence", headers=visitor)).status_code == 204
            await events.next(conversation_id, "presence")
            assert seen(runtime, conversation_id) == (seen_at, updated_at)
            assert (await visitor_client.post(f"{path}/presence", headers=visitor,
                                              json={"online": False})).status_code == 204
            assert (await events.next(conversation_id, "presence"))["online"] is False

            # Bad signals change nothing and announce nothing.
            refused = [
                await visitor_client.post(f"{path}/typing", json={"typing": True}),  # no token
                await visitor_client.post(f"{path}/typing", headers=other_visitor, json={"typing": True}),
                await visitor_client.post(f"{path}/typing", headers=visitor, json={"typing": "maybe"}),
                await visitor_client.post(f"{path}/typing", headers=visitor, json={"typing": 0}),  # JSON booleans only
                await visitor_client.post(f"{path}/presence", headers=visitor, json={"online": True, "x": 1}),
            ]
            assert [r.status_code for r in refused] == [401, 404, 422, 422, 422]
            assert all(set(r.json()["error"]) == {"code", "message"} for r in refused)
            await visitor_client.post(f"{path}/typing", headers=visitor, json={"typing": False})
            assert (await events.next(conversation_id))["typing"] is False  # the very next event: nothing between
        assert seen(runtime, other_id) == (None, seen(runtime, other_id)[1])
        assert (await agent.get(f"/admin/api/conversations/{other_id}")).json()["visitor_online"] is False


def seen(runtime: Runtime, conversation_id: str) -> tuple[object, object]:
    """The conversation's visitor_seen_at and updated_at, as stored."""
    with runtime.log.sessions() as db:
        row = db.execute(select(Conversation.visitor_seen_at, Conversation.updated_at)
                         .where(Conversation.id == conversation_id)).one()
    return row.visitor_seen_at, row.updated_at


async def test_typing_signals_have_their_own_rate_limit(live_service: Live, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "SIGNALS_PER_CONVERSATION", live.parse_rate("3/minute"))
    async with live_service.client() as visitor_client:
        conversation_id, visitor = await start_conversation(visitor_client)
        path = f"/api/conversations/{conversation_id}/typing"
        codes = [(await visitor_client.post(path, headers=visitor, json={"typing": True})).status_code
                 for _ in range(4)]
        assert codes == [204, 204, 204, 429]
        # The visitor's messages have their own budget, untouched by the signals.
        assert (await send(visitor_client, conversation_id, visitor, "Still there?")).status_code == 200


def test_sigterm_ends_the_open_streams_so_shutdown_does_not_wait_for_them(tmp_path: Path) -> None:
    token = "admin-token-for-the-shutdown-test"
    service = ServiceProcess(tmp_path, SUPPORTBOT_ADMIN_TOKEN=token, SUPPORTBOT_SHUTDOWN_GRACE_SECONDS="30")
    service.migrate()
    service.start()
    try:
        with httpx.stream("GET", f"{service.base}/admin/api/events", timeout=30,
                          headers={"Authorization": f"Bearer {token}"}) as response:
            lines = response.iter_lines()
            assert next(line for line in lines if line.startswith(":")) == ": connected"
            began = time.monotonic()
            # uvicorn re-raises the signal once it has shut down: the exit status says SIGTERM.
            assert service.signal(signal.SIGTERM, timeout=25) in (0, -signal.SIGTERM)
            list(lines)  # the stream ended (a stream left open would hold the shutdown for 30 s)
        assert time.monotonic() - began < 15, service.log_path.read_text()[-2000:]
    finally:
        service.stop()
