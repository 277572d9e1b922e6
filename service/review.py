"""Misses and their review: which bot replies fell short, corrections, verdicts, the audit trail.

A bot reply is a *miss* when it got a thumbs-down, when its turn or the next user turn escalated, when
the visitor said it did not help, or when a reviewer flagged it. The reasons live on the reply
(`messages.miss_reasons`); counters on the conversation are refreshed in the same transaction, so the
inbox filters stay index lookups.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, and_, exists, func, or_, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from .db import transaction
from .errors import NotFound, Unprocessable
from .models import AuditEntry, Conversation, Correction, Escalation, Feedback, Message, Origin, Role, Said

THUMBS_DOWN = "thumbs_down"
ESCALATED = "escalated"
NEXT_TURN_ESCALATED = "next_turn_escalated"
DID_NOT_HELP = "did_not_help"
FLAGGED = "flagged"
LEAK_BLOCKED = "leak_blocked"
MISS_REASONS = (THUMBS_DOWN, ESCALATED, NEXT_TURN_ESCALATED, DID_NOT_HELP, FLAGGED, LEAK_BLOCKED)
VERDICTS = ("good", "flagged", "clear")


def is_answer(message: Message | Said | Row[Any]) -> bool:
    """A bot reply whose text a model (hosted or offline) wrote: the only kind that is rated, missed or trained on.

    Fixed texts (handoff, escalated acknowledgement, budget, leak and model-unavailable replies) are not.
    """
    return bool(message.role == Role.ASSISTANT and message.origin == Origin.MODEL)


def is_model_turn(message: Message | Row[Any]) -> bool:
    """A bot reply for which a model was asked (it names the model): an answer, or a failed or blocked attempt.

    A correction (or an agent's answer) attaches to such a turn: the visitor's question and the prompt that
    was sent make the example, the person's answer its target. Fixed texts sent without asking a model
    (handoff, acknowledgement, budget) never are.
    """
    return bool(message.role == Role.ASSISTANT and message.model_requested is not None)


def answer_condition() -> Any:
    """SQL condition: the (outer `messages`) row is a bot reply a model wrote (see `is_answer`)."""
    return and_(Message.role == Role.ASSISTANT, Message.origin == Origin.MODEL)


def model_turn_condition() -> Any:
    """SQL condition: the (outer `messages`) row is a turn a model was asked for (see `is_model_turn`)."""
    return and_(Message.role == Role.ASSISTANT, Message.model_requested.is_not(None))


def _reasons(text: str | None) -> set[str]:
    return set(text.split(",")) if text else set()


def set_miss_reason(session: Session, message: Message, reason: str, present: bool = True) -> bool:
    """Add or remove one miss reason on a bot reply; True when it changed."""
    reasons = _reasons(message.miss_reasons)
    changed = (reason not in reasons) if present else (reason in reasons)
    if changed:
        reasons = reasons | {reason} if present else reasons - {reason}
        message.miss_reasons = ",".join(sorted(reasons)) or None
    return changed


def has_correction() -> Any:
    """SQL condition: the bot reply (outer `messages`) has a correction or an agent answer linked to it."""
    agent = aliased(Message)
    return or_(
        exists().where(Correction.message_id == Message.id),
        exists().where(agent.corrects_id == Message.id, agent.role == Role.AGENT),
    )


def refresh_conversation(session: Session, conversation_id: str) -> None:
    """Recompute the conversation's review counters from its messages."""
    session.flush()
    mine = Message.conversation_id == conversation_id
    missed = and_(mine, Message.miss_reasons.is_not(None))
    miss_count = session.scalar(select(func.count()).select_from(Message).where(missed)) or 0
    unreviewed = session.scalar(
        select(func.count()).select_from(Message).where(missed, Message.review.is_(None), ~has_correction())
    ) or 0
    downs = session.scalar(
        select(func.count()).select_from(Feedback).join(Message, Message.id == Feedback.message_id)
        .where(mine, Feedback.rating == "down")
    ) or 0
    escalated = session.scalar(select(exists().where(Escalation.conversation_id == conversation_id)))
    session.execute(update(Conversation).where(Conversation.id == conversation_id).values(
        miss_count=miss_count, unreviewed_misses=unreviewed, thumbs_down=downs, escalated_ever=bool(escalated)))


def audit(session: Session, actor: str, action: str, target: str | None, details: dict[str, Any] | None = None) -> None:
    """Record an admin action in the audit log (same transaction as the action)."""
    session.add(AuditEntry(actor=actor, action=action, target=target, details=details))


class ReviewDesk:
    """Reviewers' writes: corrections, verdicts, exclusion from training; each audited."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    @staticmethod
    def _bot_reply(session: Session, message_id: int) -> Message:
        message = session.get(Message, message_id)
        if message is None:
            raise NotFound("message not found")
        if not is_model_turn(message):
            raise Unprocessable("only bot replies a model was asked for can be reviewed or corrected, not fixed "
                                "texts such as the handoff message", code="not_a_bot_reply")
        return message

    def correct(self, message_id: int, content: str, actor: str) -> Correction:
        """Store the answer the bot reply should have given."""
        with transaction(self.sessions) as session:
            message = self._bot_reply(session, message_id)
            correction = Correction(message_id=message_id, content=content, author=actor)
            session.add(correction)
            audit(session, actor, "correction", f"message:{message_id}", {"chars": len(content)})
            refresh_conversation(session, message.conversation_id)
        return correction

    def set_verdict(self, message_id: int, verdict: str, actor: str) -> Message:
        """`good` (a reply worth training on), `flagged` (a miss), or `clear` (no verdict)."""
        if verdict not in VERDICTS:
            raise Unprocessable(f"verdict must be one of {', '.join(VERDICTS)}", code="invalid_verdict")
        with transaction(self.sessions) as session:
            message = self._bot_reply(session, message_id)
            if verdict == "good" and not is_answer(message):
                raise Unprocessable("a fixed text (the model failed or was blocked) cannot be a good answer",
                                    code="not_a_bot_reply")
            message.review = None if verdict == "clear" else verdict
            set_miss_reason(session, message, FLAGGED, present=verdict == "flagged")
            audit(session, actor, f"review.{verdict}", f"message:{message_id}")
            refresh_conversation(session, message.conversation_id)
        return message

    def exclude(self, conversation_id: str, excluded: bool, actor: str) -> Conversation:
        """Keep a conversation out of (or let it back into) training data."""
        with transaction(self.sessions) as session:
            conversation = session.get(Conversation, conversation_id)
            if conversation is None:
                raise NotFound("conversation not found")
            conversation.exclude_from_training = excluded
            audit(session, actor, "exclude" if excluded else "include", f"conversation:{conversation_id}")
        return conversation

    def corrections(self, message_ids: list[int]) -> dict[int, Correction]:
        """The latest correction of each given bot reply."""
        if not message_ids:
            return {}
        with self.sessions() as session:
            rows = session.scalars(select(Correction).where(Correction.message_id.in_(message_ids))
                                   .order_by(Correction.id))
            return {row.message_id: row for row in rows}

    def audit_log(self, limit: int, before_id: int | None) -> list[AuditEntry]:
        """Audit entries, newest first."""
        query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(AuditEntry.id < before_id)
        with self.sessions() as session:
            return list(session.scalars(query))

    def record(self, actor: str, action: str, target: str | None, details: dict[str, Any] | None = None) -> None:
        """Audit an action that has no write of its own (sign-in, export)."""
        with transaction(self.sessions) as session:
            audit(session, actor, action, target, details)

