"""The conversation log: every read and write of conversations, messages, prompts and escalations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Engine, Table, bindparam, case, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.schema import ScalarElementColumnDefault

from .actions.log import ActionCallRecord, insert_calls
from .assignment import assign_round_robin
from .db import Work, transaction, work
from .errors import NotFound, Unprocessable
from .language import Guess
from .models import (
    Conversation,
    ConversationStatus,
    Escalation,
    Message,
    Origin,
    PromptSnapshot,
    Role,
    Said,
    UsageDay,
    utcnow,
)
from .outbox import HandoffNotice, enqueue_handoff
from .review import refresh_conversation, set_miss_reason
from .slack.threads import enqueue_slack_handoff, enqueue_visitor_message
from .telemetry import metrics

REPLAY_PROVIDER = "replay"  # earlier turns stored by `seed_history` when labeled cases are replayed


@dataclass(frozen=True)
class TurnStart:
    """What the first write of a turn returns: the stored user message and the context to answer it."""

    conversation_id: str
    user_message: Said
    conversation_status: str
    history: list[Said]
    reply: Message | None = None
    escalation: Escalation | None = None  # the replayed turn's, or the conversation's open escalation
    tokens_used: int = 0
    day_tokens: int = 0
    day_cost: float = 0.0
    language: str | None = None  # the visitor message's (service/language.py); None when not detected
    arm: str | None = None  # the experiment arm (`name@version`) the conversation was assigned; None without a split
    user_id: str | None = None  # the visitor's user id when verified with the widget's HMAC identity, else None


@dataclass(frozen=True)
class ReplyRecord:
    """Everything the second write of a turn stores."""

    conversation_id: str
    reply_to_id: int
    content: str
    origin: str
    status: str
    provider: str
    model_requested: str | None
    model_reported: str | None
    prompt_name: str | None
    prompt_version: str | None
    prompt_sha256: str | None
    prompt_text: str | None
    tokens_in: int | None
    tokens_out: int | None
    cost_usd: float | None
    latency_ms: int | None
    tool_calls: list[dict[str, Any]] | None = None
    escalation_reason: str | None = None
    escalation_detail: str | None = None
    escalation_summary: str | None = None
    miss_reasons: tuple[str, ...] = ()
    known_issue: str | None = None
    blocked_content: str | None = None
    sources: list[dict[str, Any]] | None = None  # [{"title", "url"}]: what the reply drew on; None for fixed texts
    count_usage: bool = False
    previous_reply_id: int | None = None
    previous_reply_misses: tuple[str, ...] = ()
    action_calls: tuple[ActionCallRecord, ...] = ()  # the actions the model called in this turn, in order


class ConversationLog:
    """Storage for one database; all methods are blocking and each runs its own transaction."""

    def __init__(self, engine: Engine, sessions: sessionmaker[Session], notice: HandoffNotice) -> None:
        self.engine = engine
        self.sessions = sessions
        self.notice = notice
        self._known_snapshots: set[str] = set()

    def create_conversation(self, visitor: dict[str, Any] | None = None) -> Conversation:
        """A new open conversation."""
        with transaction(self.sessions) as session:
            conversation = Conversation(visitor=visitor, status=ConversationStatus.OPEN, user_turns=0)
            session.add(conversation)
        return conversation

    def seed_history(self, conversation_id: str, messages: list[dict[str, str]]) -> None:
        """Store earlier messages as if they had happened (replaying labeled cases)."""
        with transaction(self.sessions) as session:
            users = 0
            for item in messages:
                role = Role.USER if item["role"] == "user" else Role.ASSISTANT
                users += role == Role.USER
                # A replayed bot reply stands for the bot's answer: later turns judge it as one.
                origin = Origin.VISITOR if role == Role.USER else Origin.MODEL
                session.add(Message(conversation_id=conversation_id, role=role, origin=origin,
                                    content=item["content"], provider=None if role == Role.USER else REPLAY_PROVIDER))
            session.execute(update(Conversation).where(Conversation.id == conversation_id)
                            .values(user_turns=Conversation.user_turns + users))

    def get_conversation(self, conversation_id: str) -> Conversation:
        """The conversation, or NotFound."""
        with self.sessions() as session:
            conversation = session.get(Conversation, conversation_id)
        if conversation is None:
            raise NotFound("conversation not found")
        return conversation

    def transcript(self, conversation_id: str) -> tuple[Conversation, list[Message]]:
        """The conversation and all its messages, oldest first."""
        with self.sessions() as session:
            conversation = session.get(Conversation, conversation_id)
            if conversation is None:
                raise NotFound("conversation not found")
            messages = list(session.scalars(
                select(Message).where(Message.conversation_id == conversation_id).order_by(Message.id)
            ))
        return conversation, messages

    def begin_turn(
        self, conversation_id: str, content: str, client_message_id: str | None, *,
        max_turns: int, history_limit: int, with_usage: bool = False, language: Guess | None = None,
        arm: str | None = None, prepared: Callable[[TurnStart], object] | None = None,
    ) -> TurnStart:
        """Store the user message in its own committed transaction, with the history to answer it.

        A repeated `client_message_id` stores nothing and returns the first message (and its
        reply, when there is one), so retries from a flaky network are answered once. `language`,
        what detection made of the message, is resolved against the conversation's and stored on both.
        `arm` is stored when this is the conversation's first message, and kept for its life.
        `prepared` is called with the turn once its statements have run and just before the commit (so the
        caller can ask the model while the commit waits for the disk); what is returned is then that same
        turn, or the commit's error. A replayed message is returned without calling it.
        """
        said: list[TurnStart] = []

        def announce(start: TurnStart) -> None:
            said.append(start)
            if prepared is not None:
                prepared(start)

        try:
            return self._begin_turn(conversation_id, content, client_message_id, max_turns, history_limit,
                                    with_usage, language, arm, announce)
        except IntegrityError:
            # Two sends with one client_message_id raced; the other one stored it first.
            if client_message_id is None or said:  # after `prepared`, the caller holds this turn: no other
                raise
            replay = self._replay(conversation_id, client_message_id, history_limit)
            assert replay is not None
            return replay

    def _begin_turn(
        self, conversation_id: str, content: str, client_message_id: str | None,
        max_turns: int, history_limit: int, with_usage: bool, guess: Guess | None = None, arm: str | None = None,
        prepared: Callable[[TurnStart], object] = lambda start: None,
    ) -> TurnStart:
        if client_message_id is not None:
            replay = self._replay(conversation_id, client_message_id, history_limit)
            if replay is not None:
                return replay
        with work(self.sessions) as unit:
            # The hot path runs Core statements: the same rows as the ORM would write, without its unit of work
            # (bench/findings.md, finding 1) or, unless a rare path needs one, its session (0k).
            connection = unit.connection
            counted = connection.execute(_COUNT_TURN, {
                "conversation_id": conversation_id, "max_turns": max_turns, "now": utcnow(), "arm": arm,
            }).first()
            if counted is None:
                if unit.session.get(Conversation, conversation_id) is None:
                    raise NotFound("conversation not found")
                raise Unprocessable(
                    f"this conversation reached its limit of {max_turns} messages; start a new one",
                    code="conversation_too_long",
                )
            language = _visitor_language(connection, conversation_id, counted, guess)
            message_id = connection.execute(_INSERT_MESSAGE, _message_row(
                conversation_id=conversation_id, role=Role.USER, origin=Origin.VISITOR, content=content,
                client_message_id=client_message_id, language=language,
            )).scalar_one()
            message = Said(message_id, Role.USER, content)
            history = _history(connection, conversation_id, message_id, history_limit)
            escalation = open_escalation(unit.session, conversation_id) \
                if counted.status == ConversationStatus.ESCALATED else None
            if escalation is not None:
                enqueue_visitor_message(unit.session, self.notice, conversation_id, content)
            today = unit.session.get(UsageDay, utcnow().date().isoformat()) if with_usage else None
            start = TurnStart(conversation_id, message, counted.status, history, escalation=escalation,
                              tokens_used=counted.tokens_used, day_tokens=today.tokens if today else 0,
                              day_cost=today.cost_usd if today else 0.0, language=language, arm=counted.arm,
                              user_id=verified_user(counted.visitor))
            prepared(start)
        return start

    def _replay(self, conversation_id: str, client_message_id: str, history_limit: int) -> TurnStart | None:
        with self.sessions() as session:
            message = session.scalars(select(Message).where(
                Message.conversation_id == conversation_id, Message.client_message_id == client_message_id
            )).first()
            if message is None:
                return None
            conversation = session.get(Conversation, conversation_id)
            assert conversation is not None
            reply, escalation = self._reply_of(session, message.id)
            history = [] if reply else _history(session.connection(), conversation_id, message.id, history_limit)
        return TurnStart(conversation_id, Said(message.id, message.role, message.content), conversation.status,
                         history, reply, escalation, language=message.language, arm=conversation.arm,
                         user_id=verified_user(conversation.visitor))

    def find_reply(self, message_id: int) -> tuple[Message | None, Escalation | None]:
        """The reply to a user message and the escalation it triggered, if any."""
        with self.sessions() as session:
            return self._reply_of(session, message_id)

    @staticmethod
    def _reply_of(session: Session, message_id: int) -> tuple[Message | None, Escalation | None]:
        reply = session.scalars(select(Message).where(Message.reply_to_id == message_id)).first()
        escalation = session.scalars(
            select(Escalation).where(Escalation.message_id == message_id).order_by(Escalation.id.desc())
        ).first()
        return reply, escalation

    def record_reply(self, record: ReplyRecord) -> tuple[int, Escalation | None, list[int]]:
        """Store the assistant reply, its prompt snapshot, its turn's action calls and any escalation, in one
        transaction; the reply's id, the escalation and the calls' ids."""
        with work(self.sessions) as unit:
            connection = unit.connection
            self._ensure_snapshot(connection, record)
            reply_id: int = connection.execute(_INSERT_MESSAGE, _message_row(
                conversation_id=record.conversation_id, role=Role.ASSISTANT, origin=record.origin,
                content=record.content, reply_to_id=record.reply_to_id, provider=record.provider,
                model_requested=record.model_requested, model_reported=record.model_reported,
                prompt_name=record.prompt_name, prompt_version=record.prompt_version,
                prompt_sha256=record.prompt_sha256, tokens_in=record.tokens_in, tokens_out=record.tokens_out,
                cost_usd=record.cost_usd, latency_ms=record.latency_ms, status=record.status,
                tool_calls=record.tool_calls, miss_reasons=",".join(sorted(record.miss_reasons)) or None,
                known_issue=record.known_issue, blocked_content=record.blocked_content, sources=record.sources,
            )).scalar_one()
            call_ids = insert_calls(connection, record.conversation_id, record.reply_to_id, reply_id,
                                    record.action_calls) if record.action_calls else []
            escalation = None
            if record.escalation_reason is not None:
                escalation = escalate(unit.session, self.notice, record.conversation_id, record.reply_to_id,
                                      record.escalation_reason, record.escalation_detail, record.escalation_summary)
            self._update_review_state(unit, record)
        if record.prompt_sha256:
            self._known_snapshots.add(record.prompt_sha256)
        return reply_id, escalation, call_ids

    @staticmethod
    def _update_review_state(unit: Work, record: ReplyRecord) -> None:
        changed = bool(record.miss_reasons) or record.escalation_reason is not None
        if record.previous_reply_id is not None and record.previous_reply_misses:
            previous = unit.session.get(Message, record.previous_reply_id)
            for reason in record.previous_reply_misses:
                if previous is not None and set_miss_reason(unit.session, previous, reason):
                    changed = True
        tokens = (record.tokens_in or 0) + (record.tokens_out or 0)
        if record.prompt_name:
            unit.connection.execute(_COUNT_TOKENS, {
                "conversation_id": record.conversation_id, "tokens": tokens,
                "prompt_version": f"{record.prompt_name}@{record.prompt_version}",
            })
        if record.count_usage and (tokens or record.cost_usd):
            add_usage(unit.session, tokens, record.cost_usd or 0.0)
        if changed:
            refresh_conversation(unit.session, record.conversation_id)

    def _ensure_snapshot(self, connection: Connection, record: ReplyRecord) -> None:
        if record.prompt_sha256 is None or record.prompt_sha256 in self._known_snapshots:
            return
        values = {
            "sha256": record.prompt_sha256, "prompt_name": record.prompt_name,
            "prompt_version": record.prompt_version, "content": record.prompt_text, "created_at": utcnow(),
        }
        connection.execute(_upsert(connection.dialect.name)(PromptSnapshot).values(**values).on_conflict_do_nothing())

    def snapshot(self, sha256: str) -> PromptSnapshot:
        """The exact system prompt stored under `sha256`."""
        with self.sessions() as session:
            found = session.get(PromptSnapshot, sha256)
        if found is None:
            raise NotFound(f"no prompt snapshot {sha256}")
        return found


def open_escalation(session: Session, conversation_id: str) -> Escalation | None:
    """The conversation's latest escalation that no agent has resolved yet."""
    return session.scalars(
        select(Escalation)
        .where(Escalation.conversation_id == conversation_id, Escalation.resolved_at.is_(None))
        .order_by(Escalation.id.desc())
    ).first()


