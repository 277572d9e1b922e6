"""OpenTelemetry tracing of real turns (JSON and SSE) through the app, with the SDK's in-memory exporter:
one trace per turn, the GenAI attributes on the model call, the webhook delivery in the same trace, no message
text unless asked, nothing at all when off."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest
import respx
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import INVALID_SPAN, SpanKind, StatusCode
from sqlalchemy import select

from service.api import create_app
from service.models import OutboxEvent
from service.runtime import Runtime
from service.telemetry import tracing
from service.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookSender, verify

from . import fake_model
from .conftest import make_settings
from .factories import send, start_conversation
from .processes import free_port

HOOK_URL = "http://hooks.test/support"
HOOK_SECRET = "webhook-secret-for-tests-0123"
QUESTION = "My dashboard takes forever to load"


def exporter(record_content: bool = False) -> InMemorySpanExporter:
    found = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(found))
    tracing.install(provider, record_content=record_content)
    return found


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Spans of the turns the test runs, text left out (the default)."""
    yield exporter()
    tracing.shutdown()


@pytest.fixture
def spans_with_content() -> Iterator[InMemorySpanExporter]:
    """Spans with message text, as SUPPORTBOT_TRACE_CONTENT=true asks."""
    yield exporter(record_content=True)
    tracing.shutdown()


def by_name(finished: Sequence[ReadableSpan]) -> dict[str, ReadableSpan]:
    return {span.name: span for span in finished}


def attribute_text(finished: Sequence[ReadableSpan]) -> str:
    return json.dumps([{key: str(value) for key, value in (span.attributes or {}).items()} for span in finished])


def assert_one_trace(finished: Sequence[ReadableSpan], *names: str) -> ReadableSpan:
    """Every span in one trace, each of `names` a child of the root turn span; the root."""
    found = by_name(finished)
    root = found["supportbot.turn"]
    assert root.parent is None and root.context is not None
    assert {span.context.trace_id for span in finished if span.context} == {root.context.trace_id}
    for name in names:
        parent = found[name].parent
        assert parent is not None and parent.span_id == root.context.span_id, name
    return root


async def test_a_json_turn_is_one_trace_with_database_retrieval_and_model_spans(
    client: httpx.AsyncClient, spans: InMemorySpanExporter
) -> None:
    conversation_id, auth = await start_conversation(client)

    body = (await send(client, conversation_id, auth, QUESTION)).json()

    finished = spans.get_finished_spans()
    root = assert_one_trace(finished, "supportbot.db.store_message", "supportbot.retrieval", "chat offline",
                            "supportbot.db.store_reply")
    expected = {"supportbot.conversation_id": conversation_id, "supportbot.message_id": body["message_id"],
                "supportbot.reply_id": body["reply"]["message_id"], "supportbot.outcome": "answered",
                "supportbot.prompt_version": "support@v2"}
    assert expected.items() <= dict(root.attributes or {}).items()
    model = by_name(finished)["chat offline"]
    assert model.kind == SpanKind.CLIENT
    attributes = dict(model.attributes or {})
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.system"] == "offline" and attributes["gen_ai.request.model"] == "offline"
    assert attributes["gen_ai.usage.input_tokens"] > 0 and attributes["gen_ai.usage.output_tokens"] > 0
    text = attribute_text(finished)
    assert QUESTION not in text and body["reply"]["content"][:40] not in text, "no message text by default"
    assert "gen_ai.input.messages" not in text and "gen_ai.output.messages" not in text


