"""The database schema as typed SQLAlchemy 2 models; migrations in `migrations/` must match it."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC and always read back timezone-aware (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    """Timezone-aware now, the only clock the schema uses."""
    return datetime.now(UTC)


def new_conversation_id() -> str:
    """An unguessable conversation id (128 random bits, hex)."""
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    pass


class ConversationStatus(enum.StrEnum):
    OPEN = "open"
    ESCALATED = "escalated"
    RESOLVED = "resolved"


class Role(enum.StrEnum):
    USER = "user"
    ASSISTANT = "assistant"
    AGENT = "agent"
    SYSTEM = "system"


class StaffRole(enum.StrEnum):
    """What a person of the support team may do (service/people.py says which routes each role reaches)."""

    ADMIN = "admin"  # everything, including people and settings
    AGENT = "agent"  # answers visitors, claims, assigns, resolves, writes corrections
    REVIEWER = "reviewer"  # reads conversations, reviews misses, writes corrections, exports; never writes to a visitor


class Origin(enum.StrEnum):
    """Who wrote a message's text: the visitor, a model (hosted or offline), a fixed text of the service, a person."""

    VISITOR = "visitor"
    MODEL = "model"
    FIXED = "fixed"
    AGENT = "agent"


class FinishStatus(enum.StrEnum):
    OK = "ok"
    PARTIAL = "partial"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Said:
    """A stored message as a turn reads it: the columns the pipeline uses, without ORM bookkeeping."""

    id: int
    role: str
    content: str
    provider: str | None = None
    status: str = FinishStatus.OK
    origin: str | None = None


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (
        Index("ix_conversations_updated_at_id", "updated_at", "id"),
        Index("ix_conversations_unreviewed_updated", "unreviewed_misses", "updated_at"),
        Index("ix_conversations_miss_updated", "miss_count", "updated_at"),
        Index("ix_conversations_prompt_updated", "prompt_version", "updated_at"),
        Index("ix_conversations_language_updated", "language", "updated_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_conversation_id)
    status: Mapped[str] = mapped_column(String(16), default=ConversationStatus.OPEN, index=True)
    user_turns: Mapped[int] = mapped_column(Integer, default=0)
    visitor: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    # Review state, kept up to date on every write that changes it, so the inbox filters stay
    # index lookups at millions of messages instead of scans.
    prompt_version: Mapped[str | None] = mapped_column(String(160), default=None)
    miss_count: Mapped[int] = mapped_column(Integer, default=0)
    unreviewed_misses: Mapped[int] = mapped_column(Integer, default=0)
    thumbs_down: Mapped[int] = mapped_column(Integer, default=0)
    escalated_ever: Mapped[bool] = mapped_column(Boolean, default=False)
    exclude_from_training: Mapped[bool] = mapped_column(Boolean, default=False)
    tokens_used: Mapped[int] = mapped_column(Integer, default=0)
    # The visitor's language (ISO 639-1): the latest one detected with confidence (service/language.py).
    language: Mapped[str | None] = mapped_column(String(8), default=None)
    # The person handling the handoff (NULL: unassigned), and when the visitor's widget was last seen open.
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None,
                                                    index=True)
    visitor_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # The experiment arm (a prompt version ref, `name@version`) the conversation was assigned when it started,
    # kept for its life; NULL when the label served had no split.
    arm: Mapped[str | None] = mapped_column(String(160), default=None)
    # Retention (service/retention.py): when personal data was redacted from a conversation kept for training,
    # and when its text and contact details were removed (figures stay); an anonymized one is never looked at again.
    redacted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    anonymized_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class PromptSnapshot(Base):
    """Every distinct rendered system prompt, stored once under its sha256."""

    __tablename__ = "prompt_snapshots"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    prompt_name: Mapped[str] = mapped_column(String(100))
    prompt_version: Mapped[str] = mapped_column(String(50))
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("conversation_id", "client_message_id", name="uq_messages_client_message_id"),
        Index("ix_messages_conversation_id_id", "conversation_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))
    # Who wrote the text (Origin): training data and figures read this, never a vendor's name.
    origin: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    client_message_id: Mapped[str | None] = mapped_column(String(100), default=None)
    # An assistant reply points at the user message it answers; unique so a turn is answered once.
    reply_to_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL"), unique=True, default=None
    )
    provider: Mapped[str | None] = mapped_column(String(32), default=None)
    model_requested: Mapped[str | None] = mapped_column(String(100), default=None)
    model_reported: Mapped[str | None] = mapped_column(String(100), default=None)
    prompt_name: Mapped[str | None] = mapped_column(String(100), default=None)
    prompt_version: Mapped[str | None] = mapped_column(String(50), default=None, index=True)
    prompt_sha256: Mapped[str | None] = mapped_column(ForeignKey("prompt_snapshots.sha256"), default=None)
    tokens_in: Mapped[int | None] = mapped_column(Integer, default=None)
    tokens_out: Mapped[int | None] = mapped_column(Integer, default=None)
    cost_usd: Mapped[float | None] = mapped_column(Float, default=None)
    latency_ms: Mapped[int | None] = mapped_column(Integer, default=None)
    status: Mapped[str] = mapped_column(String(16), default=FinishStatus.OK)
    tool_calls: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, default=None)
    # An agent's reply names the bot reply it corrects: the pair becomes training data.
    corrects_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL"), default=None, index=True
    )
    author: Mapped[str | None] = mapped_column(String(100), default=None)
    # Why a bot reply counts as a miss: comma-separated, sorted (thumbs_down, escalated, ...); NULL if not.
    miss_reasons: Mapped[str | None] = mapped_column(String(200), default=None)
    review: Mapped[str | None] = mapped_column(String(16), default=None)  # good | flagged
    # The known issue the user's message matched best (BM25, confident matches only): which topics miss.
    known_issue: Mapped[str | None] = mapped_column(String(200), default=None)
    # What the model wrote when the leak guard replaced it: for reviewers, never shown to the visitor.
    blocked_content: Mapped[str | None] = mapped_column(Text, default=None)
    # The knowledge entries the reply drew on, as shown under it: [{"title", "url"}]; NULL for fixed texts.
    sources: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, default=None)
    # A visitor message's language (ISO 639-1), detected or inferred; NULL for the others.
    language: Mapped[str | None] = mapped_column(String(8), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class Escalation(Base):
    __tablename__ = "escalations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    message_id: Mapped[int | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL"), default=None, index=True
    )
    reason: Mapped[str] = mapped_column(String(64), index=True)
    detail: Mapped[str | None] = mapped_column(Text, default=None)
    summary: Mapped[str | None] = mapped_column(Text, default=None)
    contact: Mapped[str | None] = mapped_column(String(320), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    resolved_by: Mapped[str | None] = mapped_column(String(100), default=None)


class Feedback(Base):
    __tablename__ = "feedback"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), unique=True)
    rating: Mapped[str] = mapped_column(String(8))
    comment: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


