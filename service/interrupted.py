"""Turns no process finished: the visitor's message was stored, then its replica died before replying.

A killed replica (SIGKILL, out of memory, a lost host) writes nothing more. The widget resends a message whose
stream broke, with the same client message id, and another replica answers it once; a visitor who left never
does. The sweep marks those turns so nothing is silently dropped: once a visitor's message has waited longer than
any turn may run (`SUPPORTBOT_INTERRUPTED_TURN_SECONDS`, more than `SUPPORTBOT_TURN_TIMEOUT`), is still the last
message of a conversation the bot is handling, and has no reply, it gets a fixed reply (status `failed`, in the
visitor's language) and the conversation is handed over (reason `interrupted`) for a person to follow up. A resend
after that gets the fixed reply (a turn is answered once: `messages.reply_to_id` is unique).

One replica sweeps at a time (a lease in `job_leases`); each turn is marked in its own transaction.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased, sessionmaker

from .db import transaction
from .models import Conversation, ConversationStatus, FinishStatus, Message, Origin, Role, utcnow
from .outbox import HandoffNotice
from .periodic import every
from .retention import claim_lease
from .store import escalate

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted"  # the escalation reason, the fixed text's key and the reply's provider
LEASE = "interrupted-turns"
BATCH = 100
# How far back a round looks. The sweep runs every minute or so on some replica, so a turn is marked within
# minutes; one abandoned while no replica ran for longer than this stays unmarked (its message is still stored).
LOOK_BACK = timedelta(days=1)


def abandoned_turns(session: Session, before: datetime, limit: int = BATCH) -> list[tuple[int, str, str | None]]:
    """(message id, conversation id, language) of visitors' messages stored before `before` that no one answered
    and that are still the last message of a conversation the bot handles.

    Only conversations active within `LOOK_BACK` of `before` are read (storing a message sets `updated_at`, which
    is indexed): a round reads the recent conversations, not every open one there ever was.
    """
    reply, later = aliased(Message), aliased(Message)
    query = (
        select(Message.id, Message.conversation_id, Message.language)
        .join(Conversation, Conversation.id == Message.conversation_id)
        .where(Conversation.updated_at >= before - LOOK_BACK,
               Message.role == Role.USER, Message.origin == Origin.VISITOR, Message.created_at < before,
               Conversation.status == ConversationStatus.OPEN,
               ~exists().where(reply.reply_to_id == Message.id),
               ~exists().where(and_(later.conversation_id == Message.conversation_id, later.id > Message.id)))
        .order_by(Message.id)
        .limit(limit)
    )
    return [(row.id, row.conversation_id, row.language) for row in session.execute(query)]


def mark_interrupted(sessions: sessionmaker[Session], notice: HandoffNotice, text: Callable[[str | None], str],
                     before: datetime) -> list[int]:
    """Answer and hand over each abandoned turn (one transaction each); the ids of the messages marked."""
    with sessions() as session:
        found = abandoned_turns(session, before)
    marked = []
    for message_id, conversation_id, language in found:
        try:
            with transaction(sessions) as session:
                still_open = session.scalar(select(Conversation.status).where(
                    Conversation.id == conversation_id)) == ConversationStatus.OPEN
                if not still_open:
                    continue
                session.add(Message(conversation_id=conversation_id, role=Role.ASSISTANT, origin=Origin.FIXED,
                                    content=text(language), reply_to_id=message_id, status=FinishStatus.FAILED,
                                    provider=INTERRUPTED))
                session.flush()  # the unique reply_to_id: a turn answered meanwhile stops here
                escalate(session, notice, conversation_id, message_id, INTERRUPTED,
                         "the process answering this message stopped before it replied", None)
        except IntegrityError:
            continue  # answered meanwhile (a resend, another sweeper): nothing to mark
        marked.append(message_id)
        log.warning("conversation=%s message=%s turn interrupted (its process stopped); handed over",
                    conversation_id, message_id)
    return marked


class InterruptedTurns:
    """The periodic sweep: whichever replica takes the lease marks the abandoned turns of that round."""

    def __init__(self, sessions: sessionmaker[Session], notice: HandoffNotice, text: Callable[[str | None], str],
                 after: float, clock: Callable[[], datetime] = utcnow, holder: str | None = None) -> None:
        self.sessions = sessions
        self.notice = notice
        self.text = text
        self.after = after
        self.clock = clock
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"

    @property
    def interval(self) -> float:
        return min(self.after / 2, 60.0)

    def run_due(self) -> list[int] | None:
        """Sweep when this process takes the lease: the marked message ids, or None when another has the round."""
        now = self.clock()
        if not claim_lease(self.sessions, LEASE, self.holder, self.interval * 0.9, now):
            return None
        return mark_interrupted(self.sessions, self.notice, self.text, now - timedelta(seconds=self.after))

    async def run(self) -> None:
        """Sweep every `interval` seconds until cancelled."""
        await every(self.interval, self.run_due, "sweep for interrupted turns")
