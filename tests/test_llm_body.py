"""The hosted provider posts its own request body: it must be the same JSON that `create` would send."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest
import respx

from service.providers.base import ChatRequest
from service.providers.openai_compat import OpenAIProvider
from tests import fake_model
from tests.conftest import MODEL_BASE_URL, make_settings

HISTORY = [
    {"role": "system", "content": "You are the support assistant of Acme. Ünïcode, \"quotes\" and\nnewlines."},
    {"role": "user", "content": "My dashboard takes forever to load"},
    {"role": "assistant", "content": "Turn on cached results in the dashboard settings."},
    {"role": "user", "content": "Still slow. Can I talk to someone?"},
]


def _body(route: respx.Route, index: int) -> dict[str, Any]:
    return json.loads(route.calls[index].request.content)  # type: ignore[no-any-return]


@pytest.mark.parametrize("temperature", [None, 0.2])
@pytest.mark.parametrize("stream", [False, True])
async def test_body_is_what_the_clients_create_would_send(tmp_path: Path, stream: bool,
                                                          temperature: float | None) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", openai_api_key="sk-test-key",
                             openai_base_url=MODEL_BASE_URL)
    request = ChatRequest(model="gpt-4o-mini", messages=HISTORY, max_tokens=400, temperature=temperature)
    reply = fake_model.stream([fake_model.chunk({"content": "Hi"}), fake_model.chunk(
        {}, finish_reason="stop", usage={"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4})]) \
        if stream else fake_model.completion("Hi")
    with respx.mock(base_url=MODEL_BASE_URL) as router:
        route = router.post("/chat/completions").mock(side_effect=lambda _: reply)
        provider = OpenAIProvider(api_key=settings.openai_api_key, base_url=settings.openai_base_url,
                                  timeout=settings.openai_timeout, max_retries=0)
        if stream:
            events = [event async for event in provider.stream(request)]
            assert events[-1].text == "Hi"  # type: ignore[union-attr]
        else:
            assert (await provider.complete(request)).text == "Hi"
        reference = openai.AsyncOpenAI(api_key="sk-test-key", base_url=MODEL_BASE_URL, max_retries=0)
        result = await reference.chat.completions.create(**provider._arguments(request, stream))  # type: ignore[call-overload]
        if stream:
            [_ async for _ in result]
        await provider.aclose()
        await reference.close()
    ours, theirs = route.calls[0].request, route.calls[1].request
    assert _body(route, 0) == _body(route, 1)
    assert ours.headers["content-type"] == theirs.headers["content-type"] == "application/json"
    assert ours.headers["authorization"] == theirs.headers["authorization"] == "Bearer sk-test-key"
    assert ours.url == theirs.url
