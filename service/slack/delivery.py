"""The Slack sender: posts the `slack.*` outbox rows, honouring Slack's rate limits and retrying the rest."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from anyio import to_thread
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from ..db import transaction
from ..models import OutboxEvent, OutboxStatus, SlackThread, utcnow
from ..outbox import SLACK_EVENTS, Outbox, deliver_forever
from .client import SlackApiError, SlackClient, SlackError, SlackRateLimited
from .threads import THREAD

if TYPE_CHECKING:
    from ..runtime import Runtime


class ThreadNotOpen(SlackError):
    """The conversation's thread has no ts yet (its `slack.thread` row is not delivered): try again later."""


log = logging.getLogger(__name__)


class SlackSender:
    """Delivers due `slack.*` outbox rows; one pass with `deliver_due`, forever with `run`."""

    def __init__(
        self, outbox: Outbox, sessions: sessionmaker[Session], client: SlackClient, *, max_attempts: int,
        lease_seconds: float = 60.0, clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.outbox = outbox
        self.sessions = sessions
        self.client = client
        self.max_attempts = max_attempts
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.paused_until: datetime | None = None  # Slack's Retry-After: nothing is posted before it

    async def deliver_due(self) -> int:
        """Post every row that is due now, oldest first (a thread before the messages into it); how many went."""
        rows = await to_thread.run_sync(
            lambda: self.outbox.claim_due(self.clock(), lease_seconds=self.lease_seconds, slack=True))
        delivered = 0
        for row in rows:
            if self.paused_until is not None and self.clock() < self.paused_until:
                # Slack said to wait: the rest of this pass waits too, untried (no attempt counted).
                await to_thread.run_sync(self.outbox.postpone, row.id, self.paused_until)
                continue
            delivered += await self._deliver(row)
        return delivered

    async def _deliver(self, row: OutboxEvent) -> int:
        try:
            await self._post(row)
        except SlackRateLimited as error:
            self.paused_until = self.clock() + timedelta(seconds=error.retry_after)
            return await self._failed(row, str(error), retry_at=self.paused_until)
        except SlackApiError as error:
            return await self._failed(row, str(error), permanent=error.permanent)
        except SlackError as error:
            return await self._failed(row, str(error))
        await to_thread.run_sync(self.outbox.mark_delivered, row.id, self.clock())
        log.info("slack delivered outbox=%s event=%s", row.id, row.event)
        return 1

    async def _post(self, row: OutboxEvent) -> None:
        payload = row.payload
        conversation_id = str(payload["conversation_id"])
        if row.event == THREAD:
            ts = await self.client.post_message(str(payload["channel"]), str(payload["text"]))
            await to_thread.run_sync(self._store_thread, conversation_id, str(payload["channel"]), ts)
            return
        waiting = await to_thread.run_sync(self._earlier_pending, row.id, conversation_id)
        if waiting:
            raise ThreadNotOpen(f"an earlier Slack message of conversation {conversation_id} is not posted yet")
        thread = await to_thread.run_sync(self._thread, conversation_id)
        if thread is None or thread.thread_ts is None:
            raise ThreadNotOpen(f"the Slack thread of conversation {conversation_id} is not open yet")
        await self.client.post_message(thread.channel, str(payload["text"]), thread_ts=thread.thread_ts)

    def _thread(self, conversation_id: str) -> SlackThread | None:
        with self.sessions() as session:
            return session.get(SlackThread, conversation_id)

    def _earlier_pending(self, event_id: int, conversation_id: str) -> bool:
        """Whether an older row for this conversation waits: the thread keeps the visitor's order."""
        with self.sessions() as session:
            found = session.scalars(select(OutboxEvent.id).where(
                OutboxEvent.id < event_id, OutboxEvent.status == OutboxStatus.PENDING,
                OutboxEvent.event.startswith(SLACK_EVENTS, autoescape=True),
                OutboxEvent.payload["conversation_id"].as_string() == conversation_id).limit(1)).first()
        return found is not None

    def _store_thread(self, conversation_id: str, channel: str, ts: str) -> None:
        with transaction(self.sessions) as session:
            session.execute(update(SlackThread).where(SlackThread.conversation_id == conversation_id)
                            .values(channel=channel, thread_ts=ts))

    async def _failed(self, row: OutboxEvent, error: str, *, retry_at: datetime | None = None,
                      permanent: bool = False) -> int:
        status = await to_thread.run_sync(lambda: self.outbox.mark_failed(
            row.id, error, self.clock(), self.max_attempts, retry_at=retry_at, permanent=permanent))
        log.warning("slack failed outbox=%s attempt=%s status=%s: %s", row.id, row.attempts + 1, status, error)
        return 0

    async def run(self, interval: float) -> None:
        """Deliver forever, looking for due rows every `interval` seconds."""
        await deliver_forever(self.deliver_due, interval, "slack")

    async def aclose(self) -> None:
        """Close the Slack client."""
        await self.client.aclose()


def slack_sender(runtime: Runtime) -> SlackSender | None:
    """The Slack sender, when Slack app mode is on (a bot token and a channel)."""
    settings = runtime.settings
    if settings.slack_bot_token and not settings.slack_signing_secret:
        log.warning("SUPPORTBOT_SLACK_SIGNING_SECRET is not set: replies in Slack threads cannot reach visitors")
    if not (settings.slack_bot_token and settings.slack_channel):
        if settings.slack_bot_token:
            log.warning("SUPPORTBOT_SLACK_CHANNEL is not set: handoffs open no Slack threads")
        return None
    client = SlackClient(settings.slack_api_url, settings.slack_bot_token, timeout=settings.webhook_timeout)
    return SlackSender(runtime.outbox, runtime.handoff.sessions, client, max_attempts=settings.webhook_max_attempts,
                       lease_seconds=settings.webhook_timeout * 3)
