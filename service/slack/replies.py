"""Requests from Slack: verified, then a reply in a handoff's thread becomes an agent's reply to the visitor.

The Slack user is mapped to a supportbot user by e-mail (`users.info`); only enabled admins and agents
answer visitors. Everything else is refused, audited and explained in the thread. Slack sends an event
again when we answer slowly: each event is handled once (its `client_msg_id`, else its `event_id`).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from anyio import to_thread
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from ..db import transaction
from ..errors import NotFound, SupportbotError, Unauthorized
from ..events import AGENT_REPLY, new_event
from ..models import AuditEntry, SlackThread
from ..people import ANSWERING, normal_email
from ..review import audit
from .client import SlackApiError, SlackClient, SlackError
from .signing import SignatureRefused, verify_slack_request
from .threads import enqueue_thread_note

if TYPE_CHECKING:
    from ..runtime import Runtime

log = logging.getLogger(__name__)

RECEIVED = "slack_event"  # audit action marking an event handled (its target is the event's key)
REFUSED = "slack_refused"
_LINK = re.compile(r"<(https?://[^|>]+)\|([^>]+)>")
_BARE = re.compile(r"<(https?://[^>]+)>")
_MENTION = re.compile(r"<[@#!][^>|]*(?:\|([^>]*))?>")


def plain_text(mrkdwn: str) -> str:
    """Slack's markup as the widget shows text: links as `label (url)`, mentions as their label, unescaped."""
    text_ = _LINK.sub(lambda m: f"{m.group(2)} ({m.group(1)})", mrkdwn)
    text_ = _BARE.sub(r"\1", text_)
    text_ = _MENTION.sub(lambda m: m.group(1) or "@someone", text_)
    return text_.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").strip()


@dataclass(frozen=True)
class ThreadReply:
    """A human's message in one of our threads, claimed for handling."""

    key: str
    conversation_id: str
    slack_user: str
    text: str


class SlackReplies:
    """Verifies Slack's requests and answers visitors with what mapped people write in the threads."""

    def __init__(self, runtime: Runtime) -> None:
        settings = runtime.settings
        if not (settings.slack_signing_secret and settings.slack_bot_token):
            raise NotFound("Slack app mode is off (SUPPORTBOT_SLACK_BOT_TOKEN and SUPPORTBOT_SLACK_SIGNING_SECRET)")
        self.secret = settings.slack_signing_secret
        self.token = settings.slack_bot_token
        self.api_url = settings.slack_api_url
        self.max_chars = settings.max_message_chars
        self.runtime = runtime
        self.sessions: sessionmaker[Session] = runtime.handoff.sessions

    def verified(self, timestamp: str | None, signature: str | None, body: bytes) -> dict[str, Any]:
        """The request's JSON when Slack signed it recently; otherwise audited and refused (401)."""
        try:
            verify_slack_request(self.secret, timestamp, signature, body)
        except SignatureRefused as refused:
            self.runtime.review.record("slack", REFUSED, "slack:events", {"reason": str(refused)})
            raise Unauthorized(f"not a request from Slack: {refused}", code="slack_signature_invalid") from None
        try:
            envelope = json.loads(body)
        except ValueError:
            raise SupportbotError("request body is not valid JSON", code="invalid_json") from None
        if not isinstance(envelope, dict):
            raise SupportbotError("request body is not a JSON object", code="invalid_json")
        return envelope

    def accept(self, envelope: dict[str, Any]) -> ThreadReply | None:
        """The human reply in one of our threads this event carries, claimed once; None to ignore it."""
        event = envelope.get("event")
        if envelope.get("type") != "event_callback" or not isinstance(event, dict) or event.get("type") != "message":
            return None
        # Bots (ours included), edits, deletions, joins: only a person's new message is an answer (one also
        # sent to the channel, a thread_broadcast, included).
        if event.get("subtype") not in (None, "thread_broadcast") or event.get("bot_id") \
                or not isinstance(event.get("user"), str):
            return None
        thread_ts, channel, body = event.get("thread_ts"), event.get("channel"), event.get("text")
        if not isinstance(thread_ts, str) or thread_ts == event.get("ts") or not isinstance(body, str):
            return None
        key = str(event.get("client_msg_id") or envelope.get("event_id") or "")[:80]
        if not key:
            return None
        with transaction(self.sessions) as session:
            thread = session.scalars(select(SlackThread).where(
                SlackThread.channel == channel, SlackThread.thread_ts == thread_ts)).first()
            if thread is None or not _claim(session, f"slack-event:{key}", event["user"]):
                return None
            return ThreadReply(key, thread.conversation_id, event["user"], plain_text(body))

    async def answer(self, reply: ThreadReply) -> None:
        """Post the reply to the visitor as the mapped person, or explain in the thread why not."""
        client = SlackClient(self.api_url, self.token)
        try:
            who = await client.user(reply.slack_user)
        except SlackApiError as error:
            reason = "unknown Slack user" if error.error == "user_not_found" else f"Slack said {error.error}"
            return await self._refuse(reply, f"slack:{reply.slack_user}", reason)
        except SlackError as error:
            log.warning("slack users.info failed for a thread reply: %s", error)
            return await self._refuse(reply, f"slack:{reply.slack_user}", "Slack could not tell who wrote it")
        finally:
            await client.aclose()
        if who.is_bot or who.email is None:
            return await self._refuse(reply, f"slack:{reply.slack_user}", "no e-mail address on this Slack user")
        user = await to_thread.run_sync(self.runtime.people.by_email, who.email)
        actor = normal_email(who.email)
        if user is None or user.disabled_at is not None:
            return await self._refuse(reply, actor, f"no enabled supportbot user with the e-mail {actor}")
        if user.role not in ANSWERING:
            return await self._refuse(reply, actor, f"{actor} is a {user.role} and may not write to visitors")
        if not reply.text or len(reply.text) > self.max_chars:
            return await self._refuse(reply, actor, f"the reply must have 1 to {self.max_chars} characters")
        message = await to_thread.run_sync(lambda: self.runtime.handoff.agent_reply(
            reply.conversation_id, reply.text, author=user.name, corrects_id=None, actor=user.email))
        await self.runtime.events.publish(new_event(AGENT_REPLY, reply.conversation_id, message_id=message.id,
                                                    author=user.name))

    async def _refuse(self, reply: ThreadReply, actor: str, reason: str) -> None:
        def write() -> None:
            with transaction(self.sessions) as session:
                audit(session, actor, REFUSED, f"conversation:{reply.conversation_id}",
                      {"reason": reason, "slack_user": reply.slack_user})
                enqueue_thread_note(session, reply.conversation_id,
                                    f":no_entry: Not sent to the visitor: {reason}.", key=f"slack-note:{reply.key}")
        await to_thread.run_sync(write)


def _claim(session: Session, key: str, slack_user: str) -> bool:
    """Mark the event handled; False when it already was (Slack's retry). Serialized per key on PostgreSQL."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})
    seen = session.scalars(select(AuditEntry.id).where(AuditEntry.action == RECEIVED, AuditEntry.target == key)
                           .limit(1)).first()
    if seen is not None:
        return False
    audit(session, f"slack:{slack_user}", RECEIVED, key)
    return True