def escalate(
    session: Session, notice: HandoffNotice, conversation_id: str, message_id: int | None, reason: str,
    detail: str | None, summary: str | None, contact: str | None = None,
) -> Escalation:
    """Record an escalation, move the conversation to `escalated` and queue the handoff notification."""
    escalation = Escalation(conversation_id=conversation_id, message_id=message_id, reason=reason,
                            detail=detail, summary=summary, contact=contact)
    session.add(escalation)
    session.execute(
        update(Conversation)
        .where(Conversation.id == conversation_id)
        .values(status=ConversationStatus.ESCALATED, updated_at=utcnow())
    )
    if notice.auto_assign:
        assign_round_robin(session, conversation_id)
    metrics.record_escalation(reason)
    enqueue_handoff(session, notice, escalation)
    enqueue_slack_handoff(session, notice, escalation)
    return escalation


def _upsert(dialect: str) -> Any:
    """The dialect's INSERT, which has ON CONFLICT (both databases spell it alike)."""
    return pg_insert if dialect == "postgresql" else sqlite_insert


def add_usage(session: Session, tokens: int, cost: float) -> None:
    """Add to today's deployment-wide usage (one upsert)."""
    statement = _upsert(session.get_bind().dialect.name)(UsageDay).values(
        day=utcnow().date().isoformat(), tokens=tokens, cost_usd=cost)
    session.execute(statement.on_conflict_do_update(
        index_elements=[UsageDay.day],
        set_={"tokens": UsageDay.tokens + tokens, "cost_usd": UsageDay.cost_usd + cost}))


