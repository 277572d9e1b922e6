"""Human handoff: the visitor's "talk to a human" button, agents' replies, resolution, thumbs-down runs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from .db import transaction
from .errors import NotFound, Unprocessable
from .escalation import REPEATED_FAILURE, USER_REQUEST
from .models import Conversation, ConversationStatus, Escalation, Feedback, Message, Origin, Role, Said, utcnow
from .outbox import CONTACT_ADDED, HandoffNotice, enqueue_handoff
from .review import (
    NEXT_TURN_ESCALATED,
    THUMBS_DOWN,
    answer_condition,
    audit,
    is_answer,
    is_model_turn,
    refresh_conversation,
    set_miss_reason,
)
from .slack.threads import enqueue_visitor_message
from .store import escalate, open_escalation

HANDOFF_PROVIDER = "handoff"
# Handovers that say the bot's answer fell short; the others (a policy topic, a spent budget) hand over
# whatever the bot said, so they neither make its last answer a miss nor make the agent's answer a correction.
BOT_FELL_SHORT = (USER_REQUEST, REPEATED_FAILURE)
_SPEAKERS = {Role.USER: "Customer", Role.ASSISTANT: "Bot", Role.AGENT: "Agent"}


def summarize(messages: Sequence[Message | Said], limit: int = 6) -> str:
    """The last turns as a handoff summary for the agent: who said what, each line shortened."""
    lines = []
    for message in messages[-limit:]:
        text = " ".join(message.content.split())
        lines.append(f"{_SPEAKERS.get(Role(message.role), message.role)}: {text[:280]}")
    return "\n".join(lines)


@dataclass(frozen=True)
class HandoffResult:
    """What pressing "talk to a human" did."""

    note: Message | None
    reply: Message
    escalation: Escalation
    created: bool
    language: str | None = None


class HandoffDesk:
    """Storage side of human handoff; every method is blocking and runs one transaction."""

    def __init__(self, sessions: sessionmaker[Session], notice: HandoffNotice) -> None:
        self.sessions = sessions
        self.notice = notice

    @staticmethod
    def _conversation(session: Session, conversation_id: str) -> Conversation:
        conversation = session.get(Conversation, conversation_id)
        if conversation is None:
            raise NotFound("conversation not found")
        return conversation

    @staticmethod
    def _messages(session: Session, conversation_id: str) -> list[Message]:
        return list(session.scalars(
            select(Message).where(Message.conversation_id == conversation_id).order_by(Message.id)))

    def request_handoff(
        self, conversation_id: str, contact: str | None, note: str | None, *,
        texts: Callable[[str, str | None], str],
    ) -> HandoffResult:
        """Escalate on the visitor's request (or add contact details to the open escalation).

        The reply is `texts(key, language)` in the conversation's language (else the widget's locale's).
        """
        with transaction(self.sessions) as session:
            conversation = self._conversation(session, conversation_id)
            language = conversation.language or _locale_code(conversation.visitor)
            note_message = None
            if note:
                note_message = Message(conversation_id=conversation_id, role=Role.USER, origin=Origin.VISITOR,
                                       content=note, language=language)
                session.add(note_message)
                session.flush()
            escalation = open_escalation(session, conversation_id)
            created = escalation is None
            if escalation is None:
                messages = self._messages(session, conversation_id)
                last_model_reply = next((m for m in reversed(messages) if is_answer(m)), None)
                if last_model_reply is not None:
                    set_miss_reason(session, last_model_reply, NEXT_TURN_ESCALATED)
                summary = summarize(messages)
                escalation = escalate(session, self.notice, conversation_id,
                                      note_message.id if note_message else None, USER_REQUEST,
                                      "pressed the talk-to-a-human button", summary or None, contact)
            elif contact and contact != escalation.contact:
                escalation.contact = contact
                enqueue_handoff(session, self.notice, escalation, CONTACT_ADDED)
            if not created and note:
                enqueue_visitor_message(session, self.notice, conversation_id, note)
            reply = Message(conversation_id=conversation_id, role=Role.ASSISTANT, origin=Origin.FIXED,
                            provider=HANDOFF_PROVIDER,
                            content=texts("handoff" if created else "escalated_ack", language),
                            reply_to_id=note_message.id if note_message else None)
            session.add(reply)
            refresh_conversation(session, conversation_id)
        return HandoffResult(note_message, reply, escalation, created, language)

    def agent_reply(
        self, conversation_id: str, content: str, author: str, corrects_id: int | None, actor: str | None = None
    ) -> Message:
        """Store a human agent's reply, linked to the bot reply it corrects (by default, see `correction_target`)."""
        with transaction(self.sessions) as session:
            self._conversation(session, conversation_id)
            if corrects_id is not None:
                target = session.get(Message, corrects_id)
                if target is None or target.conversation_id != conversation_id or not is_model_turn(target):
                    raise Unprocessable("corrects_message_id must be a bot reply of this conversation that a model "
                                        "was asked for (not a fixed text such as the handoff message)",
                                        code="invalid_correction_target")
            else:
                corrects_id = correction_target(self._messages(session, conversation_id), self._handover_reasons(
                    session, conversation_id))
            message = Message(conversation_id=conversation_id, role=Role.AGENT, origin=Origin.AGENT,
                              content=content, author=author, corrects_id=corrects_id)
            session.add(message)
            session.flush()
            audit(session, actor or author, "agent_reply", f"conversation:{conversation_id}",
                  {"message_id": message.id, "corrects_id": corrects_id})
            refresh_conversation(session, conversation_id)
        return message

    @staticmethod
    def _handover_reasons(session: Session, conversation_id: str) -> dict[int, str]:
        """Escalation reason by the visitor message that triggered it."""
        rows = session.execute(select(Escalation.message_id, Escalation.reason)
                               .where(Escalation.conversation_id == conversation_id))
        return {message_id: reason for message_id, reason in rows if message_id is not None}

    def resolve(self, conversation_id: str, by: str) -> Conversation:
        """An agent closes the case: open escalations resolved, the bot answers again."""
        now = utcnow()
        with transaction(self.sessions) as session:
            conversation = self._conversation(session, conversation_id)
            session.execute(
                update(Escalation)
                .where(Escalation.conversation_id == conversation_id, Escalation.resolved_at.is_(None))
                .values(resolved_at=now, resolved_by=by)
            )
            conversation.status = ConversationStatus.RESOLVED
            conversation.updated_at = now
            audit(session, by, "resolve", f"conversation:{conversation_id}")
        return conversation

    def record_feedback(
        self, conversation_id: str, message_id: int, rating: str, comment: str | None, *, downs_to_escalate: int,
    ) -> tuple[Feedback, Escalation | None]:
        """Store a visitor's rating of a bot reply (the last one counts); a run of thumbs-down escalates."""
        with transaction(self.sessions) as session:
            conversation = self._conversation(session, conversation_id)
            message = session.get(Message, message_id)
            if message is None or message.conversation_id != conversation_id:
                raise NotFound("message not found in this conversation")
            if message.role != Role.ASSISTANT:
                raise Unprocessable("only bot replies can be rated", code="not_a_bot_reply")
            if is_answer(message):
                set_miss_reason(session, message, THUMBS_DOWN, present=rating == "down")
            feedback = session.scalars(select(Feedback).where(Feedback.message_id == message_id)).first()
            if feedback is None:
                feedback = Feedback(message_id=message_id, rating=rating, comment=comment)
                session.add(feedback)
            else:
                feedback.rating, feedback.comment, feedback.updated_at = rating, comment, utcnow()
            session.flush()
            escalation = None
            if rating == "down" and conversation.status != ConversationStatus.ESCALATED \
                    and self._downs_in_a_row(session, conversation_id) >= downs_to_escalate:
                escalation = escalate(session, self.notice, conversation_id, message_id, REPEATED_FAILURE,
                                      f"{downs_to_escalate} thumbs-down in a row",
                                      summarize(self._messages(session, conversation_id)))
            refresh_conversation(session, conversation_id)
        return feedback, escalation

    @staticmethod
    def _downs_in_a_row(session: Session, conversation_id: str) -> int:
        rows = session.execute(
            select(Message.id, Feedback.rating)
            .outerjoin(Feedback, Feedback.message_id == Message.id)
            .where(Message.conversation_id == conversation_id, answer_condition())
            .order_by(Message.id.desc())
        ).all()
        count = 0
        for _, rating in rows:
            if rating != "down":
                break
            count += 1
        return count

    def escalations(self, status: str, limit: int, before_id: int | None) -> list[Escalation]:
        """Escalations newest first: `open`, `resolved` or `all`, paginated by id."""
        query = select(Escalation).order_by(Escalation.id.desc()).limit(limit)
        if status == "open":
            query = query.where(Escalation.resolved_at.is_(None))
        elif status == "resolved":
            query = query.where(Escalation.resolved_at.is_not(None))
        if before_id is not None:
            query = query.where(Escalation.id < before_id)
        with self.sessions() as session:
            return list(session.scalars(query))

    def conversation_detail(
        self, conversation_id: str
    ) -> tuple[Conversation, list[Message], list[Escalation], dict[int, Feedback]]:
        """Everything an agent needs about one conversation."""
        with self.sessions() as session:
            conversation = self._conversation(session, conversation_id)
            messages = self._messages(session, conversation_id)
            escalations = list(session.scalars(
                select(Escalation).where(Escalation.conversation_id == conversation_id).order_by(Escalation.id)))
            feedback = {f.message_id: f for f in session.scalars(
                select(Feedback).join(Message, Message.id == Feedback.message_id)
                .where(Message.conversation_id == conversation_id))}
        return conversation, messages, escalations, feedback


def _locale_code(visitor: dict[str, Any] | None) -> str | None:
    locale = (visitor or {}).get("locale")
    return locale.strip().replace("_", "-").split("-")[0].lower() or None if isinstance(locale, str) else None


def correction_target(messages: Sequence[Message], handover_reasons: dict[int, str]) -> int | None:
    """The bot reply an agent's answer corrects when the agent names none, or None.

    Walking back from the end: the latest turn a model was asked for (an answer, or a failed or blocked
    attempt), when it is the bot's last word or a miss. Fixed texts are stepped over: the handoff after
    "that did not help, a human please" and the acknowledgements while waiting. A deterministic handover
    for a policy topic or a spent budget stops the walk: the agent answers what policy reserves for
    people, which is no correction of the bot.
    """
    last_bot = True
    for message in reversed(messages):
        if message.role != Role.ASSISTANT:
            continue
        if is_model_turn(message):
            return message.id if last_bot or message.miss_reasons else None
        last_bot = False
        reason = handover_reasons.get(message.reply_to_id) if message.reply_to_id is not None else None
        if reason is not None and reason not in BOT_FELL_SHORT:
            return None
    return None