async def test_a_streamed_hosted_turn_carries_the_genai_attributes_and_no_text(
    hosted_client: httpx.AsyncClient, model_mock: respx.MockRouter, spans: InMemorySpanExporter
) -> None:
    model_mock.post("/chat/completions").mock(return_value=fake_model.stream(
        fake_model.text_chunks(["Clear ", "your ", "browser ", "cache."], prompt_tokens=150, completion_tokens=9)))
    conversation_id, auth = await start_conversation(hosted_client)

    response = await hosted_client.post(f"/api/conversations/{conversation_id}/messages",
                                        headers={**auth, "Accept": "text/event-stream"}, json={"content": QUESTION})

    assert response.status_code == 200 and "event: done" in response.text
    finished = spans.get_finished_spans()
    assert_one_trace(finished, "supportbot.db.store_message", "supportbot.retrieval", "chat gpt-4o-mini",
                     "supportbot.db.store_reply")
    model = by_name(finished)["chat gpt-4o-mini"]
    attributes = dict(model.attributes or {})
    assert (attributes["gen_ai.system"], attributes["gen_ai.request.model"]) == ("openai", "gpt-4o-mini")
    assert attributes["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert (attributes["gen_ai.usage.input_tokens"], attributes["gen_ai.usage.output_tokens"]) == (150, 9)
    assert tuple(attributes["gen_ai.response.finish_reasons"]) == ("stop",)
    assert attributes["gen_ai.request.max_tokens"] == 400
    text = attribute_text(finished)
    assert QUESTION not in text and "browser cache" not in text


async def test_a_failed_model_call_is_an_error_span(
    hosted_client: httpx.AsyncClient, model_mock: respx.MockRouter, spans: InMemorySpanExporter
) -> None:
    model_mock.post("/chat/completions").mock(return_value=httpx.Response(500, json={"error": {"message": "x"}}))
    conversation_id, auth = await start_conversation(hosted_client)

    await send(hosted_client, conversation_id, auth, QUESTION)

    model = by_name(spans.get_finished_spans())["chat gpt-4o-mini"]
    assert model.status.status_code == StatusCode.ERROR
    assert (model.attributes or {})["error.type"] == "ModelUnavailable"


async def test_message_text_is_in_the_spans_only_when_asked(
    hosted_client: httpx.AsyncClient, model_mock: respx.MockRouter, spans_with_content: InMemorySpanExporter
) -> None:
    model_mock.post("/chat/completions").mock(return_value=fake_model.completion("Clear your browser cache."))
    conversation_id, auth = await start_conversation(hosted_client)

    await send(hosted_client, conversation_id, auth, QUESTION)

    attributes = dict(by_name(spans_with_content.get_finished_spans())["chat gpt-4o-mini"].attributes or {})
    sent = json.loads(str(attributes["gen_ai.input.messages"]))
    assert sent[0]["role"] == "system" and sent[-1] == {"role": "user", "content": QUESTION}
    assert json.loads(str(attributes["gen_ai.output.messages"])) == [
        {"role": "assistant", "content": "Clear your browser cache."}]


async def test_the_webhook_delivery_continues_the_turns_trace(
    tmp_path: Path, database_url: str, spans: InMemorySpanExporter
) -> None:
    runtime = Runtime.build(make_settings(tmp_path, database_url, handoff_webhook_url=HOOK_URL,
                                          handoff_webhook_secret=HOOK_SECRET))
    app = create_app(runtime=runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://supportbot.test") as client:
        conversation_id, auth = await start_conversation(client)
        assert (await send(client, conversation_id, auth, "I want to talk to a human please")).json()["escalated"]
    with respx.mock(assert_all_called=True) as hooks:
        route = hooks.post(HOOK_URL).mock(return_value=httpx.Response(200))
        sender = WebhookSender(runtime.outbox, HOOK_URL, HOOK_SECRET, timeout=1, max_attempts=3)
        assert await sender.deliver_due() == 1
        await sender.aclose()
    await runtime.aclose()

    found = by_name(spans.get_finished_spans())
    turn, stored, delivery = found["supportbot.turn"], found["supportbot.db.store_reply"], \
        found["supportbot.webhook.deliver"]
    assert turn.context and stored.context and delivery.context and delivery.parent
    assert delivery.context.trace_id == turn.context.trace_id, "the delivery is part of the turn's trace"
    assert delivery.parent.span_id == stored.context.span_id, "it follows the write that queued it"
    assert (delivery.attributes or {})["http.response.status_code"] == 200
    request = route.calls.last.request
    assert f"{turn.context.trace_id:032x}" in request.headers["traceparent"], "the receiver can continue it"
    body = json.loads(request.content)
    assert tracing.OUTBOX_TRACE_KEY not in body and body["conversation_id"] == conversation_id
    assert verify(HOOK_SECRET, request.headers[TIMESTAMP_HEADER], request.content, request.headers[SIGNATURE_HEADER])


async def test_off_by_default_no_spans_and_nothing_added_to_the_outbox(tmp_path: Path, sqlite_url: str) -> None:
    assert not tracing.enabled()
    assert tracing.start_turn("any") is INVALID_SPAN and tracing.carrier() == {}
    runtime = Runtime.build(make_settings(tmp_path, sqlite_url, handoff_webhook_url=HOOK_URL))
    app = create_app(runtime=runtime)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://supportbot.test") as client:
        conversation_id, auth = await start_conversation(client)
        await send(client, conversation_id, auth, "I want to talk to a human please")
    with runtime.log.sessions() as session:
        payloads = list(session.scalars(select(OutboxEvent.payload)))
    await runtime.aclose()

    assert len(payloads) == 1 and tracing.OUTBOX_TRACE_KEY not in payloads[0]


def test_switched_on_by_the_standard_otlp_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in tracing.ENDPOINT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert tracing.configure_from_environment() is False and not tracing.enabled()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert tracing.configure_from_environment() is False, "OTEL_SDK_DISABLED wins"
    monkeypatch.delenv("OTEL_SDK_DISABLED")
    try:
        assert tracing.configure_from_environment() is True and tracing.enabled()
        span = tracing.start_turn("c1")
        assert span.is_recording() and span.get_span_context().is_valid
    finally:
        tracing.shutdown()
    assert not tracing.enabled()
