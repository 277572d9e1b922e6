"""PII kept out: card numbers never stored in clear by default, SUPPORTBOT_REDACT_STORED for secrets (and e-mails,
phone numbers when asked), SUPPORTBOT_REDACT_BEFORE_MODEL sends the model stable placeholders."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import respx

from service.api import create_app
from service.redact import Redactor, luhn_valid, stored_kinds
from service.runtime import Runtime

from . import fake_model
from .conftest import MODEL_BASE_URL, make_settings
from .factories import send, start_conversation

CARD = "4111 1111 1111 1111"  # Luhn-valid
ORDER = "1234 5678 9012 3456"  # 16 digits, not Luhn-valid: an order number stays
KEY = "sk-proj-abcdefghijklmnopqrstuvwx"
EMAIL, OTHER_EMAIL = "ada@example.com", "bob@example.org"
PHONE = "+49 30 1234 5678"


async def _client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(runtime=runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://supportbot.test") as client:
        yield client
    await runtime.aclose()


async def _stored(tmp_path: Path, database_url: str, text: str, **overrides: object) -> tuple[str, str]:
    """The visitor message and the reply as stored, after sending `text` with the settings `overrides`."""
    runtime = Runtime.build(make_settings(tmp_path, database_url, **overrides))
    async for client in _client(runtime):
        conversation_id, auth = await start_conversation(client)
        response = await send(client, conversation_id, auth, text)
        assert response.status_code == 200, response.text
    _, messages = runtime.log.transcript(conversation_id)
    return messages[0].content, messages[1].content


def test_the_test_numbers_are_what_they_claim() -> None:
    assert luhn_valid(CARD.replace(" ", "")) and not luhn_valid(ORDER.replace(" ", ""))


async def test_a_card_number_is_never_stored_in_clear_by_default(tmp_path: Path, database_url: str) -> None:
    stored, _ = await _stored(tmp_path, database_url, f"card {CARD}, order {ORDER}, mail {EMAIL}, key {KEY}")

    assert stored == f"card [CARD], order {ORDER}, mail {EMAIL}, key {KEY}"


async def test_redact_stored_takes_secrets_and_cards(tmp_path: Path, database_url: str) -> None:
    stored, _ = await _stored(tmp_path, database_url, f"card {CARD}, mail {EMAIL}, key {KEY}, call {PHONE}",
                              redact_stored=True)

    assert stored == f"card [CARD], mail {EMAIL}, key [SECRET], call {PHONE}"


async def test_redact_stored_takes_emails_and_phones_when_asked(tmp_path: Path, database_url: str) -> None:
    stored, _ = await _stored(tmp_path, database_url, f"mail {EMAIL}, call {PHONE}, key {KEY}", redact_stored=True,
                              redact_stored_emails=True, redact_stored_phones=True)

    assert stored == "mail [EMAIL], call [PHONE], key [SECRET]"


async def test_cards_are_kept_only_when_switched_off_explicitly(tmp_path: Path, database_url: str) -> None:
    stored, _ = await _stored(tmp_path, database_url, f"card {CARD}", redact_cards=False)

    assert stored == f"card {CARD}"


def test_stored_kinds_follow_the_settings() -> None:
    assert stored_kinds(redact_stored=False, emails=True, phones=True, cards=True) == {"CARD"}
    assert stored_kinds(redact_stored=False, emails=False, phones=False, cards=False) == set()
    assert stored_kinds(redact_stored=True, emails=False, phones=True, cards=False) == {"CARD", "SECRET", "PHONE"}


def test_numbered_placeholders_start_at_one_and_keep_their_value() -> None:
    redactor = Redactor(numbered=True)

    assert redactor.redact(f"{EMAIL} and {OTHER_EMAIL}") == "[EMAIL_1] and [EMAIL_2]"
    assert redactor.redact(f"again {EMAIL.upper()}") == "again [EMAIL_1]"
    assert Redactor(frozenset({"EMAIL"})).redact(f"{EMAIL} {CARD}") == f"[EMAIL] {CARD}", "only the kinds asked"


@pytest.fixture
def model_mock() -> AsyncIterator[respx.MockRouter]:
    with respx.mock(base_url=MODEL_BASE_URL, assert_all_called=False) as router:
        yield router  # type: ignore[misc]


async def test_the_model_sees_stable_placeholders_and_the_log_keeps_the_text(
        tmp_path: Path, database_url: str, model_mock: respx.MockRouter) -> None:
    route = model_mock.post("/chat/completions").mock(return_value=fake_model.completion(
        "I've noted [EMAIL_1]; I can't take card numbers here."))
    runtime = Runtime.build(make_settings(tmp_path, database_url, openai_api_key="sk-test-key",
                                          openai_base_url=MODEL_BASE_URL, redact_before_model=True))
    async for client in _client(runtime):
        conversation_id, auth = await start_conversation(client)
        first = await send(client, conversation_id, auth, f"My email is {EMAIL}, card {CARD}, phone {PHONE}")
        second = await send(client, conversation_id, auth, f"Or write to {OTHER_EMAIL}; {EMAIL} is my main one")
        assert first.status_code == second.status_code == 200

    sent = [json.loads(call.request.content)["messages"] for call in route.calls]
    first_user = sent[0][-1]["content"]
    assert first_user == "My email is [EMAIL_1], card [CARD], phone [PHONE_1]"
    assert [m["content"] for m in sent[1][1:]] == [
        first_user, "I've noted [EMAIL_1]; I can't take card numbers here.",
        "Or write to [EMAIL_2]; [EMAIL_1] is my main one"], "the same value keeps its placeholder across turns"
    assert all(EMAIL not in json.dumps(messages) and "4111" not in json.dumps(messages) for messages in sent)
    _, stored = runtime.log.transcript(conversation_id)
    assert stored[0].content == f"My email is {EMAIL}, card [CARD], phone {PHONE}", \
        "without REDACT_STORED the log keeps e-mails and phones; the card is never kept"


async def test_a_reply_repeating_a_card_number_is_stored_without_it(
        tmp_path: Path, database_url: str, model_mock: respx.MockRouter) -> None:
    model_mock.post("/chat/completions").mock(return_value=fake_model.completion(f"Your card {CARD} is fine."))
    runtime = Runtime.build(make_settings(tmp_path, database_url, openai_api_key="sk-test-key",
                                          openai_base_url=MODEL_BASE_URL))
    async for client in _client(runtime):
        conversation_id, auth = await start_conversation(client)
        response = await send(client, conversation_id, auth, "Is my card fine?")
        assert response.status_code == 200

    _, messages = runtime.log.transcript(conversation_id)
    assert messages[1].content == "Your card [CARD] is fine."


async def test_a_handoff_note_and_an_agent_reply_are_redacted_like_a_message(
        tmp_path: Path, database_url: str) -> None:
    runtime = Runtime.build(make_settings(tmp_path, database_url, admin_token="admin-token-for-tests-0123",
                                          redact_stored=True, redact_stored_emails=True))
    async for client in _client(runtime):
        conversation_id, auth = await start_conversation(client)
        handoff = await client.post(f"/api/conversations/{conversation_id}/handoff", headers=auth,
                                    json={"note": f"charge {CARD} twice, reach me at {EMAIL}"})
        agent = await client.post(f"/admin/api/conversations/{conversation_id}/messages",
                                  headers={"Authorization": f"Bearer {runtime.admin_token}"},
                                  json={"content": f"Refunded the card {CARD}; key {KEY}"})
        assert handoff.status_code == 200 and agent.status_code == 201, agent.text

    _, messages = runtime.log.transcript(conversation_id)
    contents = [message.content for message in messages]
    assert "charge [CARD] twice, reach me at [EMAIL]" in contents
    assert "Refunded the card [CARD]; key [SECRET]" in contents
