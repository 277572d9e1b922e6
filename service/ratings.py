"""CSAT: the visitor rates the whole conversation once (1-5, optional comment); agents and the figures read it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from .db import transaction
from .errors import Conflict, NotFound, Unprocessable
from .models import Conversation, ConversationRating, Message, Role
from .review import audit

MIN_SCORE, MAX_SCORE = 1, 5
MAX_COMMENT_CHARS = 1000
VISITOR_ACTOR = "visitor"


@dataclass(frozen=True)
class Csat:
    """One conversation's rating as agents see it."""

    score: int
    comment: str | None
    created_at: datetime


def _csat(rating: ConversationRating) -> Csat:
    return Csat(score=rating.score, comment=rating.comment, created_at=rating.created_at)


class Ratings:
    """Stores and reads visitors' CSAT ratings, one per conversation."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def rate(self, conversation_id: str, score: int, comment: str | None) -> Csat:
        """Store the visitor's rating; refused before any answer (422) and when already rated (409)."""
        if not MIN_SCORE <= score <= MAX_SCORE:
            raise Unprocessable(f"score must be {MIN_SCORE} to {MAX_SCORE}", code="invalid_score")
        comment = (comment or "").strip() or None
        if comment is not None and len(comment) > MAX_COMMENT_CHARS:
            raise Unprocessable(f"comment is longer than {MAX_COMMENT_CHARS} characters", code="comment_too_long")
        try:
            with transaction(self.sessions) as session:
                self._check_rateable(session, conversation_id)
                rating = ConversationRating(conversation_id=conversation_id, score=score, comment=comment)
                session.add(rating)
                session.flush()
                # The score only: the comment is the visitor's words, which stay out of the audit log.
                audit(session, VISITOR_ACTOR, "csat.rate", f"conversation:{conversation_id}", {"score": score})
                return _csat(rating)
        except IntegrityError:
            # Two ratings raced: the primary key let one in; the other is the same refusal as a late one.
            raise _already_rated() from None

    @staticmethod
    def _check_rateable(session: Session, conversation_id: str) -> None:
        if session.get(Conversation, conversation_id) is None:
            raise NotFound("conversation not found")
        if session.get(ConversationRating, conversation_id) is not None:
            raise _already_rated()
        answered = session.scalar(select(Message.id).where(
            Message.conversation_id == conversation_id, Message.role.in_([Role.ASSISTANT, Role.AGENT])).limit(1))
        if answered is None:
            raise Unprocessable("there is nothing to rate yet: the conversation has no answer",
                                code="nothing_to_rate")

    def get(self, conversation_id: str) -> Csat | None:
        """The conversation's rating, or None when the visitor gave none."""
        with self.sessions() as session:
            rating = session.get(ConversationRating, conversation_id)
            return _csat(rating) if rating is not None else None


def _already_rated() -> Conflict:
    return Conflict("this conversation was already rated; a rating cannot be changed", code="already_rated")
