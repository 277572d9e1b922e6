"""A mock OpenAI-compatible upstream: POST /v1/chat/completions as JSON or Server-Sent Events.

A bare ASGI app (no framework, so it costs as little as possible), served by uvicorn with several
workers. Timing comes from the environment, and a request may override it with headers (the capacity
check asks for zero latency):

    MOCK_LATENCY_MS   JSON answer delay                    x-mock-latency-ms
    MOCK_TTFT_MS      delay before the first streamed chunk x-mock-ttft-ms
    MOCK_CHUNKS       content chunks per streamed answer    x-mock-chunks
    MOCK_INTERVAL_MS  delay between streamed chunks         x-mock-interval-ms

Chunks are sent on an absolute schedule (first at TTFT, then every interval), so the upstream's own
gaps do not drift; usage is reported in the last chunk, as OpenAI does with `include_usage`.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

REPLY = (
    "**Slow dashboard loads**\n\nLarge dashboards with many charts can take a while on the first load. "
    "Open the dashboard, choose Settings, then Performance, and turn on cached results so charts reuse the "
    "last query for up to fifteen minutes. Splitting a very large dashboard into two smaller ones also "
    "helps, and filters applied at the dashboard level are faster than filters on each chart."
)
_DEFAULTS = {"latency": 50.0, "ttft": 100.0, "chunks": 20, "interval": 25.0}


def _setting(name: str, default: float) -> float:
    return float(os.environ.get(f"MOCK_{name.upper()}_MS" if name != "chunks" else "MOCK_CHUNKS", default))


SETTINGS = {name: _setting(name, default) for name, default in _DEFAULTS.items()}


def _pieces(text: str, count: int) -> list[str]:
    words = text.split(" ")
    size = max(1, -(-len(words) // count))
    parts = [" ".join(words[i:i + size]) for i in range(0, len(words), size)]
    return [part + (" " if n < len(parts) - 1 else "") for n, part in enumerate(parts)]


def _completion(model: str, prompt_tokens: int) -> bytes:
    return json.dumps({
        "id": "chatcmpl-bench", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(REPLY) // 4,
                  "total_tokens": prompt_tokens + len(REPLY) // 4},
    }).encode()


def _chunk(model: str, delta: dict[str, Any], finish: str | None, usage: dict[str, int] | None = None) -> bytes:
    choices = [] if usage is not None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    body = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model, "choices": choices, "usage": usage}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


async def _read_body(receive: Any) -> bytes:
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


def _overrides(scope: dict[str, Any]) -> dict[str, float]:
    values = dict(SETTINGS)
    for key, value in scope["headers"]:
        if key.startswith(b"x-mock-"):
            name = key[7:].decode().removesuffix("-ms")
            if name in values:
                values[name] = float(value)
    return values


async def _respond_json(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _stream(send: Any, model: str, prompt_tokens: int, timing: dict[str, float]) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})
    began = time.perf_counter()
    pieces = _pieces(REPLY, int(timing["chunks"]))
    for n, piece in enumerate(pieces):
        due = began + (timing["ttft"] + n * timing["interval"]) / 1000
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        delta = {"role": "assistant", "content": piece} if n == 0 else {"content": piece}
        last = n == len(pieces) - 1
        body = _chunk(model, delta, "stop" if last else None)
        if last:
            usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(REPLY) // 4,
                     "total_tokens": prompt_tokens + len(REPLY) // 4}
            body += _chunk(model, {}, None, usage) + b"data: [DONE]\n\n"
        await send({"type": "http.response.body", "body": body, "more_body": not last})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI entry point."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if scope["method"] == "GET":
        await _respond_json(send, 200, b'{"status": "ok", "pid": %d}' % os.getpid())
        return
    if not path.endswith("/chat/completions"):
        await _respond_json(send, 404, b'{"error": {"message": "not found"}}')
        return
    raw = await _read_body(receive)
    request = json.loads(raw)
    model = request.get("model", "gpt-4o-mini")
    timing = _overrides(scope)
    prompt_tokens = len(raw) // 4
    if request.get("stream"):
        await _stream(send, model, prompt_tokens, timing)
        return
    if timing["latency"] > 0:
        await asyncio.sleep(timing["latency"] / 1000)
    await _respond_json(send, 200, _completion(model, prompt_tokens))
