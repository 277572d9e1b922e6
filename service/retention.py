"""Retention: conversations with no activity for longer than allowed are deleted, or anonymized.

Anonymized: message text, contact details, comments, visitor metadata and what action calls carried (arguments,
results, tool results, summaries, errors) are removed; the rows and their figures (turns, tokens, cost, latency,
reasons, ratings' scores, reviews, action statuses) stay, so counts and reports do not change. A conversation
holding reviewed training examples (a correction, an agent's corrected answer, a reply reviewed good) and not
excluded from training may be kept longer (`training_days`), its personal data redacted (service/redact.py) when
the ordinary limit passes. One transaction per conversation: a purge stopped half way leaves every conversation
either fully done or untouched. The service runs it on a schedule; a lease in `job_leases` lets one replica run
each round.
"""

from __future__ import annotations

import logging
import os
import socket
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, exists, func, null, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from .actions.stored import clean_strings, clean_tool_content
from .db import transaction
from .erasure import delete_conversation_rows, execute_counted, outbox_rows_of, statement_rowcount
from .models import (
    ActionCall,
    Conversation,
    ConversationRating,
    Correction,
    Escalation,
    Feedback,
    JobLease,
    Message,
    OutboxEvent,
    SlackThread,
    utcnow,
)
from .periodic import every
from .redact import Redactor
from .review import audit

log = logging.getLogger(__name__)

DELETE, ANONYMIZE, REDACT = "delete", "anonymize", "redact"
REMOVED = "[removed]"  # what an anonymized message or correction says instead of its text
LEASE = "retention"
RETENTION_ACTOR = "retention"


@dataclass(frozen=True)
class RetentionPolicy:
    """How long conversations are kept: `days` without activity (0 = forever), then `mode`; training ones
    `training_days` (redacted meanwhile) when that is longer."""

    days: int
    mode: str = DELETE
    training_days: int = 0

    @property
    def keeps_training(self) -> bool:
        """Whether conversations with reviewed training examples outlive the others."""
        return self.training_days > self.days


@dataclass(frozen=True)
class PurgeItem:
    """One conversation a purge removes, anonymizes or redacts."""

    conversation_id: str
    action: str  # delete | anonymize | redact
    last_activity: datetime
    messages: int


@dataclass
class PurgeReport:
    """What a purge did (or, dry, would do): the conversations and the rows touched per table."""

    dry_run: bool
    items: list[PurgeItem] = field(default_factory=list)
    rows: Counter[str] = field(default_factory=Counter)

    def counts(self) -> dict[str, int]:
        """Conversations per action."""
        return dict(Counter(item.action for item in self.items))


def has_training_examples() -> Any:
    """True for a conversation (correlated) with a reviewed training example that is not excluded from training."""
    corrected = exists(select(Correction.id).join(Message, Message.id == Correction.message_id)
                       .where(Message.conversation_id == Conversation.id))
    reviewed = exists(select(Message.id).where(Message.conversation_id == Conversation.id,
                                               or_(Message.review == "good", Message.corrects_id.is_not(None))))
    return (Conversation.exclude_from_training.is_(False)) & or_(corrected, reviewed)


def plan_purge(session: Session, policy: RetentionPolicy, now: datetime) -> list[PurgeItem]:
    """The conversations due, oldest activity first, each with what is due to it."""
    if policy.days <= 0:
        return []
    cutoff = now - timedelta(days=policy.days)
    training_cutoff = now - timedelta(days=policy.training_days)
    messages = select(func.count(Message.id)).where(Message.conversation_id == Conversation.id).scalar_subquery()
    rows = session.execute(
        select(Conversation.id, Conversation.updated_at, Conversation.redacted_at,
               has_training_examples().label("training"), messages.label("messages"))
        .where(Conversation.updated_at < cutoff, Conversation.anonymized_at.is_(None))
        .order_by(Conversation.updated_at, Conversation.id)
    ).all()
    items = []
    for row in rows:
        action = _due(policy, row.training, row.updated_at >= training_cutoff, row.redacted_at is not None)
        if action is not None:
            items.append(PurgeItem(row.id, action, row.updated_at, row.messages))
    return items


def _due(policy: RetentionPolicy, training: bool, within_training: bool, redacted: bool) -> str | None:
    if policy.keeps_training and training and within_training:
        return None if redacted else REDACT
    return policy.mode


