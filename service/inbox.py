"""Read side of review: the conversation inbox, the misses list, per-prompt-version figures.

Pagination is keyset (newest first, by `updated_at, id` or message id), never OFFSET, so page 1,000
costs what page 1 costs.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

from sqlalchemy import Select, and_, case, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from .errors import Unprocessable
from .models import Conversation, ConversationStatus, Escalation, Feedback, Message, Role, User
from .review import MISS_REASONS, has_correction, model_turn_condition

View = Literal["all", "misses", "escalated", "thumbs_down", "unreviewed"]
VIEWS: tuple[str, ...] = ("all", "misses", "escalated", "thumbs_down", "unreviewed")
ReviewState = Literal["all", "unreviewed", "reviewed", "corrected"]
# Who handles it: `mine` (the caller is the assignee), `unassigned` (an open handoff nobody has taken), `all`.
Assigned = Literal["all", "mine", "unassigned"]
ASSIGNED: tuple[str, ...] = ("all", "mine", "unassigned")


def day_start(value: date | None) -> datetime | None:
    """Midnight UTC of a date (inclusive lower bound)."""
    return datetime.combine(value, time.min, tzinfo=UTC) if value else None


def day_end(value: date | None) -> datetime | None:
    """Midnight UTC after a date (exclusive upper bound), so `until` includes the whole day."""
    return datetime.combine(value + timedelta(days=1), time.min, tzinfo=UTC) if value else None


def split_ref(ref: str) -> tuple[str, str]:
    """`support@v2` -> ("support", "v2"); a clear error otherwise."""
    name, _, version = ref.partition("@")
    if not name or not version:
        raise Unprocessable(f"prompt version must look like name@version, not {ref!r}", code="invalid_prompt_version")
    return name, version


MAX_ID = 2**63 - 1  # ids are 64-bit signed integers in both databases


def encode_cursor(*parts: Any) -> str:
    """An opaque pagination cursor."""
    text = "|".join(p.isoformat() if isinstance(p, datetime) else str(p) for p in parts)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, count: int) -> list[str]:
    """The parts of a cursor; a clear 422 when it was not made by us."""
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        parts = raw.decode().split("|")
    except ValueError:
        parts = []
    if len(parts) != count or not all(parts):
        raise Unprocessable("invalid cursor", code="invalid_cursor")
    return parts


def conversation_cursor(cursor: str) -> tuple[datetime, str]:
    """(updated_at, id) of the last conversation of the previous page; 422 for a cursor we did not make."""
    stamp, last_id = decode_cursor(cursor, 2)
    try:
        return datetime.fromisoformat(stamp), last_id
    except ValueError:
        raise Unprocessable("invalid cursor", code="invalid_cursor") from None


def message_cursor(cursor: str) -> int:
    """The id of the last message of the previous page; 422 for a cursor we did not make."""
    (text,) = decode_cursor(cursor, 1)
    if not text.isdigit() or int(text) > MAX_ID:
        raise Unprocessable("invalid cursor", code="invalid_cursor")
    return int(text)


@dataclass(frozen=True)
class InboxQuery:
    view: View = "all"
    prompt_version: str | None = None
    since: date | None = None
    until: date | None = None
    q: str | None = None
    cursor: str | None = None
    limit: int = 50
    language: str | None = None  # the visitor's (ISO 639-1), as stored on the conversation
    assigned: Assigned = "all"
    user_id: int | None = None  # the caller, for `mine` (None: the shared admin token, which is no person)


@dataclass(frozen=True)
class InboxRow:
    conversation: Conversation
    preview: str
    assignee: str | None = None  # the assignee's e-mail


@dataclass(frozen=True)
class MissRow:
    reply: Message
    question: str | None
    corrected: bool


class Inbox:
    """Queries for reviewers; each opens a short read-only session."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def conversations(self, query: InboxQuery) -> tuple[list[InboxRow], str | None]:
        """One page of conversations, newest activity first, and the cursor of the next page."""
        statement = self._filtered(select(Conversation), query)
        if query.cursor:
            at, last_id = conversation_cursor(query.cursor)
            statement = statement.where(or_(Conversation.updated_at < at,
                                            and_(Conversation.updated_at == at, Conversation.id < last_id)))
        statement = statement.order_by(Conversation.updated_at.desc(), Conversation.id.desc()).limit(query.limit + 1)
        with self.sessions() as session:
            rows = list(session.scalars(statement))
            more = len(rows) > query.limit
            rows = rows[: query.limit]
            previews = self._previews(session, [c.id for c in rows])
            emails = self._emails(session, {c.assignee_id for c in rows if c.assignee_id is not None})
        cursor = encode_cursor(rows[-1].updated_at, rows[-1].id) if more and rows else None
        return [InboxRow(c, previews.get(c.id, ""), emails.get(c.assignee_id or 0)) for c in rows], cursor

    @staticmethod
    def _filtered(statement: Select[Any], query: InboxQuery) -> Select[Any]:
        if query.view not in VIEWS:
            raise Unprocessable(f"view must be one of {', '.join(VIEWS)}", code="invalid_view")
        conditions = {
            "misses": Conversation.miss_count > 0,
            "escalated": Conversation.escalated_ever.is_(True),
            "thumbs_down": Conversation.thumbs_down > 0,
            "unreviewed": Conversation.unreviewed_misses > 0,
        }
        if query.view in conditions:
            statement = statement.where(conditions[query.view])
        statement = Inbox._assigned(statement, query)
        if query.prompt_version:
            split_ref(query.prompt_version)
            statement = statement.where(Conversation.prompt_version == query.prompt_version)
        if query.language:
            statement = statement.where(Conversation.language == query.language)
        if query.since:
            statement = statement.where(Conversation.updated_at >= day_start(query.since))
        if query.until:
            statement = statement.where(Conversation.created_at < day_end(query.until))
        if query.q:
            pattern = f"%{query.q.lower()}%"
            statement = statement.where(select(Message.id).where(
                Message.conversation_id == Conversation.id, func.lower(Message.content).like(pattern)).exists())
        return statement

    @staticmethod
    def _assigned(statement: Select[Any], query: InboxQuery) -> Select[Any]:
        if query.assigned not in ASSIGNED:
            raise Unprocessable(f"assigned must be one of {', '.join(ASSIGNED)}", code="invalid_assigned")
        if query.assigned == "mine":
            if query.user_id is None:
                raise Unprocessable("the shared admin token is no person, so nothing is assigned to it: use a "
                                    "personal token or sign in as yourself", code="mine_needs_person")
            return statement.where(Conversation.assignee_id == query.user_id)
        if query.assigned == "unassigned":
            # Both columns are indexed: open handoffs are few beside all conversations.
            return statement.where(Conversation.status == ConversationStatus.ESCALATED,
                                   Conversation.assignee_id.is_(None))
        return statement

    @staticmethod
    def _emails(session: Session, user_ids: set[int]) -> dict[int, str]:
        if not user_ids:
            return {}
        rows = session.execute(select(User.id, User.email).where(User.id.in_(user_ids)))
        return dict(rows.all())

    @staticmethod
    def _previews(session: Session, ids: list[str]) -> dict[str, str]:
        if not ids:
            return {}
        first = (select(func.min(Message.id)).where(Message.conversation_id.in_(ids), Message.role == Role.USER)
                 .group_by(Message.conversation_id))
        rows = session.execute(select(Message.conversation_id, Message.content).where(Message.id.in_(first)))
        return {conversation_id: content[:140] for conversation_id, content in rows}

    def misses(
        self, *, since: date | None = None, until: date | None = None, prompt_version: str | None = None,
        reason: str | None = None, review: ReviewState = "all", cursor: str | None = None, limit: int = 50,
    ) -> tuple[list[MissRow], str | None]:
        """Bot replies that missed, newest first, filtered by date, prompt version, reason and review state."""
        corrected = has_correction()
        statement = select(Message, corrected.label("corrected")).where(Message.miss_reasons.is_not(None))
        if reason:
            if reason not in MISS_REASONS:
                raise Unprocessable(f"reason must be one of {', '.join(MISS_REASONS)}", code="invalid_reason")
            statement = statement.where(Message.miss_reasons.like(f"%{reason}%"))
        if prompt_version:
            name, version = split_ref(prompt_version)
            statement = statement.where(Message.prompt_name == name, Message.prompt_version == version)
        if since:
            statement = statement.where(Message.created_at >= day_start(since))
        if until:
            statement = statement.where(Message.created_at < day_end(until))
        if review == "unreviewed":
            statement = statement.where(Message.review.is_(None), ~corrected)
        elif review == "reviewed":
            statement = statement.where(or_(Message.review.is_not(None), corrected))
        elif review == "corrected":
            statement = statement.where(corrected)
        if cursor:
            statement = statement.where(Message.id < message_cursor(cursor))
        statement = statement.order_by(Message.id.desc()).limit(limit + 1)
        with self.sessions() as session:
            rows = session.execute(statement).all()
            more = len(rows) > limit
            rows = rows[:limit]
            questions = dict(session.execute(select(Message.id, Message.content).where(
                Message.id.in_([r[0].reply_to_id for r in rows if r[0].reply_to_id]))).all())
        result = [MissRow(r[0], questions.get(r[0].reply_to_id), bool(r[1])) for r in rows]
        next_cursor = encode_cursor(rows[-1][0].id) if more and rows else None
        return result, next_cursor

    def prompt_figures(self) -> dict[str, dict[str, float]]:
        """Per prompt version: conversations, turns, miss rate, escalation rate, thumbs-down rate.

        Rates are per turn answered under that version; misses count the turns a model was asked for only
        (fixed handoff texts are not the model's), escalations count every turn that handed over.
        """
        model = model_turn_condition()
        totals = (
            select(
                Message.prompt_name, Message.prompt_version,
                func.count(func.distinct(Message.conversation_id)), func.count(),
                func.sum(case((and_(model, Message.miss_reasons.is_not(None)), 1), else_=0)),
                func.sum(case((Feedback.rating == "down", 1), else_=0)),
            )
            .outerjoin(Feedback, Feedback.message_id == Message.id)
            .where(Message.role == Role.ASSISTANT, Message.prompt_name.is_not(None))
            .group_by(Message.prompt_name, Message.prompt_version)
        )
        escalations = (
            select(Message.prompt_name, Message.prompt_version, func.count())
            .join(Escalation, Escalation.message_id == Message.reply_to_id)
            .where(Message.role == Role.ASSISTANT, Message.prompt_name.is_not(None))
            .group_by(Message.prompt_name, Message.prompt_version)
        )
        figures: dict[str, dict[str, float]] = {}
        with self.sessions() as session:
            escalated = {f"{n}@{v}": count for n, v, count in session.execute(escalations)}
            for name, version, conversations, turns, misses, downs in session.execute(totals):
                ref = f"{name}@{version}"
                figures[ref] = {
                    "conversations": conversations, "turns": turns,
                    "miss_rate": (misses or 0) / turns, "escalation_rate": escalated.get(ref, 0) / turns,
                    "thumbs_down_rate": (downs or 0) / turns,
                }
        return figures
