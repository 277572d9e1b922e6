"""The floor: a minimal relay, the least a Python chat service does for a turn (issue 20).

FastAPI plus the official openai client's `chat.completions.create`: no prompt, no history, no
database, no tools. It speaks supportbot's visitor API so the load generator drives it exactly like
supportbot: POST /api/conversations answers an id and a token (neither is stored or checked), and
POST /api/conversations/{id}/messages takes `{"content": "..."}`, sends
`messages=[{"role": "user", "content": content}]` with supportbot's model and `max_tokens`, and answers
supportbot's JSON shape (`reply.content`) or, with `Accept: text/event-stream`, one `delta` event per
upstream text chunk and a `done` event. Nothing is re-serialized beyond what the client does itself.

`plain_app` is the same relay reading the answer's JSON as it is (the client's `post`, no typed models), as
supportbot's provider does: `python -m bench.inprocess` shows both.

Run: `uvicorn bench.relay:app` with RELAY_BASE_URL (and RELAY_MODEL, RELAY_MAX_TOKENS) set.
"""

from __future__ import annotations

import itertools
import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

import openai
from fastapi import FastAPI, Header
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel

MODEL = os.environ.get("RELAY_MODEL", "gpt-4o-mini")
# supportbot sends the prompt version's max_tokens (400 in prompts/support/*.md.j2), else SUPPORTBOT_MAX_TOKENS.
MAX_TOKENS = int(os.environ.get("RELAY_MAX_TOKENS", "400"))

# Built as bench/passthrough.py builds its client: supportbot's timeout and single retry, the client's pool.
client = openai.AsyncOpenAI(
    base_url=os.environ.get("RELAY_BASE_URL", "http://127.0.0.1:9/v1"),
    api_key=os.environ.get("RELAY_API_KEY", "sk-bench"),
    timeout=30.0,
    max_retries=1,
)
_ids = itertools.count(1)


class MessageIn(BaseModel):
    """The body supportbot's message endpoint takes (the relay needs only the text)."""

    content: str


# How the relay asks: `create` and the client's typed answer (the floor of issue 20), or the client's `post` with
# the answer's JSON read as it is (`plain_app`, what supportbot's provider does since bench/findings.md 0f).

async def _typed_answer(messages: Any) -> str:
    completion = await client.chat.completions.create(model=MODEL, messages=messages, max_tokens=MAX_TOKENS)
    return (completion.choices[0].message.content or "") if completion.choices else ""


async def _typed_texts(messages: Any) -> AsyncIterator[str]:
    chunks = await client.chat.completions.create(model=MODEL, messages=messages, max_tokens=MAX_TOKENS,
                                                  stream=True)

    async def texts() -> AsyncIterator[str]:
        async for chunk in chunks:
            text = chunk.choices[0].delta.content if chunk.choices else None
            if text:
                yield text
    return texts()


async def _plain_answer(messages: Any) -> str:
    body: Any = await client.post("/chat/completions", cast_to=object,
                                  body={"model": MODEL, "messages": messages, "max_tokens": MAX_TOKENS})
    choices = body.get("choices")
    return (choices[0]["message"].get("content") or "") if choices else ""


async def _plain_texts(messages: Any) -> AsyncIterator[str]:
    chunks: Any = await client.post("/chat/completions", cast_to=object, stream=True,
                                    stream_cls=openai.AsyncStream[object],
                                    body={"model": MODEL, "messages": messages, "max_tokens": MAX_TOKENS,
                                          "stream": True})

    async def texts() -> AsyncIterator[str]:
        async for chunk in chunks:
            choices = chunk.get("choices")
            text = choices[0]["delta"].get("content") if choices else None
            if text:
                yield text
    return texts()


def _relay(title: str, answer: Callable[[Any], Awaitable[str]],
           texts: Callable[[Any], Awaitable[AsyncIterator[str]]]) -> FastAPI:
    relay = FastAPI(title=title)

    @relay.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @relay.post("/api/conversations", status_code=201)
    async def create_conversation() -> dict[str, str]:
        """An id and a token in supportbot's shape, so the load generator starts conversations as it does there."""
        return {"conversation_id": uuid.uuid4().hex, "token": "relay"}

    @relay.post("/api/conversations/{conversation_id}/messages")
    async def send_message(conversation_id: str, body: MessageIn,
                           accept: Annotated[str | None, Header()] = None) -> Response:
        """One user message to the model and its answer: JSON, or Server-Sent Events when asked for."""
        messages: Any = [{"role": "user", "content": body.content}]
        if accept and "text/event-stream" in accept:
            try:
                streamed = await texts(messages)
            except openai.OpenAIError as error:
                return _upstream_failed(error)
            return StreamingResponse(_events(streamed), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        try:
            text = await answer(messages)
        except openai.OpenAIError as error:
            return _upstream_failed(error)
        return Response(json.dumps(_turn(text)), media_type="application/json")

    return relay


app = _relay("bench relay", _typed_answer, _typed_texts)
plain_app = _relay("bench relay, plain JSON", _plain_answer, _plain_texts)


async def _events(texts: AsyncIterator[str]) -> AsyncIterator[str]:
    parts = []
    try:
        async for text in texts:
            parts.append(text)
            yield _event("delta", {"text": text})
    except openai.OpenAIError as error:
        yield _event("error", {"error": {"code": "model_unavailable", "message": type(error).__name__}})
        return
    yield _event("done", _turn("".join(parts)))


def _turn(text: str) -> dict[str, Any]:
    """supportbot's turn shape (service/api/chat.py `turn_public`), with nothing stored behind the ids."""
    return {"message_id": next(_ids), "reply": {"message_id": next(_ids), "content": text, "status": "ok",
                                                "sources": []},
            "escalated": False, "escalation": None, "prompt_version": None, "language": None, "actions": [],
            "confirmation": None}


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


def _upstream_failed(error: openai.OpenAIError) -> Response:
    body = {"error": {"code": "model_unavailable", "message": type(error).__name__}}
    return Response(json.dumps(body), status_code=502, media_type="application/json")