_MESSAGES = cast(Table, Message.__table__)
_CONVERSATIONS = cast(Table, Conversation.__table__)
# Built once: the hot path binds parameters into prebuilt statements (SQLAlchemy caches their compiled SQL).
_INSERT_MESSAGE = insert(_MESSAGES).returning(_MESSAGES.c.id)
_COUNT_TURN = (
    update(_CONVERSATIONS)
    .where(_CONVERSATIONS.c.id == bindparam("conversation_id"),
           _CONVERSATIONS.c.user_turns < bindparam("max_turns"))
    .values(
        user_turns=_CONVERSATIONS.c.user_turns + 1, updated_at=bindparam("now"),
        # A customer writing again after an agent resolved the conversation reopens it.
        status=case((_CONVERSATIONS.c.status == ConversationStatus.RESOLVED, ConversationStatus.OPEN),
                    else_=_CONVERSATIONS.c.status),
        # The arm is assigned in the statement that counts the first message, so a concurrent second
        # message (waiting on this row) already sees it.
        arm=case((_CONVERSATIONS.c.user_turns == 0,
                  func.coalesce(_CONVERSATIONS.c.arm, bindparam("arm", type_=_CONVERSATIONS.c.arm.type))),
                 else_=_CONVERSATIONS.c.arm),
    )
    .returning(_CONVERSATIONS.c.status, _CONVERSATIONS.c.tokens_used, _CONVERSATIONS.c.language,
               _CONVERSATIONS.c.visitor, _CONVERSATIONS.c.arm)
)
_SET_LANGUAGE = (
    update(_CONVERSATIONS).where(_CONVERSATIONS.c.id == bindparam("conversation_id"))
    .values(language=bindparam("language"))
)
_COUNT_TOKENS = (
    update(_CONVERSATIONS)
    .where(_CONVERSATIONS.c.id == bindparam("conversation_id"))
    .values(prompt_version=bindparam("prompt_version"),
            tokens_used=_CONVERSATIONS.c.tokens_used + bindparam("tokens"))
)
_HISTORY_COLUMNS = ("id", "role", "content", "provider", "status", "origin")  # the fields of Said, in order
_HISTORY = (
    select(*(_MESSAGES.c[name] for name in _HISTORY_COLUMNS))
    .where(_MESSAGES.c.conversation_id == bindparam("conversation_id"), _MESSAGES.c.id < bindparam("before_id"))
    .order_by(_MESSAGES.c.id.desc())
    .limit(bindparam("limit"))
)


