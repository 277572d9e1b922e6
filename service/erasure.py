"""A person's data on request: find their conversations, give everything stored about them, erase it.

A person is found by the verified widget identity (`user_id` in the conversation's visitor metadata, checked
with `user_hash` when SUPPORTBOT_IDENTITY_SECRET is set) or by e-mail (the contact they left at a handoff, or
an `email` in the visitor metadata). Erasure runs one transaction per conversation and audits that it happened
(who, when, how many rows per table), never what was erased; an unknown person or conversation is a 404, audited
too. Prompt snapshots stay: they hold no customer data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Delete, Table, Update, delete, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from .db import transaction
from .errors import NotFound, Unprocessable
from .models import (
    ActionCall,
    Conversation,
    ConversationRating,
    Correction,
    Escalation,
    Feedback,
    Message,
    OutboxEvent,
    SlackThread,
)
from .review import audit

ERASE_CONVERSATION = "erasure.conversation"
ERASE_PERSON = "erasure.person"
EXPORT_PERSON = "visitor.export"


@dataclass(frozen=True)
class Person:
    """Who a request is about: exactly one of a verified user id or an e-mail address."""

    user_id: str | None = None
    email: str | None = None

    def __post_init__(self) -> None:
        if (self.user_id is None) == (self.email is None):
            raise Unprocessable("give exactly one of user_id and email", code="invalid_person")

    @property
    def by(self) -> str:
        """How the person was named ("user_id" or "email"): what the audit log keeps instead of the value."""
        return "user_id" if self.user_id is not None else "email"


def outbox_rows_of(conversation_id: str) -> ColumnElement[bool]:
    """The outbox rows (webhook and Slack notifications) about a conversation: they carry its summary and contact."""
    condition: ColumnElement[bool] = OutboxEvent.payload["conversation_id"].as_string() == conversation_id
    return condition


def delete_conversation_rows(session: Session, conversation_id: str) -> Counter[str]:
    """Delete a conversation and every row about it in the current transaction; rows deleted per table."""
    messages = select(Message.id).where(Message.conversation_id == conversation_id)
    statements = (
        delete(Feedback).where(Feedback.message_id.in_(messages)),
        delete(Correction).where(Correction.message_id.in_(messages)),
        delete(Escalation).where(Escalation.conversation_id == conversation_id),
        delete(ConversationRating).where(ConversationRating.conversation_id == conversation_id),
        delete(SlackThread).where(SlackThread.conversation_id == conversation_id),
        delete(OutboxEvent).where(outbox_rows_of(conversation_id)),
        delete(ActionCall).where(ActionCall.conversation_id == conversation_id),
        delete(Message).where(Message.conversation_id == conversation_id),
        delete(Conversation).where(Conversation.id == conversation_id),
    )
    return +execute_counted(session, statements)


def execute_counted(session: Session, statements: Iterable[Delete | Update]) -> Counter[str]:
    """Run DML statements in order; the rows each touched, per table."""
    counts: Counter[str] = Counter()
    for statement in statements:
        result = session.execute(statement.execution_options(synchronize_session=False))
        counts[cast(Table, statement.table).name] += statement_rowcount(result)
    return counts


def statement_rowcount(result: Any) -> int:
    """Rows a DML statement touched."""
    return int(result.rowcount or 0)


def conversations_of(session: Session, person: Person) -> list[str]:
    """The ids of the person's conversations, oldest first."""
    if person.user_id is not None:
        condition: ColumnElement[bool] = Conversation.visitor["user_id"].as_string() == person.user_id
    else:
        email = (person.email or "").strip().lower()
        contacted = select(Escalation.conversation_id).where(func.lower(Escalation.contact) == email)
        condition = or_(Conversation.id.in_(contacted),
                        func.lower(Conversation.visitor["email"].as_string()) == email)
    return list(session.scalars(select(Conversation.id).where(condition)
                                .order_by(Conversation.created_at, Conversation.id)))


@dataclass(frozen=True)
class ErasureReport:
    """What an erasure removed: the conversations and the rows per table."""

    conversations: tuple[str, ...]
    rows: dict[str, int]

    def as_json(self) -> dict[str, Any]:
        """The API's shape."""
        return {"conversations": list(self.conversations), "deleted": self.rows}