def purge(sessions: sessionmaker[Session], policy: RetentionPolicy, *, now: datetime | None = None,
          dry_run: bool = False, actor: str = RETENTION_ACTOR) -> PurgeReport:
    """Apply the policy, one transaction per conversation (or, `dry_run`, only say what it would do).

    A conversation written to since it was planned is left alone. The audit log gets one row per run that did
    something: the counts, never content.
    """
    now = now or utcnow()
    with sessions() as session:
        items = plan_purge(session, policy, now)
    report = PurgeReport(dry_run)
    if dry_run:
        report.items = items
        return report
    for item in items:
        with transaction(sessions) as session:
            rows = apply_item(session, item, policy, now)
        if rows is not None:
            report.items.append(item)
            report.rows.update(rows)
    if report.items:
        with transaction(sessions) as session:
            audit(session, actor, "retention.purge", None,
                  {"policy": {"days": policy.days, "mode": policy.mode, "training_days": policy.training_days},
                   "conversations": report.counts(), "rows": dict(report.rows)})
    return report


def apply_item(session: Session, item: PurgeItem, policy: RetentionPolicy, now: datetime) -> Counter[str] | None:
    """Do what is due to one conversation in the current transaction; None when it no longer is due."""
    conversation = session.scalars(select(Conversation).where(Conversation.id == item.conversation_id)
                                   .with_for_update()).first()
    if conversation is None or conversation.anonymized_at is not None:
        return None
    if conversation.updated_at >= now - timedelta(days=policy.days):
        return None  # the visitor came back meanwhile
    if item.action == REDACT and conversation.redacted_at is not None:
        return None
    session.expunge(conversation)
    if item.action == DELETE:
        return delete_conversation_rows(session, item.conversation_id)
    if item.action == ANONYMIZE:
        return anonymize_conversation(session, item.conversation_id, now)
    return redact_conversation(session, item.conversation_id, now)


def anonymize_conversation(session: Session, conversation_id: str, now: datetime) -> Counter[str]:
    """Remove a conversation's text, contact details, comments and metadata; keep its rows and figures."""
    in_conversation = Message.conversation_id == conversation_id
    message_ids = select(Message.id).where(in_conversation)
    statements = (
        update(Message).where(in_conversation).values(content=REMOVED, blocked_content=None, tool_calls=null()),
        update(Correction).where(Correction.message_id.in_(message_ids)).values(content=REMOVED),
        update(Escalation).where(Escalation.conversation_id == conversation_id)
        .values(detail=None, summary=None, contact=None),
        update(Feedback).where(Feedback.message_id.in_(message_ids), Feedback.comment.is_not(None))
        .values(comment=None),
        update(ConversationRating).where(ConversationRating.conversation_id == conversation_id,
                                         ConversationRating.comment.is_not(None)).values(comment=None),
        update(ActionCall).where(ActionCall.conversation_id == conversation_id)
        .values(arguments=null(), result=null(), tool_content=REMOVED, summary=None, error=None),
    )
    counts = execute_counted(session, statements)
    counts.update(_drop_notifications(session, conversation_id))
    counts["conversations"] += _mark(session, conversation_id, visitor=null(), anonymized_at=now)
    return +counts


def redact_conversation(session: Session, conversation_id: str, now: datetime) -> Counter[str]:
    """Replace the personal data in a conversation kept for training (placeholders consistent across it)."""
    redactor = Redactor()
    counts: Counter[str] = Counter()
    messages = list(session.scalars(select(Message).where(Message.conversation_id == conversation_id)
                                    .order_by(Message.id)))
    for message in messages:
        counts["messages"] += _redact_fields(redactor, message, ("content", "blocked_content"))
    for call in session.scalars(select(ActionCall).where(ActionCall.conversation_id == conversation_id)
                                .order_by(ActionCall.id)):
        counts["action_calls"] += _redact_call(redactor, call)
    ids = [message.id for message in messages]
    for correction in session.scalars(select(Correction).where(Correction.message_id.in_(ids))
                                      .order_by(Correction.id)):
        counts["corrections"] += _redact_fields(redactor, correction, ("content",))
    for escalation in session.scalars(select(Escalation).where(Escalation.conversation_id == conversation_id)):
        changed = _redact_fields(redactor, escalation, ("detail", "summary"))
        if escalation.contact is not None:
            escalation.contact, changed = None, 1
        counts["escalations"] += changed
    for feedback in session.scalars(select(Feedback).where(Feedback.message_id.in_(ids))):
        counts["feedback"] += _redact_fields(redactor, feedback, ("comment",))
    rating = session.get(ConversationRating, conversation_id)
    if rating is not None:
        counts["conversation_ratings"] += _redact_fields(redactor, rating, ("comment",))
    session.flush()
    counts.update(_drop_notifications(session, conversation_id))
    counts["conversations"] += _mark(session, conversation_id, visitor=null(), redacted_at=now)
    return +counts


