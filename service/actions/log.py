"""Action calls in the conversation log: stored with the reply that ended their turn, and the visitor's decision
on a call that waits for Confirm."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from ..db import transaction
from ..errors import Conflict, NotFound
from ..models import ActionCall, ActionStatus, Conversation, ConversationStatus, Message, Role, utcnow

CONFIRM, CANCEL = "confirm", "cancel"
DECISIONS = (CONFIRM, CANCEL)


@dataclass(frozen=True)
class ActionCallRecord:
    """One call of a turn, as the turn stores it with its reply."""

    round: int
    call_id: str
    action: str
    arguments: dict[str, Any] | None
    status: str
    tool_content: str
    http_status: int | None = None
    latency_ms: int | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    summary: str | None = None
    confirms_id: int | None = None


@dataclass(frozen=True)
class Confirmation:
    """A call waiting for the visitor's Confirm or Cancel: what the widget shows."""

    action_call_id: int
    action: str
    summary: str

    def public(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Decision:
    """The visitor's answer to a confirmation, with what the turn needs to act on it."""

    action_call_id: int
    call_id: str
    action: str
    arguments: dict[str, Any]
    decision: str  # CONFIRM or CANCEL
    language: str | None  # the conversation's, for the decision's label

    @property
    def confirmed(self) -> bool:
        return self.decision == CONFIRM

    @property
    def client_message_id(self) -> str:
        """The decision's message id: a second click (or a retry) replays the first answer."""
        return f"action-{self.action_call_id}"


def insert_calls(connection: Connection, conversation_id: str, message_id: int, reply_id: int,
                 calls: tuple[ActionCallRecord, ...]) -> list[int]:
    """Store a turn's calls (in the reply's transaction); their ids, in order."""
    now = utcnow()
    return [connection.execute(insert(ActionCall).returning(ActionCall.id), {
        **asdict(call), "conversation_id": conversation_id, "message_id": message_id, "reply_id": reply_id,
        "created_at": now,
    }).scalar_one() for call in calls]


def decide(sessions: sessionmaker[Session], conversation_id: str, action_call_id: int, decision: str) -> Decision:
    """Record the visitor's decision on a waiting call (once: the same decision again is accepted, another is a
    conflict; a call the visitor wrote past is expired)."""
    with transaction(sessions) as session:
        call = session.get(ActionCall, action_call_id, with_for_update=True)
        if call is None or call.conversation_id != conversation_id or call.summary is None:
            raise NotFound("no such confirmation in this conversation", code="confirmation_not_found")
        wanted = ActionStatus.CONFIRMED if decision == CONFIRM else ActionStatus.CANCELLED
        conversation = session.execute(select(Conversation.language, Conversation.status)
                                       .where(Conversation.id == conversation_id)).one()
        language = conversation.language
        if call.status != ActionStatus.AWAITING_CONFIRMATION:
            if call.status != wanted:
                raise Conflict(f"this action was already {call.status}", code="confirmation_decided")
        else:
            later = session.scalar(select(Message.id).where(
                Message.conversation_id == conversation_id, Message.role == Role.USER,
                Message.id > call.message_id,
            ).limit(1))
            if later is not None:
                raise Conflict("the conversation moved on since this was asked; ask again",
                               code="confirmation_expired")
            if conversation.status == ConversationStatus.ESCALATED:
                # A person has the conversation: the bot does not act for them.
                raise Conflict("a member of the support team has this conversation now",
                               code="conversation_with_agent")
            session.execute(update(ActionCall).where(ActionCall.id == call.id).values(
                status=wanted, decided_at=utcnow()))
        return Decision(call.id, call.call_id, call.action, dict(call.arguments or {}), decision, language)


def pending_confirmations(sessions: sessionmaker[Session], conversation_id: str) -> dict[int, Confirmation]:
    """The calls still waiting for the visitor, by the reply that asked (none once the visitor wrote again)."""
    with sessions() as session:
        rows = session.execute(select(ActionCall.id, ActionCall.action, ActionCall.summary, ActionCall.reply_id,
                                      ActionCall.message_id).where(
            ActionCall.conversation_id == conversation_id,
            ActionCall.status == ActionStatus.AWAITING_CONFIRMATION)).all()
        if not rows:
            return {}
        last_user = session.scalar(select(Message.id).where(
            Message.conversation_id == conversation_id, Message.role == Role.USER).order_by(Message.id.desc())
            .limit(1))
    return {row.reply_id: Confirmation(row.id, row.action, row.summary or "") for row in rows
            if row.reply_id is not None and row.message_id == last_user}


def calls_of_turn(sessions: sessionmaker[Session], message_id: int) -> list[ActionCall]:
    """The calls a visitor message's turn made, in order (a replayed turn shows them again)."""
    with sessions() as session:
        return list(session.scalars(select(ActionCall).where(ActionCall.message_id == message_id)
                                    .order_by(ActionCall.id)))
