"""Upstream faults, the circuit breaker, the fallback model and the budgets, against the mocked model."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest
import respx
from sqlalchemy import select

from service.api import create_app
from service.models import Escalation, Message
from service.runtime import Runtime

from . import fake_model
from .conftest import MODEL_BASE_URL, make_settings
from .factories import parse_sse, send, start_conversation

BUDGET = 3.0


def _runtime(tmp_path: Path, url: str, **overrides: object) -> Runtime:
    runtime = Runtime.build(make_settings(tmp_path, url, openai_api_key="sk-test-key",
                                          openai_base_url=MODEL_BASE_URL, turn_timeout=BUDGET, **overrides))
    runtime.detection.warm()  # as start-up does: the first turn of the process must not load the language models
    return runtime


async def _slow(_request: httpx.Request) -> httpx.Response:
    await asyncio.sleep(BUDGET * 3)
    return fake_model.completion("too late")


def _malformed(_request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "application/json"}, content=b"{not json")


def _empty_choices(request: httpx.Request) -> httpx.Response:
    if json.loads(request.content).get("stream"):
        return fake_model.stream([fake_model.chunk(None, usage={"prompt_tokens": 1, "completion_tokens": 0,
                                                                "total_tokens": 1}), b"data: [DONE]\n\n"])
    return httpx.Response(200, json={"id": "x", "object": "chat.completion", "created": 1, "model": "m",
                                     "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 0,
                                                              "total_tokens": 1}})


def _broken_stream(request: httpx.Request) -> httpx.Response:
    if not json.loads(request.content).get("stream"):
        return httpx.Response(500, json={"error": {"message": "boom"}})
    words = [f"part{n} " for n in range(40)]
    return fake_model.stream(fake_model.text_chunks(words)[:25], fail=httpx.ReadError("reset"))


FAULTS = {
    "connection_refused": httpx.ConnectError("connection refused"),
    "read_timeout": httpx.ReadTimeout("read timed out"),
    "rate_limited_429": httpx.Response(429, headers={"retry-after": "1"}, json={"error": {"message": "slow down"}}),
    "server_error_500": httpx.Response(500, json={"error": {"message": "boom"}}),
    "unavailable_503": httpx.Response(503, text="unavailable"),
    "malformed_json": _malformed,
    "empty_choices": _empty_choices,
    "slow_beyond_budget": _slow,
    "stream_breaks_half_way": _broken_stream,
}


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("fault", list(FAULTS))
async def test_fault_matrix(tmp_path: Path, sqlite_url: str, fault: str, stream: bool,
                            reliability: list[dict[str, object]]) -> None:
    runtime = _runtime(tmp_path, sqlite_url)
    effect = FAULTS[fault]
    with respx.mock(base_url=MODEL_BASE_URL, assert_all_called=False) as mock:
        route = mock.post("/chat/completions")
        route.side_effect = effect if callable(effect) or isinstance(effect, Exception) else (lambda _r: effect)
        transport = httpx.ASGITransport(app=create_app(runtime=runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=30) as client:
            conversation_id, auth = await start_conversation(client)
            began = time.monotonic()
            response = await client.post(f"/api/conversations/{conversation_id}/messages",
                                         headers={**auth, **({"Accept": "text/event-stream"} if stream else {})},
                                         json={"content": "Tell me about the export size limit"})
            elapsed = time.monotonic() - began
    body = parse_sse(response.text)[-1][1] if stream else response.json()

    assert response.status_code == 200
    assert elapsed < BUDGET + 2.0, "the turn ends within its time budget"
    assert route.call_count <= 2, "one retry layer: at most two upstream attempts"
    assert body["escalated"] is True and body["escalation"]["reason"] == "model_unavailable"  # type: ignore[index]
    reply = body["reply"]  # type: ignore[index]
    partial = fault == "stream_breaks_half_way" and stream
    assert reply["status"] == ("partial" if partial else "failed")
    expected = runtime.settings.model_unavailable_reply
    assert reply["content"].startswith("part0") if partial else reply["content"] == expected
    with runtime.log.sessions() as session:
        user = session.scalars(select(Message).where(Message.role == "user")).one()
        assert user.content == "Tell me about the export size limit"
        assert session.scalars(select(Escalation)).one().reason == "model_unavailable"
    reliability.append({"section": "faults", "item": f"{fault} ({'SSE' if stream else 'JSON'})",
                        "result": f"{reply['status']} reply, handed over, {route.call_count} attempt(s), "
                                  f"{elapsed:.2f} s"})
    await runtime.aclose()


async def test_circuit_breaker_skips_the_model_then_probes(tmp_path: Path, sqlite_url: str,
                                                           reliability: list[dict[str, object]]) -> None:
    runtime = _runtime(tmp_path, sqlite_url, circuit_failure_threshold=2, circuit_cooldown=30.0,
                       openai_max_retries=0)
    now = [1000.0]
    runtime.provider.breaker.clock = lambda: now[0]  # type: ignore[attr-defined]
    with respx.mock(base_url=MODEL_BASE_URL) as mock:
        route = mock.post("/chat/completions").mock(return_value=httpx.Response(500, json={"error": {}}))
        transport = httpx.ASGITransport(app=create_app(runtime=runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for _ in range(2):
                conversation_id, auth = await start_conversation(client)
                await send(client, conversation_id, auth, "Tell me about the export size limit")
            assert route.call_count == 2
            conversation_id, auth = await start_conversation(client)
            known = (await send(client, conversation_id, auth, "My export file is larger than 100MB and fails")).json()
            conversation_id, auth = await start_conversation(client)
            unknown = (await send(client, conversation_id, auth, "Is there a discount for nonprofits?")).json()
            assert route.call_count == 2, "open: the model is skipped"
            now[0] += 31
            route.mock(return_value=fake_model.completion("Back again."))
            conversation_id, auth = await start_conversation(client)
            probe = (await send(client, conversation_id, auth, "How do I reset my password?")).json()
            conversation_id, auth = await start_conversation(client)
            after = (await send(client, conversation_id, auth, "How do I reset my password?")).json()

    assert known["escalated"] is False and "100 MB" in known["reply"]["content"], "offline provider answers"
    assert unknown["escalated"] is True and unknown["escalation"]["reason"] == "model_unavailable"
    assert probe["reply"]["content"] == "Back again." and after["reply"]["content"] == "Back again."
    assert route.call_count == 4
    assert runtime.provider.breaker.state == "closed"  # type: ignore[attr-defined]
    reliability.append({"section": "faults", "item": "circuit breaker (2 failures, 30 s cooldown, fake clock)",
                        "result": "model skipped while open, offline answers or hands over, one probe closes it"})
    await runtime.aclose()


async def test_fallback_model_answers_when_the_primary_fails(tmp_path: Path, sqlite_url: str) -> None:
    runtime = _runtime(tmp_path, sqlite_url, fallback_model="gpt-4.1-mini")

    def by_model(request: httpx.Request) -> httpx.Response:
        if json.loads(request.content)["model"] == "gpt-4.1-mini":
            return fake_model.completion("From the fallback.", model="gpt-4.1-mini-2025")
        return httpx.Response(503, text="down")

    with respx.mock(base_url=MODEL_BASE_URL) as mock:
        route = mock.post("/chat/completions").mock(side_effect=by_model)
        transport = httpx.ASGITransport(app=create_app(runtime=runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            conversation_id, auth = await start_conversation(client)
            body = (await send(client, conversation_id, auth, "How do I reset my password?")).json()

    assert body["reply"]["content"] == "From the fallback." and body["escalated"] is False
    assert [json.loads(c.request.content)["model"] for c in route.calls] == [
        "gpt-4o-mini", "gpt-4o-mini", "gpt-4.1-mini"], "primary with its one retry, then the fallback once"
    with runtime.log.sessions() as session:
        reply = session.scalars(select(Message).where(Message.role == "assistant")).one()
    assert reply.model_reported == "gpt-4.1-mini-2025"
    await runtime.aclose()


async def test_conversation_cap_and_daily_budget_hand_over_politely(tmp_path: Path, database_url: str) -> None:
    runtime = _runtime(tmp_path, database_url, conversation_token_cap=200, daily_token_budget=500)
    with respx.mock(base_url=MODEL_BASE_URL) as mock:
        route = mock.post("/chat/completions").mock(return_value=fake_model.completion("ok"))  # 132 tokens
        transport = httpx.ASGITransport(app=create_app(runtime=runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            conversation_id, auth = await start_conversation(client)
            first = [(await send(client, conversation_id, auth, f"question {n}")).json() for n in range(3)]
            others = []
            for _ in range(3):
                other_id, other_auth = await start_conversation(client)
                others.append((await send(client, other_id, other_auth, "another question")).json())

    assert [t["escalated"] for t in first] == [False, False, True]
    assert first[2]["escalation"]["reason"] == "budget_exceeded"
    assert first[2]["reply"]["content"] == runtime.settings.budget_reply
    # 2 + 2 turns of 132 tokens = 528 >= 500 after the fourth model call: the fifth is refused
    assert [t["escalated"] for t in others] == [False, False, True]
    assert others[2]["escalation"]["reason"] == "budget_exceeded"
    assert route.call_count == 4
    await runtime.aclose()
