"""Responses of an OpenAI-compatible upstream, for respx: JSON completions and SSE streams."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx


def completion(content: str | None = "Hello from the model.", *, model: str = "gpt-4o-mini-2024-07-18",
               tool_calls: list[dict[str, Any]] | None = None, prompt_tokens: int = 120,
               completion_tokens: int = 12) -> httpx.Response:
    """A non-streaming chat completion."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return httpx.Response(200, json={
        "id": "chatcmpl-test", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "message": message,
                     "finish_reason": "tool_calls" if tool_calls else "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    })


def escalate_call(reason: str = "refund", summary: str = "Customer wants a refund.",
                  arguments: str | None = None) -> dict[str, Any]:
    """An `escalate_to_human` tool call as the model sends it."""
    return {"id": "call_1", "type": "function", "function": {
        "name": "escalate_to_human",
        "arguments": arguments if arguments is not None else json.dumps({"reason": reason, "summary": summary}),
    }}


def chunk(delta: dict[str, Any] | None = None, *, model: str = "gpt-4o-mini-2024-07-18",
          finish_reason: str | None = None, usage: dict[str, int] | None = None) -> bytes:
    """One SSE `data:` line of a streamed completion."""
    body: dict[str, Any] = {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 1, "model": model,
                            "choices": [] if delta is None else
                            [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}
    if usage is not None:
        body["usage"] = usage
    return f"data: {json.dumps(body)}\n\n".encode()


def text_chunks(pieces: Sequence[str], *, prompt_tokens: int = 150, completion_tokens: int = 9) -> list[bytes]:
    """A whole streamed answer: role, text pieces, finish, usage chunk, [DONE]."""
    chunks = [chunk({"role": "assistant", "content": ""})]
    chunks += [chunk({"content": piece}) for piece in pieces]
    chunks.append(chunk({}, finish_reason="stop"))
    chunks.append(chunk(None, usage={"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                     "total_tokens": prompt_tokens + completion_tokens}))
    chunks.append(b"data: [DONE]\n\n")
    return chunks


class ChunkStream(httpx.AsyncByteStream):
    """An SSE body that yields `chunks`, optionally pausing, then breaks with `fail` if given."""

    def __init__(self, chunks: Sequence[bytes], *, delay: float = 0.0, fail: Exception | None = None) -> None:
        self.chunks = list(chunks)
        self.delay = delay
        self.fail = fail

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self.chunks:
            if self.delay:
                await asyncio.sleep(self.delay)
            yield piece
        if self.fail is not None:
            raise self.fail


def stream(chunks: Sequence[bytes], **kwargs: Any) -> httpx.Response:
    """A streaming response with an SSE content type."""
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=ChunkStream(chunks, **kwargs))


def tool_call(name: str, arguments: dict[str, Any] | str, call_id: str = "call_1") -> dict[str, Any]:
    """A function tool call as the model sends it (arguments as the model's JSON text)."""
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": text}}


def tool_call_chunks(calls: Sequence[dict[str, Any]], text: str = "") -> list[bytes]:
    """A streamed answer that (after optional text) calls tools, the arguments split over two chunks each."""
    chunks = [chunk({"role": "assistant", "content": ""})]
    if text:
        chunks.append(chunk({"content": text}))
    for index, call in enumerate(calls):
        arguments = call["function"]["arguments"]
        half = len(arguments) // 2
        chunks.append(chunk({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                             "function": {"name": call["function"]["name"],
                                                          "arguments": arguments[:half]}}]}))
        chunks.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": arguments[half:]}}]}))
    chunks.append(chunk({}, finish_reason="tool_calls"))
    chunks.append(chunk(None, usage={"prompt_tokens": 200, "completion_tokens": 20, "total_tokens": 220}))
    chunks.append(b"data: [DONE]\n\n")
    return chunks
