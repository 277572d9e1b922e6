"""Durability with real processes: SIGKILL mid-traffic, graceful SIGTERM, and sustained streaming load."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, func, select, text

from service.models import Conversation, Message

from .factories import parse_sse
from .processes import SUPPORTBOT, ServiceProcess
from .upstream_server import running_upstream


def _service(tmp_path: Path, database_url: str, upstream: str) -> ServiceProcess:
    """The service against `database_url` and the mock upstream, limits off (this is load, not abuse)."""
    return ServiceProcess(tmp_path, SUPPORTBOT_DATABASE_URL=database_url, SUPPORTBOT_OPENAI_API_KEY="sk-test",
                          SUPPORTBOT_OPENAI_BASE_URL=upstream, SUPPORTBOT_RATE_LIMIT_PER_IP="0",
                          SUPPORTBOT_RATE_LIMIT_PER_VISITOR="0", SUPPORTBOT_RATE_LIMIT_CONVERSATIONS_PER_IP="0",
                          SUPPORTBOT_MAX_TURNS="100000",
                          SUPPORTBOT_LOG_LEVEL="WARNING")


@pytest.fixture
def migrated(database_url: str) -> str:
    """The test database, migrated (the service refuses to start otherwise)."""
    subprocess.run([SUPPORTBOT, "db", "upgrade"], env={**os.environ, "SUPPORTBOT_DATABASE_URL": database_url},
                   check=True, capture_output=True)
    return database_url


def _check_consistent(database_url: str, acknowledged: set[str]) -> dict[str, int]:
    engine = create_engine(database_url)
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            assert connection.execute(text("PRAGMA integrity_check")).scalar() == "ok"
        stored = set(connection.execute(select(Message.client_message_id)
                                        .where(Message.client_message_id.is_not(None))).scalars())
        orphans = connection.execute(text(
            "SELECT COUNT(*) FROM messages r LEFT JOIN messages q ON q.id = r.reply_to_id "
            "WHERE r.reply_to_id IS NOT NULL AND q.id IS NULL")).scalar()
        bad_status = connection.execute(select(func.count()).select_from(Message).where(
            Message.status.not_in(["ok", "partial", "failed"]))).scalar()
        mismatched = connection.execute(text(
            "SELECT COUNT(*) FROM conversations c WHERE c.user_turns <> "
            "(SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id AND m.role = 'user')")).scalar()
        users = connection.execute(select(func.count()).select_from(Message).where(Message.role == "user")).scalar()
        conversations = connection.execute(select(func.count()).select_from(Conversation)).scalar()
    engine.dispose()
    missing = acknowledged - stored
    assert not missing, f"{len(missing)} acknowledged messages lost"
    assert orphans == 0 and bad_status == 0 and mismatched == 0, "no row is half written"
    return {"user_messages": int(users or 0), "conversations": int(conversations or 0)}


async def _send_forever(base: str, acknowledged: set[str], stop: asyncio.Event) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        conversation: dict[str, str] | None = None
        while not stop.is_set():
            try:
                if conversation is None:
                    conversation = (await client.post("/api/conversations")).json()
                message_id = uuid.uuid4().hex
                response = await client.post(
                    f"/api/conversations/{conversation['conversation_id']}/messages",
                    headers={"Authorization": f"Bearer {conversation['token']}"},
                    json={"content": "How do I export a dashboard?", "client_message_id": message_id})
                if response.status_code == 200:
                    acknowledged.add(message_id)
            except (httpx.TransportError, ValueError):
                await asyncio.sleep(0.05)  # the service is down or restarting


async def test_sigkill_at_random_moments_loses_nothing_acknowledged(
    tmp_path: Path, migrated: str, reliability: list[dict[str, object]]
) -> None:
    cycles = 5
    acknowledged: set[str] = set()
    with running_upstream(chunks=5, interval=0.02) as upstream:
        service = _service(tmp_path, migrated, upstream)
        try:
            await asyncio.to_thread(service.start)
            for _ in range(cycles):
                stop = asyncio.Event()
                senders = [asyncio.create_task(_send_forever(service.base, acknowledged, stop)) for _ in range(4)]
                await asyncio.sleep(random.uniform(0.5, 1.5))
                await asyncio.to_thread(service.signal, signal.SIGKILL)
                stop.set()
                await asyncio.gather(*senders)
                await asyncio.to_thread(service.start)
        finally:
            service.stop()

    counts = _check_consistent(migrated, acknowledged)
    assert len(acknowledged) > 5, f"traffic was flowing between the kills ({len(acknowledged)} acknowledged)"
    engine = "SQLite" if migrated.startswith("sqlite") else "PostgreSQL"
    reliability.append({"section": "durability", "item": f"SIGKILL x{cycles} at random moments under 4 senders "
                        f"({engine})", "result": f"{len(acknowledged)} acknowledged messages, all stored; "
                        f"{counts['user_messages']} user messages in {counts['conversations']} conversations; "
                        "no half-written rows" + ("; integrity_check ok" if engine == "SQLite" else "")})


async def test_sigterm_lets_streams_in_flight_finish(tmp_path: Path, sqlite_url: str,
                                                     reliability: list[dict[str, object]]) -> None:
    subprocess.run([SUPPORTBOT, "db", "upgrade"], env={**os.environ, "SUPPORTBOT_DATABASE_URL": sqlite_url},
                   check=True, capture_output=True)
    with running_upstream(chunks=40, interval=0.05) as upstream:
        service = _service(tmp_path, sqlite_url, upstream)
        await asyncio.to_thread(service.start)
        try:
            async with httpx.AsyncClient(base_url=service.base, timeout=30) as client:
                created = (await client.post("/api/conversations")).json()
                body = b""
                async with client.stream(
                    "POST", f"/api/conversations/{created['conversation_id']}/messages",
                    headers={"Authorization": f"Bearer {created['token']}", "Accept": "text/event-stream"},
                    json={"content": "Explain exports in detail"},
                ) as response:
                    terminated = False
                    async for piece in response.aiter_bytes():
                        body += piece
                        if not terminated and b"event: delta" in body:
                            assert service.process is not None
                            service.process.send_signal(signal.SIGTERM)
                            terminated = True
            assert service.process is not None
            code = await asyncio.to_thread(service.process.wait, 30)
        finally:
            service.stop()

    done = parse_sse(body.decode())[-1]
    assert done[0] == "done" and done[1]["reply"]["status"] == "ok"  # type: ignore[index]
    assert code in (0, -signal.SIGTERM), "a clean exit (uvicorn re-raises the signal it handled)"
    engine = create_engine(sqlite_url)
    with engine.connect() as connection:
        statuses = connection.execute(select(Message.status).where(Message.role == "assistant")).scalars().all()
    engine.dispose()
    assert statuses == ["ok"]
    reliability.append({"section": "durability", "item": "SIGTERM during a 2 s streamed reply",
                        "result": "the stream finished, the reply was stored as ok, the process exited cleanly"})


@pytest.mark.slow
async def test_200_concurrent_streaming_conversations_for_60_seconds(
    tmp_path: Path, sqlite_url: str, reliability: list[dict[str, object]]
) -> None:
    subprocess.run([SUPPORTBOT, "db", "upgrade"], env={**os.environ, "SUPPORTBOT_DATABASE_URL": sqlite_url},
                   check=True, capture_output=True)
    duration, conversations = 60.0, 200
    statuses: dict[int, int] = {}
    acknowledged: set[str] = set()
    resent = [0]
    with running_upstream(chunks=10, interval=0.02) as upstream:
        service = _service(tmp_path, sqlite_url, upstream)
        await asyncio.to_thread(service.start)
        deadline = time.monotonic() + duration
        limits = httpx.Limits(max_connections=conversations, max_keepalive_connections=conversations)

        async def visitor(client: httpx.AsyncClient) -> None:
            created = (await client.post("/api/conversations")).json()
            headers = {"Authorization": f"Bearer {created['token']}", "Accept": "text/event-stream"}
            while time.monotonic() < deadline:
                message_id = uuid.uuid4().hex
                for _attempt in range(3):
                    try:
                        response = await client.post(
                            f"/api/conversations/{created['conversation_id']}/messages", headers=headers,
                            json={"content": "How do I export a dashboard?", "client_message_id": message_id})
                    except httpx.TransportError:
                        # A kept-alive connection the server had just closed: resend, same id, as the widget does.
                        resent[0] += 1
                        continue
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                    if response.status_code == 200 and parse_sse(response.text)[-1][0] == "done":
                        acknowledged.add(message_id)
                    break

        try:
            async with httpx.AsyncClient(base_url=service.base, timeout=60, limits=limits) as client:
                await asyncio.gather(*(visitor(client) for _ in range(conversations)))
        finally:
            service.stop()

    assert not any(code >= 500 for code in statuses), statuses
    counts = _check_consistent(sqlite_url, acknowledged)
    turns = len(acknowledged)
    reliability.append({"section": "load", "item": f"{conversations} concurrent streaming conversations for "
                        f"{duration:.0f} s, one worker, SQLite, mock upstream (10 chunks x 20 ms)",
                        "result": f"{turns} turns ({turns / duration:.0f}/s), statuses {statuses}, zero 5xx, "
                                  f"zero lost messages ({counts['user_messages']} stored); {resent[0]} sends "
                                  "retried after a closed keep-alive connection, answered once each"})