def verified_user(visitor: dict[str, Any] | None) -> str | None:
    """The visitor's user id if the widget's HMAC identity verified it (actions send only this one)."""
    if not visitor or visitor.get("verified") is not True:
        return None
    user_id = visitor.get("user_id")
    return str(user_id) if user_id else None


def _visitor_language(connection: Connection, conversation_id: str, counted: Any, guess: Guess | None) -> str | None:
    """The message's language; the conversation takes a confidently detected one (or its first)."""
    if guess is None:
        return None
    language = guess.resolve(counted.language, counted.visitor)
    if language != counted.language and (guess.detected or counted.language is None):
        connection.execute(_SET_LANGUAGE, {"conversation_id": conversation_id, "language": language})
    return language


def _message_row(**values: Any) -> dict[str, Any]:
    """Every column of a new message as the INSERT binds them: `values`, the rest at their defaults.

    No tool calls (or sources) is stored as SQL NULL (a bound None would become the JSON text `null`).
    """
    row = {**_MESSAGE_DEFAULTS, "created_at": utcnow(), **values}
    for column in _JSON_COLUMNS:
        if row[column] is None:
            del row[column]
    return row


_JSON_COLUMNS = ("tool_calls", "sources")
# The model's scalar column defaults (status "ok", the rest NULL); created_at is stamped per row.
_MESSAGE_DEFAULTS: dict[str, Any] = {
    column.key: column.default.arg if isinstance(column.default, ScalarElementColumnDefault) else None
    for column in _MESSAGES.columns if column.key != "id"
}


def _history(connection: Connection, conversation_id: str, before_id: int, limit: int) -> list[Said]:
    """The last `limit` messages before `before_id`, oldest first (only the columns a turn reads)."""
    rows = connection.execute(_HISTORY, {"conversation_id": conversation_id, "before_id": before_id, "limit": limit})
    return [Said(*row) for row in reversed(rows.all())]
