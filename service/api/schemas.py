"""Request and response bodies of the public API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ErrorDetail(BaseModel):
    code: str = Field(examples=["message_too_long"])
    message: str


class ErrorBody(BaseModel):
    """The one shape of every error response."""

    error: ErrorDetail


class ConversationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metadata: dict[str, str] | None = Field(
        default=None, max_length=20, description="Page context the widget passes: url, locale, user_id, ..."
    )


class ConversationCreated(BaseModel):
    conversation_id: str
    token: str = Field(description="Bearer token for this conversation only; keep it with the visitor.")


class MessageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: str = Field(description="The visitor's message.")
    client_message_id: str | None = Field(
        default=None, min_length=1, max_length=100,
        description="Optional id chosen by the client; sending the same id again returns the first answer.",
    )


class ReplyPublic(BaseModel):
    message_id: int
    content: str
    status: Literal["ok", "partial", "failed"]


class EscalationPublic(BaseModel):
    reason: str
    detail: str | None


class TurnPublic(BaseModel):
    message_id: int
    reply: ReplyPublic
    escalated: bool
    escalation: EscalationPublic | None
    prompt_version: str | None = Field(examples=["support@v2"])


class MessagePublic(BaseModel):
    id: int
    role: Literal["user", "assistant", "agent", "system"]
    content: str
    status: str
    created_at: datetime


class TranscriptPublic(BaseModel):
    conversation_id: str
    status: Literal["open", "escalated", "resolved"]
    created_at: datetime
    messages: list[MessagePublic]
