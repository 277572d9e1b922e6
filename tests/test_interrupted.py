"""Turns whose process died before replying are marked: a fixed reply in the visitor's language and a handoff.

A killed replica leaves the visitor's message stored and nothing else (tests/test_deploy_nginx.py kills one for
real); these tests leave the same trace in the database and check what the sweep does with it.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import select, update

from service.api import create_app
from service.interrupted import INTERRUPTED, InterruptedTurns, mark_interrupted
from service.models import Conversation, ConversationStatus, Escalation, Message, Origin, OutboxEvent, Role, utcnow
from service.runtime import Runtime

from .conftest import make_settings
from .factories import send, start_conversation
from .upstream_server import serving

GERMAN = "(Diese Antwort wurde unterbrochen. Jemand aus unserem Team meldet sich hier bei Ihnen.)"


@pytest.fixture
def runtime(tmp_path: Path, database_url: str) -> Runtime:
    return Runtime.build(make_settings(tmp_path, database_url, handoff_webhook_url="http://hooks.test/handoff"))


@pytest.fixture
async def api(runtime: Runtime) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(runtime=runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://supportbot.test") as client:
        yield client  # type: ignore[misc]
    await runtime.aclose()


def left_behind(runtime: Runtime, conversation_id: str, *, age: float, language: str | None = None,
                client_message_id: str | None = None) -> int:
    """What a replica killed mid-turn leaves: the visitor's message, stored `age` seconds ago, and no reply."""
    with runtime.log.sessions.begin() as session:
        message = Message(conversation_id=conversation_id, role=Role.USER, origin=Origin.VISITOR,
                          content="Where is my invoice?", language=language, client_message_id=client_message_id,
                          created_at=utcnow() - timedelta(seconds=age))
        session.add(message)
        session.flush()
        return message.id


def reply_to(runtime: Runtime, message_id: int) -> Message | None:
    with runtime.log.sessions() as session:
        return session.scalars(select(Message).where(Message.reply_to_id == message_id)).first()


def sweep(runtime: Runtime, after: float = 300) -> list[int]:
    texts = runtime.texts
    return mark_interrupted(runtime.log.sessions, runtime.log.notice, lambda lang: texts.get(INTERRUPTED, lang),
                            utcnow() - timedelta(seconds=after))


async def test_an_abandoned_turn_gets_a_fixed_reply_in_its_language_and_a_handoff(
        api: httpx.AsyncClient, runtime: Runtime) -> None:
    conversation_id, auth = await start_conversation(api)
    assert (await send(api, conversation_id, auth, "How do I reset my password?")).status_code == 200
    message_id = left_behind(runtime, conversation_id, age=301, language="de", client_message_id="m-2")

    assert sweep(runtime) == [message_id]

    reply = reply_to(runtime, message_id)
    assert reply is not None
    assert (reply.content, reply.status, reply.origin, reply.provider) == (GERMAN, "failed", "fixed", INTERRUPTED)
    with runtime.log.sessions() as session:
        conversation = session.get(Conversation, conversation_id)
        assert conversation is not None and conversation.status == ConversationStatus.ESCALATED
        escalation = session.scalars(select(Escalation).where(Escalation.message_id == message_id)).one()
        assert escalation.reason == INTERRUPTED
        assert session.scalars(select(OutboxEvent.event)).all() == ["conversation.escalated"], "the team is told"
    assert sweep(runtime) == [], "marked once"

    # The visitor's widget resends the same message later: the turn is answered once, with that reply.
    resent = await send(api, conversation_id, auth, "Where is my invoice?", client_message_id="m-2")
    assert resent.status_code == 200, resent.text
    assert resent.json()["reply"]["message_id"] == reply.id
    # Agents see it in the conversation, named for what it is.
    admin = {"Authorization": f"Bearer {runtime.admin_token}"}
    shown = (await api.get(f"/admin/api/conversations/{conversation_id}", headers=admin)).json()
    assert any(m["id"] == reply.id and m["status"] == "failed" for m in shown["messages"])


