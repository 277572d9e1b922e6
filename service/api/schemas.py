"""Request and response bodies of the public API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


class ErrorDetail(BaseModel):
    code: str = Field(examples=["message_too_long"])
    message: str


class ErrorBody(BaseModel):
    """The one shape of every error response."""

    error: ErrorDetail


class ConversationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metadata: dict[str, Annotated[str, Field(max_length=2000)]] | None = Field(
        default=None, max_length=20,
        description="Page context the widget passes: url, title, locale, user_id and user_hash (HMAC-SHA256 of "
                    "user_id with SUPPORTBOT_IDENTITY_SECRET, for identity verification), ... "
                    "At most SUPPORTBOT_MAX_METADATA_BYTES (4096) bytes as JSON in all, else 413 metadata_too_large.",
    )


class ConversationCreated(BaseModel):
    conversation_id: str
    token: str = Field(description="Bearer token for this conversation only; keep it with the visitor.")


class MessageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: str = Field(min_length=1, pattern=r"\S", description="The visitor's message (not blank).")
    client_message_id: str | None = Field(
        default=None, min_length=1, max_length=100,
        description="Optional id chosen by the client; sending the same id again returns the first answer.",
    )


class SourcePublic(BaseModel):
    """A page the reply drew on (service/sources.py says which entries count)."""

    model_config = ConfigDict(from_attributes=True)

    title: str = Field(examples=["Export your data to CSV"])
    url: str | None = Field(description="An http(s) URL or a site-relative path; null for an entry without a "
                                        "`url:` field.", examples=["https://help.example.com/articles/csv-export"])


# Messages stored before replies cited sources, and every fixed text, hold NULL: shown as no sources.
Sources = Annotated[list[SourcePublic], BeforeValidator(lambda value: value or [])]
SOURCES_DESCRIPTION = "The knowledge entries the reply drew on, one per page, best first; empty for fixed texts."


class ReplyPublic(BaseModel):
    message_id: int
    content: str
    status: Literal["ok", "partial", "failed"]
    sources: Sources = Field(default_factory=list, description=SOURCES_DESCRIPTION)


class EscalationPublic(BaseModel):
    reason: str
    detail: str | None


class ActionBrief(BaseModel):
    """An action the model called in the turn (service/actions/): which, and what became of it."""

    name: str = Field(examples=["get_order_status"])
    status: str = Field(examples=["ok"], description="ok, rejected, failed, invalid_arguments, unknown_action, "
                        "sign_in_required, awaiting_confirmation, confirmed, cancelled or over_limit.")


class ConfirmationPublic(BaseModel):
    """An action with side effects waiting for the visitor: show `summary` with Confirm and Cancel, then POST
    the decision to /api/conversations/{id}/actions/{action_call_id}."""

    action_call_id: int
    action: str = Field(examples=["cancel_order"])
    summary: str = Field(examples=["Cancel order A-1042"])


class DecisionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["confirm", "cancel"] = Field(description="Confirm makes the call; Cancel tells the bot not to.")


class TurnPublic(BaseModel):
    message_id: int | None = Field(description="The stored user message (null for a handoff without a note).")
    reply: ReplyPublic
    escalated: bool
    escalation: EscalationPublic | None
    prompt_version: str | None = Field(examples=["support@v2"])
    language: str | None = Field(default=None, examples=["de"], description="The visitor's language as the "
                                 "service reads it (ISO 639-1); fixed texts in the reply are in it.")
    actions: list[ActionBrief] = Field(default_factory=list, description="The actions the model called, in order.")
    confirmation: ConfirmationPublic | None = Field(
        default=None, description="Set when the reply asks the visitor to confirm an action before it is made.")


class MessagePublic(BaseModel):
    id: int
    role: Literal["user", "assistant", "agent", "system"]
    content: str
    status: str
    created_at: datetime
    sources: Sources = Field(default_factory=list, description=SOURCES_DESCRIPTION + " Bot replies only.")
    author: str | None = Field(default=None, description="The person's name, on a human agent's reply.")
    confirmation: ConfirmationPublic | None = Field(
        default=None, description="On a bot reply whose action still waits for the visitor's Confirm or Cancel.")


class TranscriptPublic(BaseModel):
    conversation_id: str
    status: Literal["open", "escalated", "resolved"]
    created_at: datetime
    messages: list[MessagePublic]


class HandoffCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contact: str | None = Field(default=None, max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
                                description="E-mail address for follow-up.", examples=["jane@example.com"])
    note: str | None = Field(default=None, description="What the visitor wants the person to know.")


class FeedbackCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rating: Literal["up", "down"]
    comment: str | None = Field(default=None, max_length=2000)


class FeedbackPublic(BaseModel):
    message_id: int
    rating: Literal["up", "down"]
    comment: str | None
    escalated: bool = Field(description="True when this rating handed the conversation to a person.")
    escalation: EscalationPublic | None


class RatingCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    score: int = Field(ge=1, le=5, strict=True, description="Satisfaction with the conversation: 1 (bad) to 5 (great).")
    comment: str | None = Field(default=None, max_length=1000)


class CsatPublic(BaseModel):
    """The visitor's rating of the whole conversation (asked once)."""

    score: int = Field(ge=1, le=5)
    comment: str | None
    created_at: datetime


class RatingPublic(CsatPublic):
    conversation_id: str


class AgentMessageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: str = Field(min_length=1, pattern=r"\S")
    author: str | None = Field(default=None, max_length=100, examples=["Dana (support)"])
    corrects_message_id: int | None = Field(
        default=None, description="The bot reply this answer corrects; default: the latest bot reply."
    )


