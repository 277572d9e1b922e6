"""The outbox: notifications written in the same transaction as their cause, delivered later.

Rows are claimed with a lease (`locked_until`), so several processes can deliver from one database
without sending a row twice at once, and a process that dies mid-delivery leaves the row to the next.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from .db import transaction
from .models import Escalation, OutboxEvent, OutboxStatus, utcnow
from .telemetry import tracing

log = logging.getLogger(__name__)

ESCALATED = "conversation.escalated"
CONTACT_ADDED = "conversation.contact_added"
SLACK_EVENTS = "slack."  # the prefix of the Slack app's rows (service/slack/threads.py)


@dataclass(frozen=True)
class HandoffNotice:
    """Where handoff notifications go: enabled when a webhook URL is configured; Slack when a channel is set."""

    enabled: bool
    public_url: str
    slack_channel: str | None = None  # Slack app mode (service/slack/): its rows are `slack.*` events
    auto_assign: bool = False  # a new handoff goes to the next available agent (service/assignment.py)


def slack_escape(text: str) -> str:
    """Text as Slack mrkdwn shows it literally: `&`, `<`, `>` escaped, so `<!channel>` or `<url|label>` stay words."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def enqueue_handoff(session: Session, notice: HandoffNotice, escalation: Escalation, event: str = ESCALATED) -> None:
    """Add the webhook notification for `escalation` to the current transaction (no-op when disabled)."""
    if not notice.enabled:
        return
    session.flush()
    key = uuid.uuid4().hex
    url = f"{notice.public_url.rstrip('/')}/admin/conversations/{escalation.conversation_id}"
    summary = escalation.summary or escalation.detail or ""
    headline = "needs a human" if event == ESCALATED else "left contact details"
    payload: dict[str, Any] = {
        "event": event,
        "idempotency_key": key,
        "conversation_id": escalation.conversation_id,
        "escalation_id": escalation.id,
        "reason": escalation.reason,
        "detail": escalation.detail,
        "summary": escalation.summary,
        "contact": escalation.contact,
        "transcript_url": url,
        "created_at": utcnow().isoformat(),
        # Slack-compatible: an incoming-webhook URL shows this line as the message. Only our own link
        # stays markup; the visitor's and the model's words are escaped so they cannot ping or fake a link.
        "text": f"Conversation {escalation.conversation_id} {headline} ({slack_escape(escalation.reason)}): "
                f"{slack_escape(summary[:300])} <{url}|Open transcript>",
    }
    trace = tracing.carrier()
    if trace:  # the turn's trace, continued by the delivery (taken out of the body before sending)
        payload[tracing.OUTBOX_TRACE_KEY] = trace
    session.add(OutboxEvent(event=event, idempotency_key=key, payload=payload))


def backoff_seconds(attempts: int, base: float = 2.0, cap: float = 3600.0) -> float:
    """Exponential backoff with +-20 % jitter: 2 s, 4 s, 8 s, ... up to an hour."""
    delay: float = min(cap, base * 2 ** max(0, attempts - 1))
    return delay * random.uniform(0.8, 1.2)


class Outbox:
    """Claiming and settling outbox rows."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def claim_due(
        self, now: datetime, limit: int = 20, lease_seconds: float = 60.0, slack: bool = False
    ) -> list[OutboxEvent]:
        """Pending rows whose time has come and that nobody else holds, leased to the caller.

        The Slack sender takes the `slack.*` rows, the webhook sender the others: each its own receiver.
        """
        lease = now + timedelta(seconds=lease_seconds)
        free = or_(OutboxEvent.locked_until.is_(None), OutboxEvent.locked_until < now)
        for_slack = OutboxEvent.event.startswith(SLACK_EVENTS, autoescape=True)
        with transaction(self.sessions) as session:
            candidates = session.scalars(
                select(OutboxEvent.id)
                .where(OutboxEvent.status == OutboxStatus.PENDING, OutboxEvent.next_attempt_at <= now, free,
                       for_slack if slack else ~for_slack)
                .order_by(OutboxEvent.id)
                .limit(limit)
            ).all()
            claimed = [
                event_id for event_id in candidates
                if session.execute(
                    update(OutboxEvent)
                    .where(OutboxEvent.id == event_id, OutboxEvent.status == OutboxStatus.PENDING, free)
                    .values(locked_until=lease)
                ).rowcount == 1  # type: ignore[attr-defined]
            ]
            rows = list(session.scalars(select(OutboxEvent).where(OutboxEvent.id.in_(claimed))))
        return rows

    def mark_delivered(self, event_id: int, now: datetime) -> None:
        """The receiver accepted it."""
        with transaction(self.sessions) as session:
            session.execute(update(OutboxEvent).where(OutboxEvent.id == event_id).values(
                status=OutboxStatus.DELIVERED, delivered_at=now, locked_until=None,
                attempts=OutboxEvent.attempts + 1, last_error=None))

    def mark_failed(
        self, event_id: int, error: str, now: datetime, max_attempts: int, *,
        retry_at: datetime | None = None, permanent: bool = False,
    ) -> str | None:
        """Schedule a retry with backoff (or at `retry_at`, the receiver's word), or give up after `max_attempts`
        (at once when `permanent`); returns the new status, or None when the row is gone (erased meanwhile)."""
        with transaction(self.sessions) as session:
            row = session.get(OutboxEvent, event_id)
            if row is None:  # its conversation was erased while it was being delivered: nothing left to retry
                return None
            row.attempts += 1
            row.last_error = error[:2000]
            row.locked_until = None
            if permanent or row.attempts >= max_attempts:
                row.status = OutboxStatus.DEAD
            else:
                row.next_attempt_at = retry_at or now + timedelta(seconds=backoff_seconds(row.attempts))
            return row.status

    def postpone(self, event_id: int, until: datetime) -> None:
        """Release a claimed row untried, due again at `until` (its receiver asked us to wait)."""
        with transaction(self.sessions) as session:
            session.execute(update(OutboxEvent).where(OutboxEvent.id == event_id).values(
                next_attempt_at=until, locked_until=None))

    def counts(self) -> dict[str, int]:
        """Rows per status, for readiness and tests."""
        with self.sessions() as session:
            found = dict(session.execute(select(OutboxEvent.status, func.count()).group_by(OutboxEvent.status)).all())
        return {status: int(found.get(status, 0)) for status in OutboxStatus}



async def deliver_forever(deliver_due: Callable[[], Awaitable[int]], interval: float, what: str) -> None:
    """Run a sender's delivery pass every `interval` seconds, for ever; a failed pass (a database hiccup) is
    logged and the next one tries again."""
    while True:
        try:
            await deliver_due()
        except Exception:  # noqa: BLE001 - the loop must survive a database hiccup
            log.exception("%s outbox pass failed; retrying", what)
        await asyncio.sleep(interval)
