"""Any OpenAI-compatible chat completions endpoint, through the official client.

With finetuning/openai_jobs.py, the only modules that import `openai`; its errors become `ModelUnavailable` here.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx2
import openai

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
                 target: str = "primary") -> None:
        self.target = target  # primary or fallback, as supportbot_upstream_attempts_total counts requests
        # The client's own retry (honouring Retry-After) is the single retry layer; we add none.
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            # httpx2, the openai client's own: its pool's cost per request does not grow with the connections
            # open (httpx's did, bench/findings.md 0h). Its default pool keeps 20 connections; turns above that
            # would reconnect every time. Every request it sends, retries included, is counted.
            http_client=httpx2.AsyncClient(
                timeout=httpx2.Timeout(timeout, connect=min(timeout, 10.0)),
                limits=httpx2.Limits(max_connections=1000, max_keepalive_connections=100),
                event_hooks={"request": [self._count_attempt]}),
        )

    async def _count_attempt(self, _request: httpx2.Request) -> None:
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
            # `cast_to=object`: the client's parsed JSON as it is, read below, rather than its typed models, whose
            # construction cost more CPU per call than the rest of the answer's handling (bench/findings.md, 0f).
            data = await self._client.post(COMPLETIONS_PATH, body=self._arguments(request, stream=False),
                                           cast_to=object)
            body = _object(data, "the response")
            choices = _list(body.get("choices"), "choices")
            if not choices:
                metrics.record_upstream_error(MALFORMED)
                raise ModelUnavailable("upstream answered with no choices")
            return _completion(body, _object(choices[0], "a choice"))
        except openai.OpenAIError as error:
            metrics.record_upstream_error(error_kind(error))
            raise ModelUnavailable(_describe(error)) from error
        except ValueError as error:  # a body that is not JSON, or not a chat completion
            metrics.record_upstream_error(MALFORMED)
            raise ModelUnavailable(f"malformed response: {error}") from error

    async def stream(self, request: ChatRequest) -> AsyncIterator[TextDelta | Completion]:
        """A streaming call: text deltas as they arrive, then the assembled Completion."""
        state = _StreamState()
        try:
            # Each chunk as the client parsed it (plain JSON), not a typed model per chunk (as in `complete`).
            chunks = await self._client.post(COMPLETIONS_PATH, body=self._arguments(request, stream=True),
                                             cast_to=object, stream=True, stream_cls=openai.AsyncStream[object])
            async for chunk in chunks:
                text = state.absorb(_object(chunk, "a chunk"))
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


# The answer's JSON, read as the chat completions API documents it; a field of the wrong type is a malformed
# answer (ValueError), a missing optional one is absent.

def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{what} is not a JSON object")
    return value


def _list(value: object, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{what} is not a JSON array")
    return value


def _str(value: object, what: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{what} is not a string")
    return value


def _int(value: object, what: str) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise ValueError(f"{what} is not an integer")
    return value


def _usage(body: dict[str, Any]) -> tuple[int | None, int | None]:
    usage = body.get("usage")
    if usage is None:
        return None, None
    usage = _object(usage, "usage")
    return _int(usage.get("prompt_tokens"), "prompt_tokens"), _int(usage.get("completion_tokens"), "completion_tokens")


def _completion(body: dict[str, Any], choice: dict[str, Any]) -> Completion:
    message = _object(choice.get("message"), "the message")
    calls = []
    for call in _list(message.get("tool_calls"), "tool_calls"):
        call = _object(call, "a tool call")
        function = call.get("function")
        if function is None:  # a tool call of another kind than a function: not ours
            continue
        function = _object(function, "a tool call's function")
        calls.append(ToolCall(id=_str(call.get("id"), "a tool call's id") or "",
                              name=_str(function.get("name"), "a function's name") or "",
                              arguments=_str(function.get("arguments"), "a function's arguments") or ""))
    tokens_in, tokens_out = _usage(body)
    return Completion(
        text=_str(message.get("content"), "the content") or "",
        tool_calls=tuple(calls),
        model_reported=_str(body.get("model"), "the model"),
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        finish_reason=_str(choice.get("finish_reason"), "finish_reason"),
    )


@dataclass
class _StreamState:
    text_parts: list[str] = field(default_factory=list)
    calls: dict[int, dict[str, str]] = field(default_factory=dict)
    model: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    finish_reason: str | None = None
    saw_choice: bool = False

    def absorb(self, chunk: dict[str, Any]) -> str:
        """Fold one chunk into the state; return its text."""
        self.model = _str(chunk.get("model"), "the model") or self.model
        if chunk.get("usage") is not None:
            self.tokens_in, self.tokens_out = _usage(chunk)
        choices = _list(chunk.get("choices"), "choices")
        if not choices:
            return ""
        self.saw_choice = True
        choice = _object(choices[0], "a choice")
        self.finish_reason = _str(choice.get("finish_reason"), "finish_reason") or self.finish_reason
        delta = _object(choice.get("delta") or {}, "a delta")
        for call in _list(delta.get("tool_calls"), "tool_calls"):
            call = _object(call, "a tool call")
            index = _int(call.get("index"), "a tool call's index") or 0
            slot = self.calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
            slot["id"] = _str(call.get("id"), "a tool call's id") or slot["id"]
            function = call.get("function")
            if function is not None:
                function = _object(function, "a tool call's function")
                slot["name"] += _str(function.get("name"), "a function's name") or ""
                slot["arguments"] += _str(function.get("arguments"), "a function's arguments") or ""
        content = _str(delta.get("content"), "the content")
        if content:
            self.text_parts.append(content)
            return content
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
