"""What each experiment arm's conversations did, summed in SQL per arm and day (a handful of queries).

A conversation counts under the arm stored on it (`conversations.arm`, a `name@version` ref), by the day it
started. It is *resolved* when it never escalated, got no thumbs-down, and was not reopened: a visitor
message within 24 hours after an agent resolved it (the `resolve` entry of the audit log). A *miss* is a
model turn with a miss reason (service/review.py), as in `supportbot report`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Float, and_, case, cast, func, select
from sqlalchemy.orm import Session

from .experiment_stats import Histogram, Moments
from .models import AuditEntry, Conversation, ConversationRating, Escalation, Message, Role
from .review import model_turn_condition

REOPEN_WINDOW = timedelta(hours=24)
RESOLVE_ACTION = "resolve"  # service/handoff.py audits an agent's resolve under this action
_TARGET_PREFIX = "conversation:"


@dataclass
class Cell:
    """The sums of one arm over one day (or, added up, over any period)."""

    conversations: int = 0
    resolved: int = 0
    escalated: int = 0
    thumbs_down: int = 0
    replies: int = 0
    misses: int = 0
    tokens: Moments = Moments()
    cost: Moments = Moments()
    csat: Moments = Moments()
    latency: Histogram = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)  # escalation reason -> conversations

    def add(self, other: Cell) -> None:
        """Count `other` in this cell too."""
        for name in ("conversations", "resolved", "escalated", "thumbs_down", "replies", "misses"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.tokens, self.cost, self.csat = self.tokens + other.tokens, self.cost + other.cost, self.csat + other.csat
        for value, count in other.latency.items():
            self.latency[value] = self.latency.get(value, 0) + count
        for reason, count in other.reasons.items():
            self.reasons[reason] = self.reasons.get(reason, 0) + count


Cells = dict[str, dict[date, Cell]]  # arm ref -> day -> sums


def _day(value: Any) -> date:
    """SQL date() comes back as a date (PostgreSQL) or text (SQLite)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _started(session: Session) -> Any:
    """The UTC day a conversation started, in SQL (PostgreSQL's date() would use the session's time zone)."""
    if session.get_bind().dialect.name == "postgresql":
        return func.date(func.timezone("UTC", Conversation.created_at))
    return func.date(Conversation.created_at)


def _cell(cells: Cells, arm: str, day: Any) -> Cell:
    return cells.setdefault(arm, {}).setdefault(_day(day), Cell())


def arm_cells(session: Session, refs: list[str]) -> Cells:
    """Every figure of the arms `refs`, per arm and day their conversations started."""
    cells: Cells = {}
    if not refs:
        return cells
    _conversation_sums(session, refs, cells)
    _subtract_reopened(session, refs, cells)
    _add_ratings(session, refs, cells)
    _add_reasons(session, refs, cells)
    _add_latencies(session, refs, cells)
    return cells


def _conversation_sums(session: Session, refs: list[str], cells: Cells) -> None:
    in_arms = Conversation.arm.in_(refs)
    model_turn = model_turn_condition()
    per_conversation = (
        select(
            Message.conversation_id.label("cid"),
            cast(func.sum(func.coalesce(Message.tokens_in, 0) + func.coalesce(Message.tokens_out, 0)), Float)
            .label("tokens"),
            func.sum(func.coalesce(Message.cost_usd, 0.0)).label("cost"),
            func.sum(case((model_turn, 1), else_=0)).label("replies"),
            func.sum(case((and_(model_turn, Message.miss_reasons.is_not(None)), 1), else_=0)).label("misses"),
        )
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(in_arms)
        .group_by(Message.conversation_id)
        .subquery()
    )
    tokens = func.coalesce(per_conversation.c.tokens, 0.0)
    cost = func.coalesce(per_conversation.c.cost, 0.0)
    day = _started(session)
    escalated = Conversation.escalated_ever.is_(True)
    downs = Conversation.thumbs_down > 0
    rows = session.execute(
        select(
            Conversation.arm, day, func.count(),
            func.sum(case((and_(~escalated, ~downs), 1), else_=0)),
            func.sum(case((escalated, 1), else_=0)), func.sum(case((downs, 1), else_=0)),
            func.sum(func.coalesce(per_conversation.c.replies, 0)),
            func.sum(func.coalesce(per_conversation.c.misses, 0)),
            func.sum(tokens), func.sum(tokens * tokens), func.sum(cost), func.sum(cost * cost),
        )
        .outerjoin(per_conversation, per_conversation.c.cid == Conversation.id)
        .where(in_arms)
        .group_by(Conversation.arm, day)
    )
    for arm, when, n, resolved, escalated_n, downs_n, replies, misses, t, tt, c, cc in rows:
        cell = _cell(cells, arm, when)
        # PostgreSQL returns SUM() of integers as Decimal: plain numbers from here on.
        cell.conversations, cell.resolved = int(n), int(resolved or 0)
        cell.escalated, cell.thumbs_down = int(escalated_n or 0), int(downs_n or 0)
        cell.replies, cell.misses = int(replies or 0), int(misses or 0)
        cell.tokens = Moments(int(n), float(t or 0), float(tt or 0))
        cell.cost = Moments(int(n), float(c or 0), float(cc or 0))