async def test_only_abandoned_last_turns_of_conversations_the_bot_handles_are_marked(
        api: httpx.AsyncClient, runtime: Runtime) -> None:
    conversations = {}
    for name in ("recent", "superseded", "handed_over", "stale", "long_gone"):
        conversations[name], _ = await start_conversation(api)
    recent = left_behind(runtime, conversations["recent"], age=60)  # its turn may still be running
    stale = left_behind(runtime, conversations["stale"], age=900)
    # A visitor whose first message was lost wrote again and was answered: the old one stays as it is.
    superseded = left_behind(runtime, conversations["superseded"], age=900)
    with runtime.log.sessions.begin() as session:
        session.add(Message(conversation_id=conversations["superseded"], role=Role.USER, origin=Origin.VISITOR,
                            content="hello?", created_at=utcnow() - timedelta(seconds=800)))
        session.add(Message(conversation_id=conversations["superseded"], role=Role.ASSISTANT, origin=Origin.MODEL,
                            content="Hello!", created_at=utcnow() - timedelta(seconds=800)))
    # A conversation a person handles: visitors' messages there are theirs to answer, not the bot's.
    handed_over = left_behind(runtime, conversations["handed_over"], age=900)
    with runtime.log.sessions.begin() as session:
        session.execute(update(Conversation).where(Conversation.id == conversations["handed_over"])
                        .values(status=ConversationStatus.ESCALATED))
    # Abandoned before the sweep's look-back (no replica swept for days): left as it is, its message still stored.
    long_gone = left_behind(runtime, conversations["long_gone"], age=3 * 86400)
    with runtime.log.sessions.begin() as session:
        session.execute(update(Conversation).where(Conversation.id == conversations["long_gone"])
                        .values(updated_at=utcnow() - timedelta(days=3)))
    answered_id, answered_auth = await start_conversation(api)
    assert (await send(api, answered_id, answered_auth, "How do I reset my password?")).status_code == 200

    assert sweep(runtime) == [stale]

    assert [reply_to(runtime, m) for m in (recent, superseded, handed_over, long_gone)] == [None] * 4


async def test_replicas_sweeping_at_once_mark_a_turn_once(api: httpx.AsyncClient, runtime: Runtime) -> None:
    ids = []
    for _ in range(6):
        conversation_id, _auth = await start_conversation(api)
        ids.append(left_behind(runtime, conversation_id, age=900))
    results: list[list[int]] = []

    def one() -> None:
        results.append(sweep(runtime))

    threads = [threading.Thread(target=one) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(m for marked in results for m in marked) == ids
    with runtime.log.sessions() as session:
        assert len(session.scalars(select(Escalation).where(Escalation.reason == INTERRUPTED)).all()) == 6
        assert len(session.scalars(select(Message).where(Message.provider == INTERRUPTED)).all()) == 6
    # With the lease, a second replica's round within the interval does nothing at all.
    first = InterruptedTurns(runtime.log.sessions, runtime.log.notice, lambda _: "x", 300, holder="replica-1")
    second = InterruptedTurns(runtime.log.sessions, runtime.log.notice, lambda _: "x", 300, holder="replica-2")
    assert first.run_due() == [] and second.run_due() is None


def test_the_service_sweeps_on_its_own(tmp_path: Path, database_url: str) -> None:
    runtime = Runtime.build(make_settings(tmp_path, database_url, turn_timeout=1.0, interrupted_turn_seconds=2.0))
    with serving(create_app(runtime=runtime)) as base:
        conversation_id = httpx.post(f"{base}/api/conversations").json()["conversation_id"]
        message_id = left_behind(runtime, conversation_id, age=0)
        deadline = time.monotonic() + 30
        while reply_to(runtime, message_id) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        reply = reply_to(runtime, message_id)
        assert reply is not None and reply.provider == INTERRUPTED


def test_the_sweep_waits_longer_than_any_turn_may_run(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="must be more than SUPPORTBOT_TURN_TIMEOUT=60"):
        make_settings(tmp_path, "sqlite://", interrupted_turn_seconds=30.0)
    assert make_settings(tmp_path, "sqlite://", interrupted_turn_seconds=0).interrupted_turn_seconds == 0
