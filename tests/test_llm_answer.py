"""The hosted provider reads the answer's JSON itself (no typed model per answer or chunk): what it reads must be
what the official client's typed answer says, and an answer of the wrong shape is a malformed answer."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
import respx
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from service.errors import ModelUnavailable
from service.providers.base import ChatRequest, Completion, StreamBroken, TextDelta, ToolCall
from service.providers.openai_compat import OpenAIProvider
from tests import fake_model
from tests.conftest import MODEL_BASE_URL

REQUEST = ChatRequest(model="gpt-4o-mini", messages=[{"role": "user", "content": "Where is my order?"}],
                      max_tokens=400, temperature=0.2)
LOOKUP = fake_model.tool_call("get_order_status", {"order_id": "A-1042"}, call_id="call_a")
HANDOFF = fake_model.escalate_call()


def _answer(message: dict[str, Any], *, usage: bool = True, finish: str | None = "stop",
            model: str | None = "gpt-4o-mini-2024-07-18") -> dict[str, Any]:
    body: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model,
                            "choices": [{"index": 0, "message": {"role": "assistant", **message},
                                         "finish_reason": finish, "logprobs": None}]}
    if usage:
        body["usage"] = {"prompt_tokens": 900, "completion_tokens": 61, "total_tokens": 961,
                         "prompt_tokens_details": {"cached_tokens": 0}}
    return body


ANSWERS = {
    "text": _answer({"content": "Clear your browser cache, then reload. Ünïcode “quotes”\nand lines."}),
    "no_usage": _answer({"content": "Hi"}, usage=False),
    "no_model_no_finish": _answer({"content": "Hi"}, finish=None, model=None),
    "null_content_tool_calls": _answer({"content": None, "tool_calls": [LOOKUP, HANDOFF]}, finish="tool_calls"),
    "text_and_tool_call": _answer({"content": "Let me look.", "tool_calls": [LOOKUP]}, finish="tool_calls"),
    "custom_tool_call_skipped": _answer({"content": None, "tool_calls": [
        {"id": "call_c", "type": "custom", "custom": {"name": "grep", "input": "x"}}, LOOKUP]},
        finish="tool_calls"),
    "refusal": _answer({"content": None, "refusal": "I can't help with that."}),
}

STREAMS = {
    "text": fake_model.text_chunks(["Clear your ", "browser cache", ", then reload. Ü", "nïcode"]),
    "tool_calls_split": fake_model.tool_call_chunks([LOOKUP, HANDOFF], text="Let me look."),
    "no_usage": [fake_model.chunk({"role": "assistant", "content": "Hi"}),
                 fake_model.chunk({}, finish_reason="stop"), b"data: [DONE]\n\n"],
    "model_changes_midway": [fake_model.chunk({"content": "A"}, model="m-1"),
                             fake_model.chunk({"content": "B"}, model="m-2"), b"data: [DONE]\n\n"],
}


def _reference_completion(answer: ChatCompletion) -> Completion:
    """What the typed answer says, read field by field."""
    choice = answer.choices[0]
    calls = tuple(ToolCall(c.id, c.function.name, c.function.arguments or "")
                  for c in choice.message.tool_calls or [] if getattr(c, "function", None) is not None)
    return Completion(text=choice.message.content or "", tool_calls=calls, model_reported=answer.model,
                      tokens_in=answer.usage.prompt_tokens if answer.usage else None,
                      tokens_out=answer.usage.completion_tokens if answer.usage else None,
                      finish_reason=choice.finish_reason)


def _reference_stream(chunks: list[ChatCompletionChunk]) -> tuple[list[str], Completion]:
    """The typed chunks folded into the texts shown and the whole answer."""
    texts, calls, model, usage, finish = [], {}, None, None, None
    for chunk in chunks:
        model = chunk.model or model
        usage = chunk.usage or usage
        for choice in chunk.choices[:1]:
            finish = choice.finish_reason or finish
            for call in choice.delta.tool_calls or []:
                slot = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                slot["id"] = call.id or slot["id"]
                if call.function is not None:
                    slot["name"] += call.function.name or ""
                    slot["arguments"] += call.function.arguments or ""
            if choice.delta.content:
                texts.append(choice.delta.content)
    return texts, Completion(
        text="".join(texts), tool_calls=tuple(ToolCall(c["id"], c["name"], c["arguments"])
                                              for _, c in sorted(calls.items())),
        model_reported=model, tokens_in=usage.prompt_tokens if usage else None,
        tokens_out=usage.completion_tokens if usage else None, finish_reason=finish)


def _provider() -> OpenAIProvider:
    return OpenAIProvider(api_key="sk-test-key", base_url=MODEL_BASE_URL, timeout=10, max_retries=0)


def _reference_client() -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key="sk-test-key", base_url=MODEL_BASE_URL, max_retries=0)


@pytest.mark.parametrize("name", list(ANSWERS))
async def test_an_answer_reads_as_the_clients_typed_answer_says(name: str) -> None:
    with respx.mock(base_url=MODEL_BASE_URL) as router:
        router.post("/chat/completions").mock(return_value=httpx.Response(200, json=ANSWERS[name]))
        read = await _provider().complete(REQUEST)
        typed = await _reference_client().chat.completions.create(model="gpt-4o-mini", messages=[
            {"role": "user", "content": "Where is my order?"}])
    assert read == _reference_completion(typed)


@pytest.mark.parametrize("name", list(STREAMS))
async def test_a_stream_reads_as_the_clients_typed_chunks_say(name: str) -> None:
    with respx.mock(base_url=MODEL_BASE_URL) as router:
        router.post("/chat/completions").mock(side_effect=lambda _request: fake_model.stream(STREAMS[name]))
        events = [event async for event in _provider().stream(REQUEST)]
        typed = [chunk async for chunk in await _reference_client().chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Where is my order?"}], stream=True)]
    texts, whole = _reference_stream(typed)
    assert [e.text for e in events[:-1] if isinstance(e, TextDelta)] == texts
    assert events[-1] == whole


MALFORMED = {
    "choices_not_a_list": {"choices": {"0": {}}},
    "choice_not_an_object": {"choices": ["hello"]},
    "no_message": {"choices": [{"index": 0, "finish_reason": "stop"}]},
    "content_a_number": {"choices": [{"index": 0, "message": {"role": "assistant", "content": 42}}]},
    "tool_calls_an_object": {"choices": [{"index": 0, "message": {"content": None, "tool_calls": {"id": "x"}}}]},
    "arguments_an_object": {"choices": [{"index": 0, "message": {"content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]}}]},
    "usage_tokens_text": {**ANSWERS["text"], "usage": {"prompt_tokens": "many", "completion_tokens": 1}},
    "a_list_not_an_object": [1, 2],
}


@pytest.mark.parametrize("name", list(MALFORMED))
async def test_an_answer_of_the_wrong_shape_is_malformed(name: str) -> None:
    with respx.mock(base_url=MODEL_BASE_URL) as router:
        router.post("/chat/completions").mock(return_value=httpx.Response(200, json=MALFORMED[name]))
        with pytest.raises(ModelUnavailable, match="malformed response"):
            await _provider().complete(REQUEST)


def _line(body: object) -> bytes:
    return f"data: {json.dumps(body)}\n\n".encode()


async def test_a_chunk_of_the_wrong_shape_breaks_the_stream_keeping_the_text_before_it() -> None:
    chunks = [fake_model.chunk({"content": "Clear your "}),
              _line({"model": "m", "choices": [{"index": 0, "delta": {"content": ["cache"]}}]}), b"data: [DONE]\n\n"]
    with respx.mock(base_url=MODEL_BASE_URL) as router:
        router.post("/chat/completions").mock(side_effect=lambda _request: fake_model.stream(chunks))
        shown = []
        with pytest.raises(StreamBroken, match="malformed stream") as broken:
            async for event in _provider().stream(REQUEST):
                shown.append(event)
    assert shown == [TextDelta("Clear your ")]
    assert broken.value.partial.text == "Clear your "


async def test_a_first_chunk_of_the_wrong_shape_is_a_malformed_answer() -> None:
    with respx.mock(base_url=MODEL_BASE_URL) as router:
        router.post("/chat/completions").mock(
            side_effect=lambda _request: fake_model.stream([_line(["not", "a", "chunk"]), b"data: [DONE]\n\n"]))
        with pytest.raises(ModelUnavailable, match="malformed stream"):
            _ = [event async for event in _provider().stream(REQUEST)]
