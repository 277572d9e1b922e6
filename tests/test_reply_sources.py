"""reply.sources through the API: JSON, SSE, replays, the transcript, the admin API and page, hosted and offline."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import respx
from sqlalchemy import select

from service.api import create_app
from service.config import PROJECT_ROOT
from service.models import Message
from service.runtime import Runtime

from . import fake_model
from .conftest import MODEL_BASE_URL, make_settings
from .factories import parse_sse, send, start_conversation
from .test_admin_pages import sign_in

CITED_PAGES = """# Billing pages on the help center

## Get invoices in another currency
keywords: invoice currency, euros, pounds, currency
url: https://help.acme.example/articles/invoice-currency#change

Open **Billing > Invoices > Currency** and pick euros, pounds or dollars. The next invoice uses it.

## Invoices in another currency: past invoices
keywords: old invoice currency, reissue invoice currency, past invoices currency
url: https://help.acme.example/articles/invoice-currency#past

Past invoices keep their currency; write to billing to have one reissued.

## Pause a subscription for the summer
keywords: pause subscription, pause billing, holiday pause
url: /help/pause-subscription

Go to **Billing > Plan > Pause**. Your data stays; billing stops until you resume.
"""
CURRENCY = {"title": "Get invoices in another currency",
            "url": "https://help.acme.example/articles/invoice-currency#change"}
PAUSE = {"title": "Pause a subscription for the summer", "url": "/help/pause-subscription"}
CURRENCY_QUESTION = "Can I get my invoices in euros instead of dollars?"
PAUSE_QUESTION = "How do I pause my subscription over the summer?"


def knowledge_with_pages(tmp_path: Path) -> Path:
    """The shipped knowledge plus entries that cite help-center pages."""
    knowledge = tmp_path / "knowledge"
    shutil.copytree(PROJECT_ROOT / "knowledge", knowledge)
    (knowledge / "zz-pages.md").write_text(CITED_PAGES, encoding="utf-8")
    return knowledge


async def client_for(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(runtime=runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://supportbot.test") as client:
        yield client
    await runtime.aclose()


@pytest.fixture
def runtime(tmp_path: Path, database_url: str) -> Runtime:
    """The offline provider over knowledge that cites pages."""
    return Runtime.build(make_settings(tmp_path, database_url, knowledge_dir=knowledge_with_pages(tmp_path)))


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    async for c in client_for(runtime):
        yield c


@pytest.fixture
def hosted_runtime(tmp_path: Path, database_url: str, model_mock: respx.MockRouter) -> Runtime:
    """The (mocked) hosted model over knowledge that cites pages."""
    return Runtime.build(make_settings(tmp_path, database_url, knowledge_dir=knowledge_with_pages(tmp_path),
                                       openai_api_key="sk-test-key", openai_base_url=MODEL_BASE_URL))


@pytest.fixture
async def hosted_client(hosted_runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    async for c in client_for(hosted_runtime):
        yield c


def stored_sources(runtime: Runtime, message_id: int) -> object:
    with runtime.log.sessions() as session:
        return session.scalars(select(Message.sources).where(Message.id == message_id)).one()


async def test_offline_answer_in_json_cites_its_entry_and_stores_it(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    conversation_id, auth = await start_conversation(client)

    body = (await send(client, conversation_id, auth, CURRENCY_QUESTION)).json()

    assert "Billing > Invoices > Currency" in body["reply"]["content"]
    assert body["reply"]["sources"] == [CURRENCY]
    assert stored_sources(runtime, body["reply"]["message_id"]) == [CURRENCY]


async def test_an_entry_without_a_page_is_cited_by_its_title(client: httpx.AsyncClient) -> None:
    conversation_id, auth = await start_conversation(client)

    body = (await send(client, conversation_id, auth, "Export to CSV fails with an error")).json()

    assert body["reply"]["sources"] == [{"title": "CSV export fails with an error", "url": None}]


async def test_offline_answer_streamed_cites_its_entry_in_the_done_event(client: httpx.AsyncClient) -> None:
    conversation_id, auth = await start_conversation(client)

    response = await client.post(f"/api/conversations/{conversation_id}/messages",
                                 headers={**auth, "Accept": "text/event-stream"}, json={"content": PAUSE_QUESTION})

    name, done = parse_sse(response.text)[-1]
    assert name == "done"
    assert done["reply"]["sources"] == [PAUSE]  # type: ignore[index]


async def test_a_fixed_text_cites_nothing(client: httpx.AsyncClient, runtime: Runtime) -> None:
    conversation_id, auth = await start_conversation(client)

    handoff = (await send(client, conversation_id, auth, "I want to talk to a human about invoice currency")).json()

    assert handoff["escalated"] is True
    assert handoff["reply"]["content"] == runtime.settings.handoff_reply
    assert handoff["reply"]["sources"] == []
    assert stored_sources(runtime, handoff["reply"]["message_id"]) is None  # SQL NULL, not the JSON text null


async def test_a_greeting_answered_offline_cites_nothing(client: httpx.AsyncClient) -> None:
    conversation_id, auth = await start_conversation(client)

    body = (await send(client, conversation_id, auth, "Hello!")).json()

    assert body["reply"]["content"].startswith("Hello!") and body["reply"]["sources"] == []


async def test_a_retried_message_is_answered_with_the_same_sources(client: httpx.AsyncClient) -> None:
    conversation_id, auth = await start_conversation(client)

    first = (await send(client, conversation_id, auth, PAUSE_QUESTION, client_message_id="m-1")).json()
    again = (await send(client, conversation_id, auth, PAUSE_QUESTION, client_message_id="m-1")).json()

    assert again["reply"]["message_id"] == first["reply"]["message_id"]
    assert again["reply"]["sources"] == first["reply"]["sources"] == [PAUSE]


async def test_transcript_and_admin_api_show_each_replys_sources(client: httpx.AsyncClient, runtime: Runtime) -> None:
    conversation_id, auth = await start_conversation(client)
    await send(client, conversation_id, auth, CURRENCY_QUESTION)
    await send(client, conversation_id, auth, "I want to talk to a human")

    transcript = (await client.get(f"/api/conversations/{conversation_id}", headers=auth)).json()
    admin = (await client.get(f"/admin/api/conversations/{conversation_id}",
                              headers={"Authorization": f"Bearer {runtime.admin_token}"})).json()

    expected = [("user", []), ("assistant", [CURRENCY]), ("user", []), ("assistant", [])]
    assert [(m["role"], m["sources"]) for m in transcript["messages"]] == expected
    assert [(m["role"], m["sources"]) for m in admin["messages"]] == expected


async def test_admin_transcript_page_links_http_sources_and_shows_paths_as_text(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    conversation_id, auth = await start_conversation(client)
    await send(client, conversation_id, auth, CURRENCY_QUESTION)
    await send(client, conversation_id, auth, PAUSE_QUESTION)
    await sign_in(client, runtime)

    page = (await client.get(f"/admin/conversations/{conversation_id}")).text

    assert (f'<a href="{CURRENCY["url"]}" target="_blank" rel="noopener noreferrer">{CURRENCY["title"]}</a>'
            in page)
    # A path belongs to the customer's site, not to the admin's host: shown, never linked here.
    assert f'{PAUSE["title"]} <code>{PAUSE["url"]}</code>' in page
    assert f'href="{PAUSE["url"]}"' not in page


async def test_hosted_answer_cites_the_relevant_entries_it_was_given(
    hosted_client: httpx.AsyncClient, hosted_runtime: Runtime, model_mock: respx.MockRouter
) -> None:
    route = model_mock.post("/chat/completions").mock(
        return_value=fake_model.completion("Yes: pick euros under Billing > Invoices > Currency; old ones stay."))
    conversation_id, auth = await start_conversation(hosted_client)

    body = (await send(hosted_client, conversation_id, auth,
                       "I want my invoice currency in pounds, also for old invoices")).json()

    # Both sections of the currency page matched and were in the prompt: one source, the best section's link.
    system = json.loads(route.calls.last.request.content)["messages"][0]["content"]
    assert "Billing > Invoices > Currency" in system and "Past invoices keep their currency" in system
    sources = body["reply"]["sources"]
    assert sources[0] == CURRENCY
    assert [s for s in sources if "invoice-currency" in (s["url"] or "")] == [CURRENCY]
    assert len(sources) <= 3 and all(s["title"] in system for s in sources)
    assert stored_sources(hosted_runtime, body["reply"]["message_id"]) == sources


async def test_hosted_answer_to_a_question_the_knowledge_does_not_cover_cites_nothing(
    hosted_client: httpx.AsyncClient, model_mock: respx.MockRouter
) -> None:
    model_mock.post("/chat/completions").mock(return_value=fake_model.completion("La la la, penguins on ice."))
    conversation_id, auth = await start_conversation(hosted_client)

    body = (await send(hosted_client, conversation_id, auth, "Sing me a song about penguins")).json()

    assert body["reply"]["content"] == "La la la, penguins on ice."
    assert body["reply"]["sources"] == []


@pytest.mark.parametrize("scenario", ["tool_call", "leak", "unavailable"])
async def test_hosted_turn_ending_in_a_fixed_text_cites_nothing(
    hosted_client: httpx.AsyncClient, hosted_runtime: Runtime, model_mock: respx.MockRouter, scenario: str
) -> None:
    settings = hosted_runtime.settings
    responses = {
        "tool_call": (fake_model.completion(None, tool_calls=[fake_model.escalate_call()]), settings.handoff_reply),
        "leak": (fake_model.completion(f"Sure, the reference is {hosted_runtime.canary}."), settings.leak_reply),
        "unavailable": (httpx.Response(500, json={"error": {"message": "boom"}}), settings.model_unavailable_reply),
    }
    response, fixed_text = responses[scenario]
    model_mock.post("/chat/completions").mock(return_value=response)
    conversation_id, auth = await start_conversation(hosted_client)

    body = (await send(hosted_client, conversation_id, auth, CURRENCY_QUESTION)).json()

    assert body["reply"]["content"] == fixed_text
    assert body["reply"]["sources"] == []
