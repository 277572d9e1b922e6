"""OpenAI-protocol proxy: re-serializes every chunk, forwards whole bodies. Not the floor (bench/relay.py is).

POST /v1/chat/completions forwards the body as it came (system prompt, history, tools) through the
official openai client and returns the answer as the client's pydantic model dumped back to JSON, or
every chunk re-serialized with `model_dump_json` as Server-Sent Events. It does more per turn than a
chat service needs, so a ratio against it flatters supportbot; it stays as a second reference point
between the relay and LiteLLM's proxy. Run: `uvicorn bench.passthrough:app` with PASSTHROUGH_BASE_URL set.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import openai
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

# Same timeout and single retry layer as supportbot; the client's default connection pool.
client = openai.AsyncOpenAI(
    base_url=os.environ.get("PASSTHROUGH_BASE_URL", "http://127.0.0.1:9/v1"),
    api_key=os.environ.get("PASSTHROUGH_API_KEY", "sk-bench"),
    timeout=30.0,
    max_retries=1,
)
app = FastAPI(title="bench OpenAI-protocol proxy")


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    """Forward one chat completion, streaming or not."""
    body: dict[str, Any] = await request.json()
    if body.get("stream"):
        chunks = await client.chat.completions.create(**body)

        async def events() -> AsyncIterator[str]:
            async for chunk in chunks:
                yield f"data: {chunk.model_dump_json()}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    completion = await client.chat.completions.create(**body)
    return Response(completion.model_dump_json(), media_type="application/json")