def _subtract_reopened(session: Session, refs: list[str], cells: Cells) -> None:
    """Take out of `resolved` the conversations a visitor came back to within 24 h of an agent resolving them."""
    target_id = func.substr(AuditEntry.target, len(_TARGET_PREFIX) + 1)
    rows = session.execute(
        select(Conversation.id, Conversation.arm, _started(session), AuditEntry.created_at,
               func.min(Message.created_at))
        .select_from(AuditEntry)
        .join(Conversation, Conversation.id == target_id)
        .join(Message, and_(Message.conversation_id == Conversation.id, Message.role == Role.USER,
                            Message.created_at > AuditEntry.created_at))
        .where(AuditEntry.action == RESOLVE_ACTION, AuditEntry.target.like(f"{_TARGET_PREFIX}%"),
               Conversation.arm.in_(refs), Conversation.escalated_ever.is_(False), Conversation.thumbs_down == 0)
        .group_by(AuditEntry.id, Conversation.id, Conversation.arm, Conversation.created_at, AuditEntry.created_at)
    )
    reopened: dict[str, tuple[str, Any]] = {}
    for conversation_id, arm, day, resolved_at, came_back in rows:
        if _aware(came_back) - _aware(resolved_at) <= REOPEN_WINDOW:
            reopened[conversation_id] = (arm, day)
    for arm, day in reopened.values():
        _cell(cells, arm, day).resolved -= 1


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _add_ratings(session: Session, refs: list[str], cells: Cells) -> None:
    score = cast(ConversationRating.score, Float)
    day = _started(session)
    for arm, when, n, total, squares in session.execute(
        select(Conversation.arm, day, func.count(), func.sum(score), func.sum(score * score))
        .join(Conversation, Conversation.id == ConversationRating.conversation_id)
        .where(Conversation.arm.in_(refs)).group_by(Conversation.arm, day)
    ):
        _cell(cells, arm, when).csat = Moments(int(n), float(total or 0), float(squares or 0))


def _add_reasons(session: Session, refs: list[str], cells: Cells) -> None:
    day = _started(session)
    for arm, when, reason, n in session.execute(
        select(Conversation.arm, day, Escalation.reason, func.count(func.distinct(Conversation.id)))
        .join(Conversation, Conversation.id == Escalation.conversation_id)
        .where(Conversation.arm.in_(refs)).group_by(Conversation.arm, day, Escalation.reason)
    ):
        _cell(cells, arm, when).reasons[str(reason)] = int(n)


def _add_latencies(session: Session, refs: list[str], cells: Cells) -> None:
    """Latency of each model turn, as a histogram (value -> count): compact at any number of replies."""
    day = _started(session)
    for arm, when, latency, n in session.execute(
        select(Conversation.arm, day, Message.latency_ms, func.count())
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(Conversation.arm.in_(refs), model_turn_condition(), Message.latency_ms.is_not(None))
        .group_by(Conversation.arm, day, Message.latency_ms)
    ):
        _cell(cells, arm, when).latency[int(latency)] = int(n)


@dataclass(frozen=True, slots=True)
class GuardCounts:
    """What the guard compares: an arm's conversations, and how many escalated or got a thumbs-down."""

    conversations: int
    escalated: int
    thumbs_down: int


def guard_counts(session: Session, refs: list[str]) -> dict[str, GuardCounts]:
    """Per arm ref: conversations, escalated ones, ones with a thumbs-down (one aggregate query)."""
    if not refs:
        return {}
    rows = session.execute(
        select(Conversation.arm, func.count(), func.sum(case((Conversation.escalated_ever.is_(True), 1), else_=0)),
               func.sum(case((Conversation.thumbs_down > 0, 1), else_=0)))
        .where(Conversation.arm.in_(refs)).group_by(Conversation.arm)
    )
    return {arm: GuardCounts(int(n), int(e or 0), int(d or 0)) for arm, n, e, d in rows}
