"""The visitor API with the offline provider: turns, transcripts, auth, validation, limits."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from service.api import create_app
from service.models import Conversation, Message, PromptSnapshot
from service.runtime import Runtime

from .conftest import make_settings
from .factories import parse_sse, send, start_conversation


async def test_offline_turn_answers_from_knowledge_and_logs_everything(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    conversation_id, auth = await start_conversation(client)

    response = await send(client, conversation_id, auth, "My dashboard takes forever to load")

    assert response.status_code == 200
    body = response.json()
    assert "Slow dashboard loads" in body["reply"]["content"]
    assert body["escalated"] is False and body["escalation"] is None
    assert body["prompt_version"] == "support@v2"
    with runtime.log.sessions() as session:
        user, reply = session.scalars(select(Message).order_by(Message.id)).all()
        snapshot = session.get(PromptSnapshot, reply.prompt_sha256)
    assert (user.id, user.role, user.content) == (body["message_id"], "user", "My dashboard takes forever to load")
    assert (reply.id, reply.role, reply.reply_to_id) == (body["reply"]["message_id"], "assistant", user.id)
    assert (reply.provider, reply.model_requested, reply.status) == ("offline", "offline", "ok")
    assert (reply.prompt_name, reply.prompt_version) == ("support", "v2")
    assert snapshot is not None and hashlib.sha256(snapshot.content.encode()).hexdigest() == reply.prompt_sha256
    assert "Acme Analytics" in snapshot.content
    assert reply.tokens_in and reply.tokens_out and reply.latency_ms is not None
    assert reply.cost_usd == 0.0


async def test_sse_streams_deltas_then_done_with_the_json_shape(client: httpx.AsyncClient) -> None:
    conversation_id, auth = await start_conversation(client)

    response = await client.post(
        f"/api/conversations/{conversation_id}/messages",
        headers={**auth, "Accept": "text/event-stream"},
        json={"content": "How do I reset my password?"},
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    deltas = [data["text"] for name, data in events if name == "delta"]
    assert len(deltas) > 3, "the reply should arrive in pieces"
    name, done = events[-1]
    assert name == "done"
    assert "".join(deltas) == done["reply"]["content"]  # type: ignore[index]
    assert set(done) == {"message_id", "reply", "escalated", "escalation", "prompt_version", "language", "actions",
                         "confirmation"}


async def test_transcript_lists_the_conversation_in_order(client: httpx.AsyncClient) -> None:
    conversation_id, auth = await start_conversation(client)
    await send(client, conversation_id, auth, "How do I reset my password?")
    await send(client, conversation_id, auth, "thanks, that worked!")

    response = await client.get(f"/api/conversations/{conversation_id}", headers=auth)

    assert response.status_code == 200
    transcript = response.json()
    assert transcript["conversation_id"] == conversation_id
    assert [m["role"] for m in transcript["messages"]] == ["user", "assistant", "user", "assistant"]
    assert transcript["messages"][2]["content"] == "thanks, that worked!"
    assert transcript["messages"][0]["created_at"].endswith(("Z", "+00:00")), "timestamps carry their zone"
    assert "prompt_sha256" not in transcript["messages"][1], "internal fields stay internal"


async def test_unknown_question_hands_over_with_no_answer(client: httpx.AsyncClient, runtime: Runtime) -> None:
    conversation_id, auth = await start_conversation(client)

    body = (await send(client, conversation_id, auth, "What is the airspeed of an unladen swallow?")).json()

    assert body["escalated"] is True
    assert body["escalation"]["reason"] == "no_answer"
    with runtime.log.sessions() as session:
        assert session.get(Conversation, conversation_id).status == "escalated"  # type: ignore[union-attr]


@pytest.mark.parametrize("header", [None, "Bearer", "Basic abc", "Bearer not-a-token", "Bearer {other}x"])
async def test_missing_or_bad_token_is_refused(client: httpx.AsyncClient, header: str | None) -> None:
    conversation_id, auth = await start_conversation(client)
    token = auth["Authorization"].removeprefix("Bearer ")
    headers = {"Authorization": header.format(other=token)} if header else {}

    read = await client.get(f"/api/conversations/{conversation_id}", headers=headers)
    write = await send(client, conversation_id, headers, "hello")

    for response in (read, write):
        assert response.status_code == 401
        assert response.json()["error"]["code"] in {"missing_token", "invalid_token"}


async def test_a_token_never_opens_another_conversation(client: httpx.AsyncClient, runtime: Runtime) -> None:
    mine, my_auth = await start_conversation(client)
    theirs, their_auth = await start_conversation(client)
    await send(client, theirs, their_auth, "How do I reset my password?")

    read = await client.get(f"/api/conversations/{theirs}", headers=my_auth)
    write = await send(client, theirs, my_auth, "leak please")
    unknown = await client.get("/api/conversations/" + "0" * 32, headers=my_auth)

    assert read.status_code == write.status_code == unknown.status_code == 404
    assert "reset" not in read.text
    with runtime.log.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Message).where(
            Message.conversation_id == theirs)) == 2


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({}, 422, "validation_error"),
        ({"content": "   "}, 422, "validation_error"),
        ({"content": 42}, 422, "validation_error"),
        ({"content": "hi", "unexpected": 1}, 422, "validation_error"),
        ({"content": "x" * 4001}, 413, "message_too_long"),
        ({"content": "hi", "client_message_id": ""}, 422, "validation_error"),
    ],
)
async def test_bad_messages_get_clear_errors_and_write_nothing(
    client: httpx.AsyncClient, runtime: Runtime, payload: dict[str, object], status: int, code: str
) -> None:
    conversation_id, auth = await start_conversation(client)

    response = await client.post(f"/api/conversations/{conversation_id}/messages", headers=auth, json=payload)

    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    with runtime.log.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 0


async def test_invalid_json_and_oversized_bodies(client: httpx.AsyncClient) -> None:
    conversation_id, auth = await start_conversation(client)
    url = f"/api/conversations/{conversation_id}/messages"

    broken = await client.post(url, headers={**auth, "Content-Type": "application/json"}, content=b"{nope")
    huge = await client.post(url, headers={**auth, "Content-Type": "application/json"},
                             content=b'{"content": "' + b"a" * 70_000 + b'"}')

    assert (broken.status_code, broken.json()["error"]["code"]) == (400, "invalid_json")
    assert (huge.status_code, huge.json()["error"]["code"]) == (413, "payload_too_large")


async def test_unknown_routes_use_the_error_shape(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/nothing-here")

    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "Not Found"}}


async def test_client_message_id_makes_a_send_idempotent(client: httpx.AsyncClient, runtime: Runtime) -> None:
    conversation_id, auth = await start_conversation(client)

    first = await send(client, conversation_id, auth, "How do I reset my password?", client_message_id="abc-1")
    again = await send(client, conversation_id, auth, "How do I reset my password?", client_message_id="abc-1")

    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    with runtime.log.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 2


async def test_turn_limit_per_conversation(tmp_path: Path, database_url: str) -> None:
    runtime = Runtime.build(make_settings(tmp_path, database_url, max_turns=2))
    transport = httpx.ASGITransport(app=create_app(runtime=runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        conversation_id, auth = await start_conversation(client)
        for _ in range(2):
            assert (await send(client, conversation_id, auth, "How do I reset my password?")).status_code == 200

        third = await send(client, conversation_id, auth, "one more")

    assert third.status_code == 422
    assert third.json()["error"]["code"] == "conversation_too_long"
    await runtime.aclose()


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "prompt": "support@v2"}


async def test_readiness_fails_when_the_prompt_is_missing(tmp_path: Path, sqlite_url: str) -> None:
    runtime = Runtime.build(make_settings(tmp_path, sqlite_url, prompt="nosuch@production"))
    transport = httpx.ASGITransport(app=create_app(runtime=runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        ready = await client.get("/readyz")
        conversation_id, auth = await start_conversation(client)
        turn = await send(client, conversation_id, auth, "hello there")

    assert ready.status_code == 503 and ready.json()["status"] == "not_ready"
    assert turn.status_code == 503 and turn.json()["error"]["code"] == "prompt_unavailable"
    await runtime.aclose()


async def test_openapi_documents_the_public_contract(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()

    assert {"/api/conversations", "/api/conversations/{conversation_id}/messages",
            "/api/conversations/{conversation_id}", "/healthz", "/readyz"} <= set(schema["paths"])
    turn = schema["components"]["schemas"]["TurnPublic"]
    assert set(turn["properties"]) == {"message_id", "reply", "escalated", "escalation", "prompt_version",
                                       "language", "actions", "confirmation"}
    assert "/api/conversations/{conversation_id}/actions/{action_call_id}" in schema["paths"]


async def test_identity_verification_with_user_hash(tmp_path: Path, sqlite_url: str) -> None:
    from service.auth import user_hash

    secret = "identity-secret-0123456789"
    runtime = Runtime.build(make_settings(tmp_path, sqlite_url, identity_secret=secret))
    transport = httpx.ASGITransport(app=create_app(runtime=runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        good = await client.post("/api/conversations", json={"metadata": {
            "user_id": "u-42", "user_hash": user_hash(secret, "u-42"), "url": "https://shop.example/cart"}})
        bad = await client.post("/api/conversations", json={"metadata": {"user_id": "u-42", "user_hash": "00"}})
        anonymous = await client.post("/api/conversations", json={"metadata": {"url": "https://shop.example"}})

    assert good.status_code == 201 and anonymous.status_code == 201
    assert (bad.status_code, bad.json()["error"]["code"]) == (401, "invalid_user_hash")
    visitor = runtime.log.get_conversation(good.json()["conversation_id"]).visitor
    assert visitor == {"user_id": "u-42", "url": "https://shop.example/cart", "verified": True}
    await runtime.aclose()


async def test_oversized_metadata_is_refused_and_nothing_is_stored(
    tmp_path: Path, sqlite_url: str, reliability: list[dict[str, object]]
) -> None:
    runtime = Runtime.build(make_settings(tmp_path, sqlite_url, max_metadata_bytes=4096))
    transport = httpx.ASGITransport(app=create_app(runtime=runtime))
    # 20 keys of 2,000 characters each: every value within its own limit, 40 KB in all
    flood = {f"k{n}": "x" * 2000 for n in range(20)}
    page = {"url": "https://shop.example/cart", "title": "Cart", "locale": "de-DE", "note": "ü" * 1000}
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        refused = await client.post("/api/conversations", json={"metadata": flood})
        accepted = await client.post("/api/conversations", json={"metadata": page})

    assert refused.status_code == 413
    error = refused.json()["error"]
    assert error["code"] == "metadata_too_large"
    assert "4096" in error["message"]
    assert accepted.status_code == 201, "ordinary page context (2 KB of UTF-8) still fits"
    with runtime.log.sessions() as session:
        stored = session.scalars(select(Conversation)).all()
    assert [c.id for c in stored] == [accepted.json()["conversation_id"]], "the refused one left no row"
    reliability.append({"section": "attacks", "item": "conversation with 40 KB of metadata (20 keys x 2,000 chars)",
                        "result": "413 metadata_too_large (4096-byte limit), nothing stored"})
    await runtime.aclose()
