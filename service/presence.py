"""Whether a visitor is still on the page: the widget's heartbeats, stored as `conversations.visitor_seen_at`.

A heartbeat comes every HEARTBEAT_SECONDS while the widget is open; the row is written at most once per
WRITE_EVERY_SECONDS (a busy site does not turn heartbeats into a write each), and a visitor counts as online
for ONLINE_SECONDS after the last stored one: three heartbeats missed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from .db import transaction
from .errors import NotFound
from .models import Conversation, utcnow

HEARTBEAT_SECONDS = 15
WRITE_EVERY_SECONDS = 15
ONLINE_SECONDS = 45


def is_online(seen_at: datetime | None, now: datetime | None = None) -> bool:
    """True when the visitor's last heartbeat is recent enough to count them as on the page."""
    return seen_at is not None and (now or utcnow()) - seen_at < timedelta(seconds=ONLINE_SECONDS)


def record_heartbeat(sessions: sessionmaker[Session], conversation_id: str, now: datetime | None = None) -> bool:
    """Note that the visitor's page is open; True when they were not online before (they just arrived)."""
    now = now or utcnow()
    with sessions() as db:
        found = db.execute(select(Conversation.id, Conversation.visitor_seen_at)
                           .where(Conversation.id == conversation_id)).first()
    if found is None:
        raise NotFound("conversation not found")
    seen_at = found.visitor_seen_at
    if seen_at is None or now - seen_at >= timedelta(seconds=WRITE_EVERY_SECONDS):
        with transaction(sessions) as db:
            # updated_at kept as it is: a heartbeat is not activity, and must not reorder the inbox.
            db.execute(update(Conversation).where(Conversation.id == conversation_id)
                       .values(visitor_seen_at=now, updated_at=Conversation.updated_at))
    return not is_online(seen_at, now)