def _redact_fields(redactor: Redactor, row: Any, names: tuple[str, ...]) -> int:
    """Redact the row's text fields in place; 1 when one changed."""
    changed = 0
    for name in names:
        value = getattr(row, name)
        if value:
            redacted = redactor.redact(value)
            if redacted != value:
                setattr(row, name, redacted)
                changed = 1
    return changed


def _redact_call(redactor: Redactor, call: ActionCall) -> int:
    """Redact the strings inside an action call's arguments, result and tool result, and its texts; 1 when one
    changed. New values are assigned (not changed in place) so the JSON columns are written."""
    before = (call.arguments, call.result, call.tool_content)
    call.arguments = clean_strings(call.arguments, redactor.redact)
    call.result = clean_strings(call.result, redactor.redact)
    call.tool_content = clean_tool_content(call.tool_content, redactor.redact)
    changed = (call.arguments, call.result, call.tool_content) != before
    return max(int(changed), _redact_fields(redactor, call, ("summary", "error")))


def _drop_notifications(session: Session, conversation_id: str) -> Counter[str]:
    """Outbox rows and the Slack thread link carry the conversation's summary and contact: they go."""
    return execute_counted(session, (delete(OutboxEvent).where(outbox_rows_of(conversation_id)),
                                     delete(SlackThread).where(SlackThread.conversation_id == conversation_id)))


def _mark(session: Session, conversation_id: str, **values: Any) -> int:
    # updated_at is the last activity retention reads: marking a conversation is no activity.
    return statement_rowcount(session.execute(
        update(Conversation).where(Conversation.id == conversation_id)
        .values(updated_at=Conversation.updated_at, **values)
        .execution_options(synchronize_session=False)))


def claim_lease(sessions: sessionmaker[Session], name: str, holder: str, seconds: float, now: datetime) -> bool:
    """Take the job's lease until `seconds` from now, unless another process holds it; whether it was taken."""
    until = now + timedelta(seconds=seconds)
    with transaction(sessions) as session:
        dialect = session.get_bind().dialect.name
        insert = (pg_insert if dialect == "postgresql" else sqlite_insert)(JobLease)
        created = session.execute(insert.values(name=name, holder=holder, locked_until=until)
                                  .on_conflict_do_nothing().returning(JobLease.name)).first()
        if created is not None:
            return True
        taken = session.execute(update(JobLease).where(JobLease.name == name, JobLease.locked_until <= now)
                                .values(holder=holder, locked_until=until))
        return statement_rowcount(taken) == 1


class ScheduledPurge:
    """Runs the purge once per `interval` seconds across all replicas: whichever takes the lease first."""

    def __init__(self, sessions: sessionmaker[Session], policy: RetentionPolicy, interval: float,
                 clock: Callable[[], datetime] = utcnow, holder: str | None = None) -> None:
        self.sessions = sessions
        self.policy = policy
        self.interval = interval
        self.clock = clock
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"

    def run_due(self) -> PurgeReport | None:
        """Purge when this process takes the lease; its report, or None when another process has the round."""
        now = self.clock()
        if not claim_lease(self.sessions, LEASE, self.holder, self.interval, now):
            return None
        report = purge(self.sessions, self.policy, now=now)
        if report.items:
            log.info("retention: %s conversations (%s), rows %s", len(report.items), report.counts(),
                     dict(report.rows))
        return report

    async def run(self) -> None:
        """Look every so often (at most a minute apart) until cancelled."""
        await every(min(self.interval, 60.0), self.run_due, "scheduled retention purge")


def retention_policy(days: int, mode: str, training_days: int) -> RetentionPolicy:
    """The policy of SUPPORTBOT_RETENTION_DAYS, _MODE and SUPPORTBOT_TRAINING_RETENTION_DAYS."""
    return RetentionPolicy(days=days, mode=mode, training_days=training_days)


def scheduled_purge(sessions: sessionmaker[Session], days: int, mode: str, training_days: int,
                    interval: float) -> ScheduledPurge | None:
    """The service's scheduled purge, or None when retention is off."""
    if days <= 0:
        return None
    return ScheduledPurge(sessions, retention_policy(days, mode, training_days), interval)
