"""A visitor's whole footprint through the real API, and a census of the rows about a conversation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from service.erasure import outbox_rows_of
from service.models import (
    Conversation,
    ConversationRating,
    Correction,
    Escalation,
    Feedback,
    Message,
    OutboxEvent,
    utcnow,
)

CARD = "4111 1111 1111 1111"  # Luhn-valid (a test Visa number)
SECRET_TEXT = "How do I export a report to CSV? My email is {email} and card 4111 1111 1111 1111"


@dataclass(frozen=True)
class Footprint:
    """One visitor's conversation and the ids that matter."""

    conversation_id: str
    reply_id: int
    auth: dict[str, str]


async def leave_footprint(client: httpx.AsyncClient, admin: dict[str, str], *, email: str,
                          user_id: str | None = None, corrected: bool = False) -> Footprint:
    """A conversation with a message holding PII, a thumbs-down with a comment, a handoff with the contact
    e-mail (escalation and webhook row), a CSAT comment and, when asked, a reviewer's correction."""
    metadata = {"user_id": user_id} if user_id else None
    created = await client.post("/api/conversations", json={"metadata": metadata} if metadata else None)
    assert created.status_code == 201, created.text
    conversation_id = created.json()["conversation_id"]
    auth = {"Authorization": f"Bearer {created.json()['token']}"}
    sent = await client.post(f"/api/conversations/{conversation_id}/messages", headers=auth,
                             json={"content": SECRET_TEXT.format(email=email)})
    assert sent.status_code == 200, sent.text
    reply_id = sent.json()["reply"]["message_id"]
    feedback = await client.post(f"/api/conversations/{conversation_id}/messages/{reply_id}/feedback",
                                 headers=auth, json={"rating": "down", "comment": f"write to {email}"})
    assert feedback.status_code == 200, feedback.text
    handoff = await client.post(f"/api/conversations/{conversation_id}/handoff", headers=auth,
                                json={"contact": email, "note": "please call me"})
    assert handoff.status_code == 200, handoff.text
    rating = await client.post(f"/api/conversations/{conversation_id}/rating", headers=auth,
                               json={"score": 2, "comment": f"slow, {email}"})
    assert rating.status_code == 201, rating.text
    if corrected:
        correction = await client.post(f"/admin/api/messages/{reply_id}/correction", headers=admin,
                                       json={"content": f"Refunds take 5 days; we wrote to {email}."})
        assert correction.status_code == 201, correction.text
    return Footprint(conversation_id, reply_id, auth)


def census(sessions: sessionmaker[Session], conversation_id: str) -> dict[str, int]:
    """How many rows about the conversation each table holds."""
    with sessions() as session:
        ids = select(Message.id).where(Message.conversation_id == conversation_id)

        def count(query: object) -> int:
            return int(session.scalar(query) or 0)  # type: ignore[call-overload]

        return {
            "conversations": count(select(func.count()).where(Conversation.id == conversation_id)),
            "messages": count(select(func.count()).select_from(Message)
                              .where(Message.conversation_id == conversation_id)),
            "feedback": count(select(func.count()).select_from(Feedback).where(Feedback.message_id.in_(ids))),
            "corrections": count(select(func.count()).select_from(Correction).where(Correction.message_id.in_(ids))),
            "escalations": count(select(func.count()).select_from(Escalation)
                                 .where(Escalation.conversation_id == conversation_id)),
            "conversation_ratings": count(select(func.count()).select_from(ConversationRating)
                                          .where(ConversationRating.conversation_id == conversation_id)),
            "outbox": count(select(func.count()).select_from(OutboxEvent).where(outbox_rows_of(conversation_id))),
        }


def age(sessions: sessionmaker[Session], conversation_id: str, days: float) -> None:
    """Make the conversation's last activity `days` ago."""
    with sessions() as session, session.begin():
        session.execute(update(Conversation).where(Conversation.id == conversation_id)
                        .values(updated_at=utcnow() - timedelta(days=days)))
