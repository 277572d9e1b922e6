"""Action-call rows written straight into the log, for the readers of action calls (admin, export, report,
privacy, eval) to be tested without a model: one turn is a visitor message, its action calls and the reply."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from service.actions.base import tool_result
from service.db import transaction
from service.models import ActionCall, Conversation, Message, Origin, PromptSnapshot, Role, utcnow

SYSTEM_PROMPT = "You are the support assistant of Acme. Use the actions to look up orders."


@dataclass(frozen=True)
class Call:
    """One call of a seeded turn; `round` 0 is the model's first response."""

    action: str
    arguments: dict[str, Any] | None
    status: str = "ok"
    result: dict[str, Any] | None = None
    http_status: int | None = 200
    latency_ms: int | None = 42
    error: str | None = None
    summary: str | None = None
    round: int = 0
    tool_content: str | None = None  # default: what the model is given for `status` and `result`


@dataclass(frozen=True)
class SeededTurn:
    conversation_id: str
    message_id: int
    reply_id: int
    call_ids: list[int]


def new_conversation(sessions: sessionmaker[Session], visitor: dict[str, Any] | None = None,
                     created_at: datetime | None = None) -> str:
    """An open conversation served by support@v2."""
    with transaction(sessions) as session:
        conversation = Conversation(visitor=visitor, status="open", user_turns=0, prompt_version="support@v2",
                                    **({"created_at": created_at, "updated_at": created_at} if created_at else {}))
        session.add(conversation)
    return conversation.id


def seed_turn(sessions: sessionmaker[Session], conversation_id: str, question: str, answer: str,
              calls: list[Call] = (), when: datetime | None = None,  # type: ignore[assignment]
              review: str | None = None) -> SeededTurn:
    """A visitor question, the calls its turn made, and the model's reply, stored as the turn stores them."""
    when = when or utcnow()
    sha = hashlib.sha256(SYSTEM_PROMPT.encode()).hexdigest()
    with transaction(sessions) as session:
        if session.get(PromptSnapshot, sha) is None:
            session.add(PromptSnapshot(sha256=sha, prompt_name="support", prompt_version="v2",
                                       content=SYSTEM_PROMPT))
        user = Message(conversation_id=conversation_id, role=Role.USER, origin=Origin.VISITOR, content=question,
                       created_at=when)
        session.add(user)
        session.flush()
        reply = Message(conversation_id=conversation_id, role=Role.ASSISTANT, origin=Origin.MODEL, content=answer,
                        reply_to_id=user.id, provider="openai", model_requested="gpt-4o-mini",
                        prompt_name="support", prompt_version="v2", prompt_sha256=sha, created_at=when,
                        review=review)
        session.add(reply)
        session.flush()
        rows = [_row(conversation_id, user.id, reply.id, index, call, when) for index, call in enumerate(calls)]
        session.add_all(rows)
        session.flush()
        conversation = session.get(Conversation, conversation_id)
        assert conversation is not None
        conversation.user_turns += 1
        return SeededTurn(conversation_id, user.id, reply.id, [row.id for row in rows])


def _row(conversation_id: str, message_id: int, reply_id: int, index: int, call: Call, when: datetime) -> ActionCall:
    content = call.tool_content
    if content is None:
        content = tool_result(call.status, data=call.result) if call.result is not None else tool_result(call.status)
    return ActionCall(conversation_id=conversation_id, message_id=message_id, reply_id=reply_id, round=call.round,
                      call_id=f"call_{reply_id}_{index}", action=call.action, arguments=call.arguments,
                      status=call.status, http_status=call.http_status, latency_ms=call.latency_ms,
                      result=call.result, error=call.error, tool_content=content, summary=call.summary,
                      created_at=when)


def calls_in(session: Session, conversation_id: str) -> list[ActionCall]:
    """The conversation's action-call rows, in order."""
    return list(session.query(ActionCall).filter(ActionCall.conversation_id == conversation_id)
                .order_by(ActionCall.id))