class AdminMessage(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    role: str
    content: str
    status: str
    created_at: datetime
    provider: str | None
    model_requested: str | None
    model_reported: str | None
    prompt_version: str | None
    prompt_sha256: str | None
    tokens_in: int | None
    tokens_out: int | None
    cost_usd: float | None
    latency_ms: int | None
    reply_to_id: int | None
    corrects_id: int | None
    author: str | None
    tool_calls: list[dict[str, object]] | None
    miss_reasons: str | None = Field(description="Why this bot reply counts as a miss, comma-separated")
    review: Literal["good", "flagged"] | None
    feedback: Literal["up", "down"] | None = None
    sources: Sources = Field(default_factory=list, description=SOURCES_DESCRIPTION)


ASSIGNEE_DESCRIPTION = "The e-mail of the person handling the conversation; null when nobody is."


class EscalationAdmin(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    conversation_id: str
    message_id: int | None
    reason: str
    detail: str | None
    summary: str | None
    contact: str | None
    created_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    assignee: str | None = Field(default=None, description=ASSIGNEE_DESCRIPTION)


class ConversationAdmin(BaseModel):
    id: str
    status: Literal["open", "escalated", "resolved"]
    created_at: datetime
    visitor: dict[str, object] | None
    messages: list[AdminMessage]
    escalations: list[EscalationAdmin]
    arm: str | None = Field(default=None, description="The experiment arm (`name@version`) the conversation "
                            "was assigned when it started; null when its label had no split.")
    visitor_online: bool = Field(default=False, description="The visitor's widget sent a heartbeat in the last 45 s.")
    assignee: str | None = Field(default=None, description=ASSIGNEE_DESCRIPTION)
    csat: CsatPublic | None = Field(default=None, description="The visitor's rating; null until they give one.")


class ResolvePublic(BaseModel):
    conversation_id: str
    status: Literal["open", "escalated", "resolved"]


class InboxItem(BaseModel):
    id: str
    status: Literal["open", "escalated", "resolved"]
    created_at: datetime
    updated_at: datetime
    prompt_version: str | None
    user_turns: int
    miss_count: int
    unreviewed_misses: int
    thumbs_down: int
    escalated_ever: bool
    exclude_from_training: bool
    preview: str
    language: str | None = Field(default=None, description="The visitor's language (ISO 639-1).")
    assignee: str | None = Field(default=None, description=ASSIGNEE_DESCRIPTION)


class InboxPage(BaseModel):
    items: list[InboxItem]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class MissItem(BaseModel):
    message_id: int
    conversation_id: str
    question: str | None
    reply: str
    reasons: list[str]
    review: Literal["good", "flagged"] | None
    corrected: bool
    prompt_version: str | None
    created_at: datetime


class MissPage(BaseModel):
    items: list[MissItem]
    next_cursor: str | None


class CorrectionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: str = Field(min_length=1, pattern=r"\S", description="The answer the bot should have given.")


class CorrectionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    message_id: int
    content: str
    author: str
    created_at: datetime


class VerdictCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verdict: Literal["good", "flagged", "clear"]


class ExcludeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    excluded: bool = True


class PromptVersionInfo(BaseModel):
    ref: str
    description: str
    labels: list[str]
    served: bool
    conversations: int
    turns: int
    miss_rate: float | None
    escalation_rate: float | None
    thumbs_down_rate: float | None


class PromptText(BaseModel):
    ref: str
    sha256: str
    estimated_tokens: int
    knowledge: str
    text: str


class PromptDiff(BaseModel):
    a: str
    b: str
    diff: str = Field(description="Unified diff of the assembled prompts.")


class AuditItem(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    actor: str
    action: str
    target: str | None
    details: dict[str, object] | None
    created_at: datetime


class PromoteCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, max_length=80, description="Default: the customer's question.")
    keywords: list[Annotated[str, Field(max_length=60)]] | None = Field(default=None, max_length=12)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for error statuses, all in the one error shape."""
    meaning = {400: "Body is not valid JSON", 401: "Missing or invalid credentials", 404: "Not found",
               409: "Conflict", 413: "Body or message too large", 422: "Invalid input",
               429: "Rate limited; see Retry-After", 503: "Not ready"}
    return {status: {"model": ErrorBody, "description": meaning[status]} for status in statuses}


class ActionCallAdmin(BaseModel):
    """One action the model called in the turn that ended with this message (service/actions/): what it asked,
    what the team's API answered (declared fields only) and what became of it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    action: str
    status: str = Field(description="ok, rejected, failed, invalid_arguments, unknown_action, sign_in_required, "
                                    "awaiting_confirmation, confirmed, cancelled or over_limit")
    arguments: dict[str, object] | None = Field(description="What the model supplied; null when not a JSON object.")
    http_status: int | None = Field(description="The team's API's status code; null when no request was made.")
    latency_ms: int | None
    result: dict[str, object] | None = Field(description="The response's declared fields, as the model got them.")
    error: str | None = Field(description="What went wrong, short (never the raw response).")
    summary: str | None = Field(description="What the visitor was asked to confirm (side-effect actions).")
    confirms_id: int | None = Field(description="The awaiting call this one was made for, after Confirm.")
    decided_at: datetime | None = Field(description="When the visitor confirmed or cancelled.")
    created_at: datetime


class TranscriptMessage(AdminMessage):
    actions: list[ActionCallAdmin] = Field(
        default_factory=list, description="The action calls of the turn this reply ended, in order.")


class ConversationTranscript(ConversationAdmin):
    """The admin conversation, each message with its turn's action calls."""

    messages: list[TranscriptMessage]  # type: ignore[assignment]
