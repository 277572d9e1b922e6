"""Turns against the hosted model, mocked at HTTP level: what is sent, what is stored, failure paths."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
import respx
from sqlalchemy import select

from service.api import create_app
from service.models import Conversation, Escalation, Message, PromptSnapshot
from service.providers.base import TextDelta
from service.runtime import Runtime
from service.turns import start_turn

from . import fake_model
from .conftest import MODEL_BASE_URL, _client_for, make_settings
from .factories import parse_sse, send, start_conversation


def _messages(runtime: Runtime) -> list[Message]:
    with runtime.log.sessions() as session:
        return list(session.scalars(select(Message).order_by(Message.id)))


async def test_request_carries_versioned_prompt_max_tokens_auth_and_tool(
    hosted_client: httpx.AsyncClient, hosted_runtime: Runtime, model_mock: respx.MockRouter
) -> None:
    route = model_mock.post("/chat/completions").mock(return_value=fake_model.completion("Clear your cache."))
    conversation_id, auth = await start_conversation(hosted_client)

    body = (await send(hosted_client, conversation_id, auth, "My dashboard takes forever to load")).json()

    assert route.call_count == 1
    request = route.calls.last.request
    sent = json.loads(request.content)
    assert request.headers["authorization"] == "Bearer sk-test-key"
    assert sent["model"] == "gpt-4o-mini"
    assert sent["max_tokens"] == 400, "the prompt version's max_tokens is always sent"
    assert sent["temperature"] == 0.2
    assert [t["function"]["name"] for t in sent["tools"]] == ["escalate_to_human"]
    system, user = sent["messages"]
    assert system["role"] == "system" and system["content"].startswith("Internal reference sbc-")
    assert system["content"].splitlines()[1].startswith("You are a helpful support agent for Acme")
    assert "Slow dashboard loads" in system["content"], "retrieved known issue is in the prompt"
    assert user == {"role": "user", "content": "My dashboard takes forever to load"}
    assert body["reply"]["content"] == "Clear your cache."
    assert body["prompt_version"] == "support@v2"


async def test_reply_is_logged_with_usage_cost_and_a_reproducible_prompt(
    hosted_client: httpx.AsyncClient, hosted_runtime: Runtime, model_mock: respx.MockRouter
) -> None:
    route = model_mock.post("/chat/completions").mock(
        return_value=fake_model.completion("Try the export again.", prompt_tokens=1000, completion_tokens=100))
    conversation_id, auth = await start_conversation(hosted_client)

    await send(hosted_client, conversation_id, auth, "Export to CSV fails with an error")

    _user, reply = _messages(hosted_runtime)
    assert (reply.provider, reply.model_requested, reply.model_reported) == (
        "openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18")
    assert (reply.tokens_in, reply.tokens_out, reply.status) == (1000, 100, "ok")
    # gpt-4o-mini list price: $0.15 / 1M input, $0.60 / 1M output (dated name matched by prefix)
    assert reply.cost_usd == pytest.approx(1000 * 0.15e-6 + 100 * 0.60e-6)
    assert reply.latency_ms is not None and reply.latency_ms >= 0
    snapshot = hosted_runtime.log.snapshot(reply.prompt_sha256 or "")
    sent_system = json.loads(route.calls.last.request.content)["messages"][0]["content"]
    assert snapshot.content == sent_system, "the stored snapshot is exactly what the model saw"


async def test_identical_prompts_are_stored_once(
    hosted_client: httpx.AsyncClient, hosted_runtime: Runtime, model_mock: respx.MockRouter
) -> None:
    model_mock.post("/chat/completions").mock(return_value=fake_model.completion("ok"))
    for _ in range(2):
        conversation_id, auth = await start_conversation(hosted_client)
        await send(hosted_client, conversation_id, auth, "Export to CSV fails with an error")

    with hosted_runtime.log.sessions() as session:
        assert len(session.scalars(select(PromptSnapshot)).all()) == 1


async def test_streaming_turn_with_usage(
    hosted_client: httpx.AsyncClient, hosted_runtime: Runtime, model_mock: respx.MockRouter
) -> None:
    route = model_mock.post("/chat/completions").mock(
        side_effect=lambda _r: fake_model.stream(fake_model.text_chunks(["Clear ", "your ", "cache."])))
    conversation_id, auth = await start_conversation(hosted_client)

    response = await hosted_client.post(f"/api/conversations/{conversation_id}/messages",
                                        headers={**auth, "Accept": "text/event-stream"},
                                        json={"content": "dashboard is slow"})

    sent = json.loads(route.calls.last.request.content)
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    events = parse_sse(response.text)
    assert "".join(d["text"] for n, d in events if n == "delta") == "Clear your cache."
    assert events[-1][0] == "done" and events[-1][1]["reply"]["content"] == "Clear your cache."  # type: ignore[index]
    reply = _messages(hosted_runtime)[1]
    assert (reply.tokens_in, reply.tokens_out, reply.status, reply.content) == (150, 9, "ok", "Clear your cache.")


async def test_stream_breaking_half_way_keeps_partial_reply_and_user_message(
    hosted_client: httpx.AsyncClient, hosted_runtime: Runtime, model_mock: respx.MockRouter
) -> None:
    chunks = fake_model.text_chunks(["First ", "half "])[:3]
    model_mock.post("/chat/completions").mock(
        side_effect=lambda _r: fake_model.stream(chunks, fail=httpx.ReadError("connection reset")))
    conversation_id, auth = await start_conversation(hosted_client)

    response = await hosted_client.post(f"/api/conversations/{conversation_id}/messages",
                                        headers={**auth, "Accept": "text/event-stream"},
                                        json={"content": "Tell me about exports"})

    events = parse_sse(response.text)
    name, done = events[-1]
    assert name == "done"
    assert done["reply"]["status"] == "partial"  # type: ignore[index]
    assert done["escalation"]["reason"] == "model_unavailable"  # type: ignore[index]
    user, reply = _messages(hosted_runtime)
    assert user.content == "Tell me about exports"
    assert reply.status == "partial" and reply.content.startswith("First half")


@pytest.mark.parametrize("failure", [
    httpx.Response(500, json={"error": {"message": "boom"}}),
    httpx.Response(503, text="unavailable"),
    httpx.ConnectError("connection refused"),
    httpx.ReadTimeout("timed out"),
])
async def test_model_failure_after_one_retry_gives_polite_reply_and_handover(
    hosted_client: httpx.AsyncClient, hosted_runtime: Runtime, model_mock: respx.MockRouter,
    failure: httpx.Response | Exception,
) -> None:
    route = model_mock.post("/chat/completions").mock(side_effect=[failure, failure, failure])
    conversation_id, auth = await start_conversation(hosted_client)

    response = await send(hosted_client, conversation_id, auth, "Export to CSV fails with an error")

    assert response.status_code == 200
    body = response.json()
    assert route.call_count == 2, "one attempt plus exactly one retry"
    assert body["reply"]["content"] == hosted_runtime.settings.model_unavailable_reply
    assert body["reply"]["status"] == "failed"
    assert body["escalated"] is True and body["escalation"]["reason"] == "model_unavailable"
    user, reply = _messages(hosted_runtime)
    assert user.content == "Export to CSV fails with an error"
    assert reply.status == "failed"
    with hosted_runtime.log.sessions() as session:
        assert session.get(Conversation, conversation_id).status == "escalated"  # type: ignore[union-attr]
        assert session.scalars(select(Escalation)).one().message_id == user.id


async def test_model_tool_call_escalates_with_the_summary(
    hosted_client: httpx.AsyncClient, hosted_runtime: Runtime, model_mock: respx.MockRouter
) -> None:
    model_mock.post("/chat/completions").mock(return_value=fake_model.completion(
        None, tool_calls=[fake_model.escalate_call("billing dispute", "Wants money back for March.")]))
    conversation_id, auth = await start_conversation(hosted_client)

    body = (await send(hosted_client, conversation_id, auth, "Our numbers look odd since Tuesday")).json()

    assert body["escalated"] is True
    assert body["escalation"] == {"reason": "model_decision", "detail": "billing dispute"}
    assert body["reply"]["content"] == hosted_runtime.settings.handoff_reply
    with hosted_runtime.log.sessions() as session:
        escalation = session.scalars(select(Escalation)).one()
        reply = session.scalars(select(Message).where(Message.role == "assistant")).one()
    assert escalation.summary == "Wants money back for March."
    assert reply.tool_calls and reply.tool_calls[0]["function"]["name"] == "escalate_to_human"


async def test_history_is_capped_oldest_first_and_system_prompt_kept(tmp_path: Path, sqlite_url: str) -> None:
    settings = make_settings(tmp_path, sqlite_url, openai_api_key="sk-test-key", openai_base_url=MODEL_BASE_URL,
                             history_max_messages=4)
    runtime = Runtime.build(settings)
    with respx.mock(base_url=MODEL_BASE_URL) as mock:
        route = mock.post("/chat/completions").mock(return_value=fake_model.completion("noted"))
        transport = httpx.ASGITransport(app=create_app(runtime=runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            conversation_id, auth = await start_conversation(client)
            for n in range(5):
                await send(client, conversation_id, auth, f"question number {n}")
    sent = json.loads(route.calls.last.request.content)["messages"]
    assert sent[0]["role"] == "system"
    assert [m["content"] for m in sent[1:]] == [
        "question number 2", "noted", "question number 3", "noted", "question number 4"]
    await runtime.aclose()


async def test_client_disconnect_mid_stream_stores_partial_reply(tmp_path: Path, sqlite_url: str) -> None:
    settings = make_settings(tmp_path, sqlite_url, openai_api_key="sk-test-key", openai_base_url=MODEL_BASE_URL)
    runtime = Runtime.build(settings)
    with respx.mock(base_url=MODEL_BASE_URL) as mock:
        words = [f"word{n} " for n in range(60)]  # longer than the leak guard's held-back window
        mock.post("/chat/completions").mock(side_effect=lambda _r: fake_model.stream(
            fake_model.text_chunks(["Here ", "is ", "a ", "slow ", "answer ", *words]), delay=0.02))
        conversation = runtime.log.create_conversation()
        turn = await start_turn(runtime, conversation.id, "Explain exports")
        first_delta = asyncio.Event()

        async def consume() -> None:
            async for event in turn.events(stream=True):
                if isinstance(event, TextDelta):
                    first_delta.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(first_delta.wait(), 5)
        task.cancel()  # what Starlette does when the client goes away
        with pytest.raises(asyncio.CancelledError):
            await task
    user, reply = _messages(runtime)
    assert user.content == "Explain exports"
    assert reply.status == "partial"
    assert reply.content.startswith("Here")
    await runtime.aclose()


async def test_long_streams_flow_in_pieces_behind_the_guard_window(
    hosted_client: httpx.AsyncClient, model_mock: respx.MockRouter
) -> None:
    pieces = [f"step {n} of the fix; " for n in range(40)]
    model_mock.post("/chat/completions").mock(side_effect=lambda _r: fake_model.stream(fake_model.text_chunks(pieces)))
    conversation_id, auth = await start_conversation(hosted_client)

    response = await hosted_client.post(f"/api/conversations/{conversation_id}/messages",
                                        headers={**auth, "Accept": "text/event-stream"},
                                        json={"content": "How do I fix the export?"})

    deltas = [d["text"] for n, d in parse_sse(response.text) if n == "delta"]
    assert "".join(deltas) == "".join(pieces)
    assert len(deltas) >= 30, "text is released piece by piece once past the window, not in one lump"


@pytest.mark.parametrize("top_k", [5, 8])
async def test_a_large_knowledge_base_puts_the_entries_for_the_visitors_recent_messages_in_the_prompt(
    tmp_path: Path, database_url: str, model_mock: respx.MockRouter, top_k: int
) -> None:
    """Too large to inline: the first message's prompt holds its best entries (found by the same search as the
    sources), a later one's the entries for the visitor's recent messages together."""
    okta = "Okta SSO login loops back to the login page"
    settings = make_settings(tmp_path, database_url, openai_api_key="sk-test-key", openai_base_url=MODEL_BASE_URL,
                             model="gpt-4o-mini", knowledge_inline_max_chars=1000, knowledge_top_k=top_k)
    runtime = Runtime.build(settings)
    route = model_mock.post("/chat/completions").mock(return_value=fake_model.completion("Noted."))
    async for client in _client_for(runtime):
        conversation_id, auth = await start_conversation(client)
        first = (await send(client, conversation_id, auth, f"The {okta}")).json()
        first_prompt = json.loads(route.calls.last.request.content)["messages"][0]["content"]
        await send(client, conversation_id, auth, "Also, how do I invite a teammate?")
        second_prompt = json.loads(route.calls.last.request.content)["messages"][0]["content"]

    entries = [line for line in first_prompt.splitlines() if line.startswith("### ")]
    assert len(entries) == top_k, "the knowledge is not inlined: only the best entries are in the prompt"
    assert okta in first_prompt
    assert "Invite a teammate" not in first_prompt
    assert [source["title"] for source in first["reply"]["sources"]][:1] == [okta]
    assert "Invite a teammate" in second_prompt
    assert okta in second_prompt, "the earlier message still counts"