class Erasure:
    """Erasure and access requests against one database; each audited under the caller's actor name."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def erase_conversation(self, conversation_id: str, actor: str) -> ErasureReport:
        """Delete one conversation and everything about it; NotFound (audited) when there is none."""
        with transaction(self.sessions) as session:
            rows = delete_conversation_rows(session, conversation_id)
            audit(session, actor, ERASE_CONVERSATION, f"conversation:{conversation_id}",
                  {"found": bool(rows), "rows": dict(rows)})
        if not rows:
            raise NotFound("conversation not found")
        return ErasureReport((conversation_id,), dict(rows))

    def erase_person(self, person: Person, actor: str) -> ErasureReport:
        """Delete every conversation of the person, one transaction each; NotFound (audited) when there is none.

        The audit row names how the person was given (user id or e-mail), never the value.
        """
        with self.sessions() as session:
            found = conversations_of(session, person)
        total: Counter[str] = Counter()
        erased = []
        for conversation_id in found:
            with transaction(self.sessions) as session:
                rows = delete_conversation_rows(session, conversation_id)
            if rows:
                erased.append(conversation_id)
                total.update(rows)
        with transaction(self.sessions) as session:
            audit(session, actor, ERASE_PERSON, None,
                  {"by": person.by, "found": bool(erased), "conversations": len(erased), "rows": dict(total)})
        if not erased:
            raise NotFound(f"nothing is stored for that {person.by.replace('_', ' ')}", code="person_not_found")
        return ErasureReport(tuple(erased), dict(total))

    def export_person(self, person: Person, actor: str) -> dict[str, Any]:
        """Everything stored about the person, as JSON; NotFound when there is nothing (both audited)."""
        with self.sessions() as session:
            conversations = [conversation_json(session, cid) for cid in conversations_of(session, person)]
        self._audit(actor, EXPORT_PERSON, {"by": person.by, "found": bool(conversations),
                                           "conversations": len(conversations)})
        if not conversations:
            raise NotFound(f"nothing is stored for that {person.by.replace('_', ' ')}", code="person_not_found")
        return {"by": person.by, "conversations": conversations}

    def _audit(self, actor: str, action: str, details: dict[str, Any]) -> None:
        with transaction(self.sessions) as session:
            audit(session, actor, action, None, details)


def conversation_json(session: Session, conversation_id: str) -> dict[str, Any]:
    """A conversation with every row about it (messages, action calls, feedback, corrections, escalations,
    rating, Slack thread, notifications), each with all its columns."""
    conversation = session.get(Conversation, conversation_id)
    assert conversation is not None
    messages = list(session.scalars(select(Message).where(Message.conversation_id == conversation_id)
                                    .order_by(Message.id)))
    ids = [message.id for message in messages]
    return {
        **_columns(conversation),
        "messages": [_columns(message) for message in messages],
        "action_calls": _rows(session, select(ActionCall).where(ActionCall.conversation_id == conversation_id)
                              .order_by(ActionCall.id)),
        "feedback": _rows(session, select(Feedback).where(Feedback.message_id.in_(ids)).order_by(Feedback.id)),
        "corrections": _rows(session, select(Correction).where(Correction.message_id.in_(ids))
                             .order_by(Correction.id)),
        "escalations": _rows(session, select(Escalation).where(Escalation.conversation_id == conversation_id)
                             .order_by(Escalation.id)),
        "rating": _rows(session, select(ConversationRating)
                        .where(ConversationRating.conversation_id == conversation_id)),
        "slack_threads": _rows(session, select(SlackThread).where(SlackThread.conversation_id == conversation_id)),
        "notifications": _rows(session, select(OutboxEvent).where(outbox_rows_of(conversation_id))
                               .order_by(OutboxEvent.id)),
    }


def _rows(session: Session, query: Any) -> list[dict[str, Any]]:
    return [_columns(row) for row in session.scalars(query)]


def _columns(row: Any) -> dict[str, Any]:
    """Every column of an ORM row, with times as ISO 8601."""
    table = cast(Table, type(row).__table__)
    values = {column.key: getattr(row, column.key) for column in table.columns}
    return {key: value.isoformat() if isinstance(value, datetime) else value for key, value in values.items()}
