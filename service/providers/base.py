"""What every model provider speaks: the request, the answer, streamed text, and the escalation tool."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import ModelUnavailable

COMPLETIONS_PATH = "/chat/completions"
ESCALATE_TOOL_NAME = "escalate_to_human"
ESCALATE_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": ESCALATE_TOOL_NAME,
        "description": (
            "Hand the conversation over to a human support agent. Use it when the customer asks for a "
            "person, for refunds, legal, security or privacy matters, or when you cannot solve the problem."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "reason": {"type": "string", "description": "Why a human is needed, in a few words."},
                "summary": {"type": "string", "description": "What the customer needs, for the agent."},
            },
            "required": ["reason", "summary"],
        },
    },
}


@dataclass(frozen=True)
class ChatRequest:
    """What a provider is asked: OpenAI-format messages (system first) and sampling settings."""

    model: str
    messages: list[dict[str, Any]]
    max_tokens: int
    temperature: float | None = None
    tools: list[dict[str, Any]] = field(default_factory=lambda: [ESCALATE_TOOL])
    language: str | None = None  # the visitor's (ISO 639-1), for the offline provider's own texts


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str

    def parsed_arguments(self) -> dict[str, Any]:
        """The arguments as a dict; raises ValueError when the model sent invalid JSON."""
        value = json.loads(self.arguments or "{}")
        if not isinstance(value, dict):
            raise ValueError("tool arguments are not a JSON object")
        return value

    def as_openai(self) -> dict[str, Any]:
        """The call in OpenAI's `tool_calls` message format."""
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True)
class Completion:
    """A finished answer with what the provider reported about it."""

    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    model_reported: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    finish_reason: str | None = None
    no_answer: bool = False
    matched_issue: str | None = None
    wrong_language: bool = False  # no answer because the question is not in the knowledge's language


@dataclass(frozen=True)
class TextDelta:
    """A piece of streamed text."""

    text: str


class StreamBroken(ModelUnavailable):
    """The upstream stream failed after some text was already produced."""

    def __init__(self, message: str, partial: Completion) -> None:
        super().__init__(message)
        self.partial = partial


class Provider(Protocol):
    name: str

    async def complete(self, request: ChatRequest) -> Completion: ...

    def stream(self, request: ChatRequest) -> AsyncIterator[TextDelta | Completion]: ...
