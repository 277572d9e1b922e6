"""Model providers: the hosted OpenAI-compatible model, and the offline one that answers from knowledge.

The only module that imports `openai`; its errors become `ModelUnavailable` here.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import openai
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from .config import Settings
from .errors import ModelUnavailable
from .fixed_texts import BUILT_IN
from .prompts import estimate_tokens
from .retrieval import Search

log = logging.getLogger(__name__)

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


class OpenAIProvider:
    """Any OpenAI-compatible chat completions endpoint, through the official client."""

    name = "openai"

    def __init__(self, settings: Settings, http_client: httpx.AsyncClient | None = None, *,
                 api_key: str | None = None, base_url: str | None = None, max_retries: int | None = None) -> None:
        timeout = httpx.Timeout(settings.openai_timeout, connect=min(settings.openai_timeout, 10.0))
        # The client's own retry (honouring Retry-After) is the single retry layer; we add none.
        self._client = openai.AsyncOpenAI(
            api_key=api_key or settings.openai_api_key,
            base_url=base_url or settings.openai_base_url,
            timeout=settings.openai_timeout,
            max_retries=settings.openai_max_retries if max_retries is None else max_retries,
            # httpx's default pool keeps 20 connections; turns above that would reconnect every time.
            http_client=http_client or httpx.AsyncClient(  # type: ignore[arg-type]
                timeout=timeout, limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100)),
        )

    async def aclose(self) -> None:
        await self._client.close()

    def _arguments(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        """The request body, built from plain JSON types.

        It goes out through the client's documented `post` (same auth, retries, timeouts and typed
        response) rather than `chat.completions.create`, whose per-call `_transform` of the parameters
        (aliases, dates, files: none of which a chat body here has) cost more CPU than the rest of
        the client call (bench/findings.md). tests/test_llm_body.py checks that `create` would send
        the same JSON.
        """
        arguments: dict[str, Any] = {
            "model": request.model,
            "messages": request.messages,
            "max_tokens": request.max_tokens,
        }
        if request.temperature is not None:
            arguments["temperature"] = request.temperature
        if request.tools:
            arguments["tools"] = request.tools
        if stream:
            arguments["stream"] = True
            arguments["stream_options"] = {"include_usage": True}
        return arguments

    async def complete(self, request: ChatRequest) -> Completion:
        """One non-streaming call."""
        try:
            response = await self._client.post(
                COMPLETIONS_PATH, body=self._arguments(request, stream=False), cast_to=ChatCompletion)
        except openai.OpenAIError as error:
            raise ModelUnavailable(_describe(error)) from error
        except ValueError as error:  # a body that is not JSON
            raise ModelUnavailable(f"malformed response: {error}") from error
        if not response.choices:
            raise ModelUnavailable("upstream answered with no choices")
        choice = response.choices[0]
        calls = tuple(
            ToolCall(id=c.id, name=function.name, arguments=function.arguments or "")
            for c in (choice.message.tool_calls or [])
            if (function := getattr(c, "function", None)) is not None
        )
        usage = response.usage
        return Completion(
            text=choice.message.content or "",
            tool_calls=calls,
            model_reported=response.model,
            tokens_in=usage.prompt_tokens if usage else None,
            tokens_out=usage.completion_tokens if usage else None,
            finish_reason=choice.finish_reason,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[TextDelta | Completion]:
        """A streaming call: text deltas as they arrive, then the assembled Completion."""
        state = _StreamState()
        try:
            chunks = await self._client.post(COMPLETIONS_PATH, body=self._arguments(request, stream=True),
                                             cast_to=ChatCompletion, stream=True,
                                             stream_cls=openai.AsyncStream[ChatCompletionChunk])
            async for chunk in chunks:
                text = state.absorb(chunk)
                if text:
                    yield TextDelta(text)
        except (openai.OpenAIError, ValueError) as error:
            described = _describe(error) if isinstance(error, openai.OpenAIError) else f"malformed stream: {error}"
            if state.text_parts:
                raise StreamBroken(described, state.completion()) from error
            raise ModelUnavailable(described) from error
        if not state.saw_choice:
            raise ModelUnavailable("upstream stream had no choices")
        yield state.completion()


@dataclass
class _StreamState:
    text_parts: list[str] = field(default_factory=list)
    calls: dict[int, dict[str, str]] = field(default_factory=dict)
    model: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    finish_reason: str | None = None
    saw_choice: bool = False

    def absorb(self, chunk: Any) -> str:
        """Fold one chunk into the state; return its text."""
        self.model = chunk.model or self.model
        if chunk.usage is not None:
            self.tokens_in = chunk.usage.prompt_tokens
            self.tokens_out = chunk.usage.completion_tokens
        if not chunk.choices:
            return ""
        self.saw_choice = True
        choice = chunk.choices[0]
        self.finish_reason = choice.finish_reason or self.finish_reason
        delta = choice.delta
        for call in delta.tool_calls or []:
            slot = self.calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
            slot["id"] = call.id or slot["id"]
            if call.function is not None:
                slot["name"] += call.function.name or ""
                slot["arguments"] += call.function.arguments or ""
        if delta.content:
            self.text_parts.append(delta.content)
            return str(delta.content)
        return ""

    def completion(self) -> Completion:
        return Completion(
            text="".join(self.text_parts),
            tool_calls=tuple(ToolCall(c["id"], c["name"], c["arguments"]) for _, c in sorted(self.calls.items())),
            model_reported=self.model,
            tokens_in=self.tokens_in,
            tokens_out=self.tokens_out,
            finish_reason=self.finish_reason,
        )


def _describe(error: openai.OpenAIError) -> str:
    status = getattr(error, "status_code", None)
    kind = type(error).__name__
    return f"{kind} (HTTP {status})" if status else kind


_GREETING = re.compile(r"^\s*(hi|hello|hey|hallo|good (morning|afternoon|evening)|howdy)\b[\s!.,]*\w*[\s!.]*$", re.I)
_THANKS = re.compile(r"\b(thanks|thank you|thx|cheers|that (worked|fixed it|helped)|works now|all good)\b", re.I)


def _english_text(key: str, _language: str | None) -> str:
    return BUILT_IN[key]


CROSS_LANGUAGE_MIN_SCORE = 0.4  # the match a question in another language than the knowledge's needs


class OfflineProvider:
    """Answers from the knowledge base alone: the best-matching known issue, or a handover."""

    name = "offline"
    model = "offline"

    def __init__(self, search: Search, min_score: float, knowledge_language: str = "en",
                 texts: Callable[[str, str | None], str] | None = None) -> None:
        self._search = search
        self._min_score = min_score
        self._knowledge_language = knowledge_language
        self._texts = texts or _english_text

    async def answer(self, request: ChatRequest) -> Completion:
        """The reply for the last user message of `request`, in the visitor's language when it hands over."""
        question = next((m["content"] for m in reversed(request.messages) if m["role"] == "user"), "")
        other_language = request.language is not None and request.language != self._knowledge_language
        # Across languages a match must be stronger: the packaged embeddings do not bridge languages, so
        # what matches is shared words ("API 401"), and weak matches were wrong entries (README, languages).
        min_score = max(self._min_score, CROSS_LANGUAGE_MIN_SCORE) if other_language else self._min_score
        text, matched, no_answer = await self._reply_for(str(question), min_score)
        if no_answer:
            text = self._texts("wrong_language" if other_language else "no_answer", request.language)
        prompt_chars = sum(len(str(m.get("content") or "")) for m in request.messages)
        return Completion(
            text=text,
            model_reported=self.model,
            tokens_in=estimate_tokens("x" * prompt_chars),
            tokens_out=estimate_tokens(text),
            finish_reason="stop",
            no_answer=no_answer,
            matched_issue=matched,
            wrong_language=no_answer and other_language,
        )

    async def _reply_for(self, question: str, min_score: float) -> tuple[str, str | None, bool]:
        if _GREETING.match(question):
            return "Hello! What can I help you with today?", None, False
        if _THANKS.search(question) and len(question) < 80:
            return "Glad that helped! Is there anything else I can do for you?", None, False
        hits = await self._search(question, 1)
        if hits and hits[0][1] >= min_score:
            issue = hits[0][0]
            return f"**{issue.title}**\n\n{issue.solution}", issue.id, False
        # A question in another language than the knowledge's is answered only when retrieval matches it
        # (semantic retrieval may, across languages); otherwise the caller says why it hands over.
        return "", None, True

    async def complete(self, request: ChatRequest) -> Completion:
        return await self.answer(request)

    async def stream(self, request: ChatRequest) -> AsyncIterator[TextDelta | Completion]:
        completion = await self.answer(request)
        for piece in re.findall(r"(?:\S+\s*){1,3}", completion.text):
            yield TextDelta(piece)
        yield completion
