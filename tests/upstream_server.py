"""A mock OpenAI-compatible upstream on loopback, for tests that run the service as a real process."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .processes import free_port


def upstream_app(chunks: int = 10, interval: float = 0.02) -> Starlette:
    """Answers chat completions: JSON, or `chunks` SSE chunks `interval` seconds apart with usage last."""

    async def completions(request: Request) -> Response:
        body = await request.json()
        model = body.get("model", "gpt-4o-mini")
        usage = {"prompt_tokens": 200, "completion_tokens": chunks, "total_tokens": 200 + chunks}
        if not body.get("stream"):
            await asyncio.sleep(interval * chunks)
            return JSONResponse({"id": "x", "object": "chat.completion", "created": 1, "model": model,
                                 "choices": [{"index": 0, "message": {"role": "assistant",
                                                                      "content": "word " * chunks},
                                              "finish_reason": "stop"}], "usage": usage})

        async def events() -> AsyncIterator[bytes]:
            for n in range(chunks):
                await asyncio.sleep(interval)
                delta = {"content": f"word{n} "}
                yield ("data: " + json.dumps({"id": "x", "object": "chat.completion.chunk", "created": 1,
                                              "model": model, "choices": [{"index": 0, "delta": delta}]})
                       + "\n\n").encode()
            yield ("data: " + json.dumps({"id": "x", "object": "chat.completion.chunk", "created": 1,
                                          "model": model, "choices": [], "usage": usage}) + "\n\n").encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])


@contextmanager
def running_upstream(chunks: int = 10, interval: float = 0.02) -> Iterator[str]:
    """The mock upstream in a background thread; yields its base URL (…/v1)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(upstream_app(chunks, interval), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