class OutboxEvent(Base):
    """A notification to deliver (the handoff webhook), written in the same transaction as its cause."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_next_attempt_at", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event: Mapped[str] = mapped_column(String(50))
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=OutboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class Correction(Base):
    """The answer a reviewer says a bot reply should have given."""

    __tablename__ = "corrections"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)
    content: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AuditEntry(Base):
    """Who did what, when, in the admin area."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(50), index=True)
    target: Mapped[str | None] = mapped_column(String(100), default=None)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class UsageDay(Base):
    """Tokens and money spent per UTC day, for the deployment's daily budget."""

    __tablename__ = "usage_daily"

    day: Mapped[str] = mapped_column(String(10), primary_key=True)  # YYYY-MM-DD
    tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)


class AdminSession(Base):
    """A signed-in admin browser: revoked at logout, void once the admin token it was made with changes."""

    __tablename__ = "admin_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    actor: Mapped[str] = mapped_column(String(100))
    # A person's session names the user (disabling them ends it); a session made with the shared admin token
    # has no user and keeps the HMAC of that token (never the token): rotating the token ends the session.
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), default=None,
                                                index=True)
    token_fingerprint: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class KnowledgeSource(Base):
    """Where imported knowledge comes from: a help-center URL, a folder, or an articles export file."""

    __tablename__ = "knowledge_sources"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(20))  # web | folder | export
    location: Mapped[str] = mapped_column(String(2000), unique=True)
    options: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_sync_status: Mapped[str | None] = mapped_column(String(20), default=None)  # ok | partial | failed
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    # Changes (a new random value) whenever the source's entries change: replicas reload when it does.
    revision: Mapped[str | None] = mapped_column(String(32), default=None)
    # A replica syncing the source holds it until then, so scheduled syncs on several replicas do not overlap.
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class KnowledgeDocument(Base):
    """One imported page, file or article, with what is needed to tell whether it changed."""

    __tablename__ = "knowledge_documents"
    __table_args__ = (UniqueConstraint("source_id", "url", name="uq_knowledge_documents_source_url"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("knowledge_sources.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    title: Mapped[str] = mapped_column(String(500))
    content_hash: Mapped[str] = mapped_column(String(64))
    etag: Mapped[str | None] = mapped_column(String(500), default=None)
    last_modified: Mapped[str | None] = mapped_column(String(100), default=None)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)  # the article's own time
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The last failure to load it; the last good copy keeps serving meanwhile.
    last_error: Mapped[str | None] = mapped_column(Text, default=None)


class KnowledgeEntry(Base):
    """A section of an imported document, split at headings: what retrieval finds and replies cite."""

    __tablename__ = "knowledge_entries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("knowledge_documents.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(500))
    heading: Mapped[str | None] = mapped_column(String(500), default=None)
    url: Mapped[str] = mapped_column(String(2000))
    text: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)


