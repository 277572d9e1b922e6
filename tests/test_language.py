"""The visitor's language: detection, what is stored, and the fixed texts and prompt that follow it."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import respx
import yaml
from sqlalchemy import select

from service.config import PROJECT_ROOT, Settings
from service.fixed_texts import FixedTexts
from service.language import Guess, LanguageDetection
from service.models import Conversation, Escalation, Message
from service.runtime import Runtime
from service.turns import start_turn

from . import fake_model
from .conftest import make_settings
from .factories import parse_sse, send, start_conversation

LANGUAGES = ["en", "de", "es", "fr", "pt", "it", "nl"]
# Short requests and longer questions a support chat gets, per language.
SAMPLES = {
    "en": ["I need a refund", "talk to a person please", "cancel my subscription",
           "My invoice shows the wrong amount this month",
           "The report keeps loading forever and never shows any numbers, what should I do?"],
    "de": ["Ich will mein Geld zurück", "bitte einen Menschen", "Abo kündigen",
           "Meine Rechnung zeigt diesen Monat den falschen Betrag",
           "Der Bericht lädt ewig und zeigt keine Zahlen an, was soll ich tun?"],
    "es": ["quiero un reembolso", "hablar con una persona", "cancelar mi suscripción",
           "Mi factura muestra un importe incorrecto este mes",
           "El informe tarda muchísimo en cargar y no muestra ningún dato, ¿qué hago?"],
    "fr": ["je veux être remboursé", "parler à un humain", "résilier mon abonnement",
           "Ma facture affiche un montant erroné ce mois-ci",
           "Le rapport charge indéfiniment et n'affiche aucun chiffre, que dois-je faire ?"],
    "pt": ["quero o meu dinheiro de volta", "falar com uma pessoa", "cancelar a minha assinatura",
           "A minha fatura mostra um valor errado este mês",
           "O relatório demora imenso a carregar e não mostra nenhum número, o que faço?"],
    "it": ["voglio un rimborso", "parlare con un operatore", "disdire l'abbonamento",
           "La mia fattura riporta un importo sbagliato questo mese",
           "Il report continua a caricare e non mostra nessun numero, cosa devo fare?"],
    "nl": ["ik wil mijn geld terug", "met een medewerker spreken", "abonnement opzeggen",
           "Mijn factuur toont deze maand het verkeerde bedrag",
           "Het rapport blijft maar laden en toont geen cijfers, wat moet ik doen?"],
}


def _texts(code: str) -> dict[str, str]:
    data = yaml.safe_load((PROJECT_ROOT / "knowledge" / "languages" / f"{code}.yaml").read_text(encoding="utf-8"))
    return dict(data["texts"])


@pytest.fixture(scope="module")
def detection() -> LanguageDetection:
    return LanguageDetection(LANGUAGES)


@pytest.mark.parametrize("language", LANGUAGES)
def test_short_and_long_messages_are_detected_in_each_language(detection: LanguageDetection, language: str) -> None:
    for text in SAMPLES[language]:
        assert detection.guess(text).detected == language, text


def test_fullwidth_letters_are_read_as_the_language_they_spell(detection: LanguageDetection) -> None:
    assert detection.guess("ＩＫ ＷＩＬ ＥＥＮ ＭＥＤＥＷＥＲＫＥＲ").detected == "nl"


@pytest.mark.parametrize("text", ["ok", "danke", "Hallo", "merci", "thanks!"])
def test_a_single_word_is_too_short_to_tell(detection: LanguageDetection, text: str) -> None:
    assert detection.guess(text).detected is None


def test_detection_is_limited_to_the_configured_languages() -> None:
    assert LanguageDetection(["en", "de"]).guess("Je voudrais parler à quelqu'un de votre équipe").detected != "fr"
    assert LanguageDetection(["de"]).guess("ok").detected == "de", "one language needs no detection"


def test_an_unsure_message_takes_the_conversation_then_the_locale_then_english() -> None:
    unsure = Guess(None, tuple(LANGUAGES), "en")
    assert unsure.resolve("es", {"locale": "de-DE"}) == "es"
    assert unsure.resolve(None, {"locale": "de-DE"}) == "de"
    assert unsure.resolve(None, {"locale": "ja-JP"}) == "en", "a locale outside the configured languages is no hint"
    assert unsure.resolve(None, None) == "en"
    assert Guess("fr", tuple(LANGUAGES), "en").resolve("es", {"locale": "de"}) == "fr", "the locale is only a hint"


def test_settings_refuse_an_unknown_language_code(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="xx"):
        make_settings(tmp_path, "sqlite://", languages="en,xx")
    assert make_settings(tmp_path, "sqlite://", languages=" EN, sv ").languages == ["en", "sv"]


def test_english_texts_follow_the_operators_setting_then_en_yaml(tmp_path: Path) -> None:
    lookup = {("de", "handoff"): "Ich übergebe.", ("en", "handoff"): "Handing over (en.yaml)."}
    default = FixedTexts.from_settings(make_settings(tmp_path, "sqlite://"), lambda c, k: lookup.get((c, k)))
    assert default.get("handoff", "de") == "Ich übergebe."
    assert default.get("handoff", "es") == "Handing over (en.yaml).", "a language without the text gets English"
    assert default.get("handoff", None) == "Handing over (en.yaml)."
    chosen = FixedTexts.from_settings(make_settings(tmp_path, "sqlite://", handoff_reply="Our own handoff text."),
                                      lambda c, k: lookup.get((c, k)))
    assert chosen.get("handoff", "en") == "Our own handoff text."
    assert chosen.get("handoff", "de") == "Ich übergebe.", "the English setting does not replace German"


def test_every_shipped_language_file_has_every_text() -> None:
    keys = set(_texts("en"))
    assert keys == {"handoff", "escalated_ack", "model_unavailable", "budget", "leak", "interrupted", "no_answer",
                    "wrong_language", "action_sign_in", "action_failed", "action_confirm", "action_confirm_label",
                    "action_cancel_label"}
    for code in LANGUAGES:
        assert set(_texts(code)) == keys, code


def _stored(runtime: Runtime, conversation_id: str) -> tuple[Conversation, list[Message]]:
    with runtime.log.sessions() as session:
        conversation = session.get(Conversation, conversation_id)
        assert conversation is not None
        messages = list(session.scalars(select(Message).where(Message.conversation_id == conversation_id)
                                        .order_by(Message.id)))
    return conversation, messages


async def _conversation(client: httpx.AsyncClient, locale: str | None = None) -> tuple[str, dict[str, str]]:
    if locale is None:
        return await start_conversation(client)
    response = await client.post("/api/conversations", json={"metadata": {"locale": locale}})
    assert response.status_code == 201, response.text
    body = response.json()
    return body["conversation_id"], {"Authorization": f"Bearer {body['token']}"}


async def test_language_is_stored_on_the_message_and_the_conversation(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    conversation_id, auth = await _conversation(client, locale="de-DE")
    await send(client, conversation_id, auth, "Hallo")
    conversation, messages = _stored(runtime, conversation_id)
    assert [m.language for m in messages] == ["de", None], "too short to tell: the widget's locale decides"
    assert conversation.language == "de"

    await send(client, conversation_id, auth, "Comment exporter mon tableau de bord en PDF ?")
    await send(client, conversation_id, auth, "merci")
    conversation, messages = _stored(runtime, conversation_id)
    assert [m.language for m in messages if m.role == "user"] == ["de", "fr", "fr"], \
        "a confident detection wins over the locale; a short reply keeps the conversation's language"
    assert conversation.language == "fr"
    assert all(m.language is None for m in messages if m.role != "user")


HANDOFFS = [
    ("de", "Ich möchte bitte mit einem Menschen sprechen."),
    ("es", "Quiero hablar con una persona, por favor."),
    ("fr", "Je voudrais parler à un conseiller, s'il vous plaît."),
]


@pytest.mark.parametrize(("language", "message"), HANDOFFS)
async def test_a_request_for_a_person_is_handed_over_in_the_visitors_language_before_any_model_call(
    hosted_client: httpx.AsyncClient, hosted_runtime: Runtime, model_mock: respx.MockRouter, language: str,
    message: str,
) -> None:
    route = model_mock.post("/chat/completions")
    conversation_id, auth = await _conversation(hosted_client)

    body = (await send(hosted_client, conversation_id, auth, message)).json()

    assert route.call_count == 0, "handed over before the model was asked"
    assert body["escalated"] is True
    assert body["language"] == language
    assert body["reply"]["content"] == _texts(language)["handoff"]
    conversation, _ = _stored(hosted_runtime, conversation_id)
    assert conversation.language == language


async def test_the_prompt_tells_the_model_the_visitors_language(
    hosted_client: httpx.AsyncClient, model_mock: respx.MockRouter
) -> None:
    route = model_mock.post("/chat/completions").mock(
        return_value=fake_model.completion("Leeren Sie den Cache."))
    conversation_id, auth = await _conversation(hosted_client)

    await send(hosted_client, conversation_id, auth, "Mein Dashboard lädt sehr langsam, was kann ich tun?")

    system = json.loads(route.calls.last.request.content)["messages"][0]["content"]
    assert "Answer in German, the language the customer writes in" in system


async def test_button_handoff_and_acknowledgement_are_in_the_conversations_language(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    conversation_id, auth = await _conversation(client, locale="es-ES")
    url = f"/api/conversations/{conversation_id}/handoff"
    first = (await client.post(url, headers=auth, json={})).json()
    again = (await client.post(url, headers=auth, json={"note": "Sigo esperando una respuesta, gracias."})).json()
    assert first["reply"]["content"] == _texts("es")["handoff"], "no message yet: the widget's locale decides"
    assert again["reply"]["content"] == _texts("es")["escalated_ack"]
    assert first["language"] == "es"


async def test_offline_provider_says_the_knowledge_is_in_another_language_and_hands_over(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    conversation_id, auth = await _conversation(client)
    body = (await send(client, conversation_id, auth,
                       "Wie kann ich die Farbe meines Profilbildes im Kalender ändern?")).json()
    assert body["reply"]["content"] == _texts("de")["wrong_language"]
    assert body["escalated"] is True
    with runtime.log.sessions() as session:
        escalation = session.scalars(select(Escalation).where(Escalation.conversation_id == conversation_id)).one()
    assert escalation.reason == "no_answer"
    assert escalation.detail is not None and "the question is in de, the knowledge in en" in escalation.detail


async def test_offline_no_answer_in_the_knowledges_language_keeps_its_text(
    tmp_path: Path, database_url: str
) -> None:
    settings: Settings = make_settings(tmp_path, database_url, knowledge_language="de")
    runtime = Runtime.build(settings)
    conversation = await runtime.db_threads.run(runtime.log.create_conversation, None)
    turn = await start_turn(runtime, conversation.id, "Wie kann ich die Farbe meines Profilbildes im Kalender ändern?")
    outcome = await turn.run()
    await runtime.aclose()
    assert outcome.reply == _texts("de")["no_answer"]


async def test_the_streamed_done_event_carries_the_language(client: httpx.AsyncClient) -> None:
    conversation_id, auth = await _conversation(client)
    response = await client.post(f"/api/conversations/{conversation_id}/messages",
                                 headers={**auth, "Accept": "text/event-stream"},
                                 json={"content": "Je voudrais parler à un conseiller, s'il vous plaît."})
    done = [data for name, data in parse_sse(response.text) if name == "done"]
    assert done and done[0]["language"] == "fr"
    assert done[0]["reply"]["content"] == _texts("fr")["handoff"]  # type: ignore[index]


async def _three_visitors(client: httpx.AsyncClient) -> dict[str, str]:
    """A German visitor asking for a person, a Spanish one asking for a refund, an English one answered."""
    ids = {}
    for language, text in [("de", "Ich möchte bitte mit einem Menschen sprechen."),
                           ("es", "Quiero que me devuelvan el dinero de la última factura."),
                           ("en", "My dashboard takes forever to load, what can I do?")]:
        conversation_id, auth = await _conversation(client)
        assert (await send(client, conversation_id, auth, text)).status_code == 200
        ids[language] = conversation_id
    return ids


async def test_review_inbox_filters_by_language(client: httpx.AsyncClient, runtime: Runtime) -> None:
    ids = await _three_visitors(client)
    admin = {"Authorization": f"Bearer {runtime.admin_token}"}

    german = (await client.get("/admin/api/conversations", params={"language": "de"}, headers=admin)).json()
    everyone = (await client.get("/admin/api/conversations", headers=admin)).json()
    invalid = await client.get("/admin/api/conversations", params={"language": "German"}, headers=admin)

    assert [(item["id"], item["language"]) for item in german["items"]] == [(ids["de"], "de")]
    assert {item["id"] for item in everyone["items"]} == set(ids.values())
    assert invalid.status_code == 422


async def test_admin_inbox_page_offers_and_applies_the_language_filter(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    from .test_admin_pages import sign_in

    ids = await _three_visitors(client)
    await sign_in(client, runtime)
    page = (await client.get("/admin", params={"language": "es"})).text
    assert '<option value="es" selected>Español</option>' in page
    assert ids["es"] in page and ids["de"] not in page and ids["en"] not in page


async def test_report_breaks_escalation_and_miss_rates_down_by_language(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    from service.report import build_report, format_report

    await _three_visitors(client)
    report = build_report(runtime.settings, runtime.log.sessions, training_tokens=0)

    rows = {row.language: row for row in report.languages}
    assert set(rows) == {"de", "es", "en"}
    assert (rows["de"].conversations, rows["de"].escalated, rows["de"].escalation_rate) == (1, 1, 1.0)
    assert rows["es"].escalation_rate == 1.0, "a refund demand in Spanish is handed over"
    assert (rows["en"].escalation_rate, rows["en"].replies, rows["en"].misses) == (0.0, 1, 0)
    assert "by visitor language: " in format_report(report)
    assert "de 1 conv, escalated 100.0%" in format_report(report)

    from .test_admin_pages import sign_in

    await sign_in(client, runtime)
    page = (await client.get("/admin/report")).text
    assert "By visitor language" in page and "<td>de</td><td>1</td><td>1</td>" in page


@pytest.mark.parametrize(("score", "answered"), [(0.36, False), (0.45, True)])
async def test_offline_answers_across_languages_only_on_a_strong_match(score: float, answered: bool) -> None:
    from service.knowledge import KnownIssue
    from service.providers.base import ChatRequest
    from service.providers.offline import OfflineProvider

    issue = KnownIssue("api-401", "API returns 401 Unauthorized", ("api",), "Create a new key.", False, "api.md:18")

    async def search(_query: str, _k: int) -> list[tuple[KnownIssue, float]]:
        return [(issue, score)]

    offline = OfflineProvider(search, min_score=0.35, knowledge_language="en",
                              texts=lambda key, code: f"{key}/{code}")
    request = ChatRequest(model="offline", messages=[{"role": "user", "content": "Die API gibt 401 zurück"}],
                          max_tokens=100, language="de")
    completion = await offline.answer(request)
    english = await offline.answer(ChatRequest(model="offline", messages=request.messages, max_tokens=100,
                                               language="en"))
    assert english.matched_issue == "api-401", "in the knowledge's own language the usual threshold holds"
    assert (completion.matched_issue == "api-401") is answered
    assert completion.wrong_language is not answered
    if not answered:
        assert completion.text == "wrong_language/de" and completion.no_answer


def test_fast_detection_is_the_low_accuracy_mode_and_still_reads_sentences(tmp_path: Path) -> None:
    fast = LanguageDetection(LANGUAGES, fast=True)
    assert fast.guess("Meine Rechnung zeigt diesen Monat den falschen Betrag").detected == "de"
    assert make_settings(tmp_path, "sqlite://", language_detection="fast").language_detection == "fast"
    with pytest.raises(ValueError):
        make_settings(tmp_path, "sqlite://", language_detection="quick")
