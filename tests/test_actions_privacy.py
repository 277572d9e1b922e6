"""Action calls under the data lifecycle: erasure deletes them (and the database cascades them), anonymizing
removes what they carried but keeps their figures, redaction replaces personal data inside their JSON, and a
visitor's export includes them; on SQLite (foreign keys on) and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from service.api import create_app
from service.db import transaction
from service.models import ActionCall, Conversation, Message
from service.report import build_report
from service.retention import ANONYMIZE, DELETE, REMOVED, RetentionPolicy, purge
from service.review import ReviewDesk
from service.runtime import Runtime

from .action_rows import Call, SeededTurn, calls_in, new_conversation, seed_turn
from .privacy_data import age

EMAIL = "ada@example.com"
VISITOR = {"user_id": "customer-42", "verified": True, "email": EMAIL}


@pytest.fixture
async def api(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(runtime=runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://supportbot.test") as client:
        yield client


def admin(runtime: Runtime) -> dict[str, str]:
    return {"Authorization": f"Bearer {runtime.admin_token}"}


def seed(sessions: sessionmaker[Session]) -> SeededTurn:
    """A verified visitor's turn: a look-up by e-mail whose result carries the e-mail and a phone, and a
    cancellation waiting for Confirm whose summary names the e-mail."""
    conversation = new_conversation(sessions, visitor=VISITOR)
    return seed_turn(sessions, conversation, f"I'm {EMAIL}, where is my order?", "It shipped. Cancel B-7?", [
        Call("find_orders", {"email": EMAIL}, result={"orders": [{"id": "A-7", "contact": EMAIL,
                                                                  "phone": "+49 30 1234 5678"}]}, latency_ms=91),
        Call("cancel_order", {"order_id": "B-7", "notify": EMAIL}, status="awaiting_confirmation", http_status=None,
             latency_ms=None, result=None, summary=f"Cancel order B-7 and write to {EMAIL}", round=1),
        Call("get_order_status", {"order_id": EMAIL}, status="invalid_arguments", http_status=None, latency_ms=None,
             result=None, error=f"order_id: '{EMAIL}' does not match '^[A-Z]-[0-9]+$'", round=1),
    ])


def count(sessions: sessionmaker[Session], conversation_id: str) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(ActionCall)
                                  .where(ActionCall.conversation_id == conversation_id)) or 0)


async def test_erasing_a_conversation_deletes_its_action_calls_and_counts_them(
    api: httpx.AsyncClient, runtime: Runtime,
) -> None:
    sessions = runtime.log.sessions
    erased, kept = seed(sessions), seed(sessions)

    response = await api.delete(f"/admin/api/conversations/{erased.conversation_id}", headers=admin(runtime))

    assert response.status_code == 200, response.text
    assert response.json()["deleted"]["action_calls"] == 3
    assert count(sessions, erased.conversation_id) == 0
    assert count(sessions, kept.conversation_id) == 3


async def test_erasing_a_person_deletes_the_calls_of_every_conversation(
    api: httpx.AsyncClient, runtime: Runtime,
) -> None:
    sessions = runtime.log.sessions
    first, second = seed(sessions), seed(sessions)

    response = await api.post("/admin/api/erasure", headers=admin(runtime), json={"user_id": "customer-42"})

    assert response.status_code == 200, response.text
    assert response.json()["deleted"]["action_calls"] == 6
    assert count(sessions, first.conversation_id) + count(sessions, second.conversation_id) == 0


def test_the_database_cascades_deleted_conversations_and_messages_to_their_calls(runtime: Runtime) -> None:
    sessions = runtime.log.sessions
    by_conversation, by_message = seed(sessions), seed(sessions)
    with transaction(sessions) as session:
        # a confirmed call points at the awaiting one: deleting both at once must not trip the reference
        session.add(ActionCall(conversation_id=by_conversation.conversation_id, message_id=by_conversation.message_id,
                               reply_id=by_conversation.reply_id, round=0, call_id="after-confirm",
                               action="cancel_order", arguments={"order_id": "B-7"}, status="ok", tool_content="{}",
                               confirms_id=by_conversation.call_ids[1]))

    with transaction(sessions) as session:
        session.execute(delete(Conversation).where(Conversation.id == by_conversation.conversation_id))
        session.execute(delete(Message).where(Message.id == by_message.reply_id))

    assert count(sessions, by_conversation.conversation_id) == 0
    assert count(sessions, by_message.conversation_id) == 0, "a call goes with the reply of its turn"


def test_anonymizing_removes_what_calls_carried_and_keeps_their_figures(runtime: Runtime) -> None:
    sessions = runtime.log.sessions
    old, recent = seed(sessions), seed(sessions)
    age(sessions, old.conversation_id, 40)
    before = build_report(runtime.settings, sessions, training_tokens=0).as_json()["actions"]

    report = purge(sessions, RetentionPolicy(days=30, mode=ANONYMIZE))

    assert report.rows["action_calls"] == 3
    with sessions() as session:
        calls = calls_in(session, old.conversation_id)
        untouched = calls_in(session, recent.conversation_id)
    assert [(c.arguments, c.result, c.tool_content, c.summary, c.error) for c in calls] == \
        [(None, None, REMOVED, None, None)] * 3
    assert [(c.action, c.status, c.http_status, c.latency_ms) for c in calls] == [
        ("find_orders", "ok", 200, 91), ("cancel_order", "awaiting_confirmation", None, None),
        ("get_order_status", "invalid_arguments", None, None)]
    assert EMAIL in json.dumps([c.arguments for c in untouched])
    assert build_report(runtime.settings, sessions, training_tokens=0).as_json()["actions"] == before


def test_a_training_conversation_kept_longer_has_the_personal_data_in_its_calls_redacted(runtime: Runtime) -> None:
    sessions = runtime.log.sessions
    turn = seed(sessions)
    ReviewDesk(sessions).correct(turn.reply_id, "It shipped; we wrote to you.", "ana")
    age(sessions, turn.conversation_id, 40)

    report = purge(sessions, RetentionPolicy(days=30, mode=DELETE, training_days=365))

    assert report.rows["action_calls"] == 3
    with sessions() as session:
        found, cancel, invalid = calls_in(session, turn.conversation_id)
    assert found.arguments == {"email": "[EMAIL]"}
    assert found.result == {"orders": [{"id": "A-7", "contact": "[EMAIL]", "phone": "[PHONE]"}]}
    assert json.loads(found.tool_content) == {"status": "ok", "data": found.result}
    assert cancel.arguments == {"order_id": "B-7", "notify": "[EMAIL]"}
    assert cancel.summary == "Cancel order B-7 and write to [EMAIL]"
    assert invalid.error == "order_id: '[EMAIL]' does not match '^[A-Z]-[0-9]+$'"
    stored = json.dumps([[c.arguments, c.result, c.tool_content, c.summary, c.error]
                         for c in (found, cancel, invalid)])
    assert EMAIL not in stored and "1234 5678" not in stored
    assert (found.status, found.http_status, found.latency_ms) == ("ok", 200, 91)


async def test_a_visitors_export_includes_every_call_with_what_it_carried(
    api: httpx.AsyncClient, runtime: Runtime,
) -> None:
    turn = seed(runtime.log.sessions)

    response = await api.get("/admin/api/visitors/export", headers=admin(runtime), params={"user_id": "customer-42"})

    assert response.status_code == 200, response.text
    (conversation,) = response.json()["conversations"]
    calls: list[dict[str, Any]] = conversation["action_calls"]
    assert [c["id"] for c in calls] == turn.call_ids
    assert calls[0]["arguments"] == {"email": EMAIL}
    assert calls[0]["result"]["orders"][0]["contact"] == EMAIL
    assert calls[1]["summary"] == f"Cancel order B-7 and write to {EMAIL}"
    assert {c["message_id"] for c in calls} == {turn.message_id} and {c["reply_id"] for c in calls} == {turn.reply_id}