class EmbeddingCache(Base):
    """An embedding per model and content hash, so a sync embeds only what changed."""

    __tablename__ = "embeddings"

    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    dimensions: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float32, little-endian
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class User(Base):
    """A person of the support team: signs in with a password, a one-time link, single sign-on or a token."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)  # lower-case
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))  # StaffRole
    password_hash: Mapped[str | None] = mapped_column(String(200), default=None)  # argon2id; NULL: none set
    # Agents marked available take part in automatic round-robin assignment; last_assigned_at orders them.
    available: Mapped[bool] = mapped_column(Boolean, default=False)
    last_assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiToken(Base):
    """A personal API token (shown once; only its SHA-256 is kept), or a one-time sign-in link's token."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # "api" | "sign_in_link"
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str | None] = mapped_column(String(100), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)  # or used, for a link


class CannedReply(Base):
    """A saved answer agents insert in the reply box by its shortcut."""

    __tablename__ = "canned_replies"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    shortcut: Mapped[str] = mapped_column(String(50), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    content: Mapped[str] = mapped_column(Text)
    updated_by: Mapped[str] = mapped_column(String(254))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class SlackThread(Base):
    """The Slack thread a handoff opened: the visitor's later messages go there, replies in it come back."""

    __tablename__ = "slack_threads"
    __table_args__ = (UniqueConstraint("channel", "thread_ts", name="uq_slack_threads_channel_ts"),)

    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"),
                                                 primary_key=True)
    channel: Mapped[str] = mapped_column(String(64))
    thread_ts: Mapped[str | None] = mapped_column(String(32), default=None)  # NULL until Slack has answered
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ConversationRating(Base):
    """The visitor's satisfaction (CSAT, 1-5) with a conversation, asked once, with an optional comment."""

    __tablename__ = "conversation_ratings"

    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"),
                                                 primary_key=True)
    score: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class FineTuneJob(Base):
    """A fine-tuning job started from supportbot: where it runs, its state, and the examples it trained on."""

    __tablename__ = "finetune_jobs"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)  # the provider's job id (or command run id)
    backend: Mapped[str] = mapped_column(String(16))  # "openai" | "command"
    base_model: Mapped[str] = mapped_column(String(200))
    suffix: Mapped[str | None] = mapped_column(String(64), default=None)
    status: Mapped[str] = mapped_column(String(32))  # validating_files|queued|running|succeeded|failed|cancelled
    fine_tuned_model: Mapped[str | None] = mapped_column(String(200), default=None)
    training_file: Mapped[str | None] = mapped_column(String(200), default=None)  # the provider's file id
    validation_file: Mapped[str | None] = mapped_column(String(200), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    # The bot replies whose corrected answers were trained on: the others become the job's regression cases.
    trained_message_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    created_by: Mapped[str] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class ArmStop(Base):
    """An experiment arm taken out of traffic: by the guard (a sequential test found it worse) or a person.

    While a stop is not lifted, new conversations that would have drawn this arm get the label's control
    version; conversations already on it keep it.
    """

    __tablename__ = "arm_stops"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    prompt: Mapped[str] = mapped_column(String(100))  # the prompt's name, e.g. "support"
    label: Mapped[str] = mapped_column(String(64))  # the label that splits traffic, e.g. "production"
    version: Mapped[str] = mapped_column(String(64))  # the stopped arm's version
    metric: Mapped[str] = mapped_column(String(32))  # what was worse, e.g. "escalation", "thumbs_down"; "manual"
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # counts, rates, the test's statistic
    stopped_by: Mapped[str] = mapped_column(String(254))  # "guard" or the person's actor name
    stopped_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    lifted_by: Mapped[str | None] = mapped_column(String(254), default=None)
    lifted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class JobLease(Base):
    """A periodic job's lease (the retention purge): the replica that takes it runs the job; others skip until then."""

    __tablename__ = "job_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(100))
    locked_until: Mapped[datetime] = mapped_column(UTCDateTime())


class ActionStatus(enum.StrEnum):
    """What became of one action the model called (service/actions/)."""

    OK = "ok"  # the team's API answered 2xx; its declared fields went to the model
    REJECTED = "rejected"  # a 4xx the model can explain (no such order); the model answers politely
    FAILED = "failed"  # timeout, 5xx, not JSON, too large, refused redirect, missing secret: a handoff
    INVALID_ARGUMENTS = "invalid_arguments"  # the model's arguments broke the schema; it is told why
    UNKNOWN_ACTION = "unknown_action"  # no such action file (or it was removed)
    SIGN_IN_REQUIRED = "sign_in_required"  # `identity: required` and the visitor is not verified
    AWAITING_CONFIRMATION = "awaiting_confirmation"  # `side_effects: true`: nothing called until Confirm
    CONFIRMED = "confirmed"  # the visitor pressed Confirm; the call itself is the row pointing here
    CANCELLED = "cancelled"  # the visitor pressed Cancel, or wrote something else instead
    OVER_LIMIT = "over_limit"  # past SUPPORTBOT_ACTIONS_MAX_CALLS in one turn: not called


class ActionCall(Base):
    """One action the model called in a turn: what it asked, what the team's API said, what the model got."""

    __tablename__ = "action_calls"
    __table_args__ = (Index("ix_action_calls_conversation_id_id", "conversation_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), index=True)  # the visitor's
    reply_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"), default=None,
                                                 index=True)  # the assistant reply the turn ended with
    round: Mapped[int] = mapped_column(Integer, default=0)  # which model call of the turn asked for it (0 first)
    call_id: Mapped[str] = mapped_column(String(100))  # the model's tool call id
    action: Mapped[str] = mapped_column(String(64), index=True)
    arguments: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)  # None: not a JSON object
    status: Mapped[str] = mapped_column(String(24))  # ActionStatus
    http_status: Mapped[int | None] = mapped_column(Integer, default=None)
    latency_ms: Mapped[int | None] = mapped_column(Integer, default=None)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)  # only the declared fields
    error: Mapped[str | None] = mapped_column(String(300), default=None)  # short, never a secret or a raw body
    tool_content: Mapped[str] = mapped_column(Text)  # exactly what the model was given as the tool result
    summary: Mapped[str | None] = mapped_column(String(500), default=None)  # what the visitor is asked to confirm
    # The confirmation a call answers (the call made after Confirm points at the awaiting one).
    confirms_id: Mapped[int | None] = mapped_column(ForeignKey("action_calls.id", ondelete="SET NULL"), default=None)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
