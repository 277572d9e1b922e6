"""A mock OpenAI-compatible upstream on loopback, for tests that run the service as a real process."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Literal

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp


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
def serving(app: ASGIApp, lifespan: Literal["auto", "on", "off"] = "auto") -> Iterator[str]:
    """Run `app` with uvicorn in a thread on a free port; yield its base URL, or fail if it does not start."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan=lifespan))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def running_upstream(chunks: int = 10, interval: float = 0.02) -> Iterator[str]:
    """The mock upstream in a background thread; yields its base URL (…/v1)."""
    with serving(upstream_app(chunks, interval), lifespan="off") as base:
        yield f"{base}/v1"
