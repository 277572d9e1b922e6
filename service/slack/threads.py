"""What goes into Slack threads, as outbox rows written in the same transaction as their cause.

A handoff opens a thread (`slack.thread`); the visitor's later messages and our short notes go into it
(`slack.message`), once Slack has answered with the thread's ts (service/slack/delivery.py).
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from ..models import Escalation, OutboxEvent, SlackThread
from ..outbox import HandoffNotice, slack_escape

THREAD = "slack.thread"
MESSAGE = "slack.message"
TEXT_LIMIT = 3000  # characters of visitor text per Slack message; the transcript link has the rest


def transcript_url(notice: HandoffNotice, conversation_id: str) -> str:
    """The admin page of the conversation."""
    return f"{notice.public_url.rstrip('/')}/admin/conversations/{conversation_id}"


def _shorten(text: str) -> str:
    return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT] + "…"


def _enqueue(session: Session, event: str, payload: dict[str, Any], key: str | None = None) -> None:
    session.add(OutboxEvent(event=event, idempotency_key=key or uuid.uuid4().hex, payload=payload))


def enqueue_slack_handoff(session: Session, notice: HandoffNotice, escalation: Escalation) -> None:
    """Open the conversation's Slack thread with the summary and transcript link (no-op without Slack).

    A conversation escalated again after a resolution keeps its thread: the new handoff is posted into it.
    """
    if notice.slack_channel is None:
        return
    session.flush()
    conversation_id = escalation.conversation_id
    summary = escalation.summary or escalation.detail or ""
    # Only our own link stays markup: the visitor's and the model's words cannot ping or fake a link.
    text = (f":raising_hand: Conversation {conversation_id} needs a human ({slack_escape(escalation.reason)})\n"
            f"{slack_escape(_shorten(summary))}\n<{transcript_url(notice, conversation_id)}|Open transcript> · "
            "reply in this thread to answer the visitor")
    if session.get(SlackThread, conversation_id) is not None:
        _enqueue(session, MESSAGE, {"conversation_id": conversation_id, "text": text})
        return
    session.add(SlackThread(conversation_id=conversation_id, channel=notice.slack_channel))
    _enqueue(session, THREAD, {"conversation_id": conversation_id, "channel": notice.slack_channel, "text": text})


def enqueue_visitor_message(session: Session, notice: HandoffNotice, conversation_id: str, content: str) -> None:
    """Post a message the visitor sent while escalated into the conversation's thread (no-op without Slack,
    or for a handoff opened before Slack was set up: it has no thread to go to)."""
    if notice.slack_channel is None or session.get(SlackThread, conversation_id) is None:
        return
    _enqueue(session, MESSAGE, {"conversation_id": conversation_id,
                                "text": f"*Visitor:* {slack_escape(_shorten(content))}"})


def enqueue_thread_note(session: Session, conversation_id: str, text: str, key: str) -> None:
    """Our own short note into the thread (why a reply did not reach the visitor); `key` makes it once only."""
    _enqueue(session, MESSAGE, {"conversation_id": conversation_id, "text": text}, key=key)
