"""Any OpenAI-compatible chat completions endpoint, through the official client.

With finetuning/openai_jobs.py, the only modules that import `openai`; its errors become `ModelUnavailable` here.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from ..errors import ModelUnavailable
from ..telemetry import metrics
from .base import COMPLETIONS_PATH, ChatRequest, Completion, StreamBroken, TextDelta, ToolCall

log = logging.getLogger(__name__)

MALFORMED = "malformed"  # an answer that is not a chat completion
STREAM_BROKEN = "stream_broken"  # the stream failed after some text


class OpenAIProvider:
    """Any OpenAI-compatible chat completions endpoint, through the official client."""

    name = "openai"

    def __init__(self, *, api_key: str | None, base_url: str | None, timeout: float, max_retries: int,
                 http_client: httpx.AsyncClient | None = None, target: str = "primary") -> None:
        self.target = target  # primary or fallback, as supportbot_upstream_attempts_total counts requests
        # The client's own retry (honouring Retry-After) is the single retry layer; we add none.
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            # httpx's default pool keeps 20 connections; turns above that would reconnect every time.
            # Every request it sends, retries included, is counted (a given client is the caller's to count).
            http_client=http_client or httpx.AsyncClient(  # type: ignore[arg-type]
                timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
                limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100),
                event_hooks={"request": [self._count_attempt]}),
        )

    async def _count_attempt(self, _request: httpx.Request) -> None:
        metrics.record_upstream_attempt(self.target)

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
            metrics.record_upstream_error(error_kind(error))
            raise ModelUnavailable(_describe(error)) from error
        except ValueError as error:  # a body that is not JSON
            metrics.record_upstream_error(MALFORMED)
            raise ModelUnavailable(f"malformed response: {error}") from error
        if not response.choices:
            metrics.record_upstream_error(MALFORMED)
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
                metrics.record_upstream_error(STREAM_BROKEN)
                raise StreamBroken(described, state.completion()) from error
            metrics.record_upstream_error(error_kind(error))
            raise ModelUnavailable(described) from error
        if not state.saw_choice:
            metrics.record_upstream_error(MALFORMED)
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


def error_kind(error: Exception) -> str:
    """The `kind` label of supportbot_upstream_errors_total for a failed call."""
    if isinstance(error, openai.APITimeoutError):
        return "timeout"
    if isinstance(error, openai.APIConnectionError):
        return "connection"
    if isinstance(error, openai.RateLimitError):
        return "rate_limited"
    if isinstance(error, openai.APIStatusError):
        return "server_error" if error.status_code >= 500 else "client_error"
    return MALFORMED


def _describe(error: openai.OpenAIError) -> str:
    status = getattr(error, "status_code", None)
    kind = type(error).__name__
    return f"{kind} (HTTP {status})" if status else kind
