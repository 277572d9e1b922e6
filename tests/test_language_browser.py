"""Visitors writing German, Spanish, French (and pt, it, nl) in a real browser: handed over before any model call."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import Page, expect
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api import create_app
from service.config import PROJECT_ROOT
from service.runtime import Runtime

from .conftest import make_settings, site_files
from .test_widget_browser import HostSite, _page, replies
from .upstream_server import serving, upstream_app

WIDGET = PROJECT_ROOT / "service" / "static" / "widget.js"
LANGUAGES = PROJECT_ROOT / "knowledge" / "languages"


class RecordingUpstream:
    """The fake hosted model (OpenAI-compatible, on loopback) that notes every request it receives."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self._app: ASGIApp = upstream_app(chunks=3, interval=0.0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.paths.append(scope["path"])
        await self._app(scope, receive, send)


@dataclass
class Site:
    """The running service (hosted model configured), its fake model and the customer's site."""

    base: str
    upstream: RecordingUpstream
    site: HostSite


def widget_strings() -> dict[str, dict[str, str]]:
    """The widget's built-in strings per language, read from widget.js (a JS object of JSON-quoted strings)."""
    source = WIDGET.read_text(encoding="utf-8")
    block = re.search(r"var STRINGS = \{\n(.*?)\n  \};", source, re.S)
    assert block is not None
    strings: dict[str, dict[str, str]] = {}
    for language, body in re.findall(r"^    (\w+): \{\n(.*?)\n    \},", block.group(1), re.S | re.M):
        strings[language] = {key: json.loads(value)
                             for key, value in re.findall(r'^      (\w+): ("(?:[^"\\]|\\.)*"),$', body, re.M)}
    return strings


def fixed_text(language: str, key: str) -> str:
    """A fixed text as the shipped language file words it."""
    data = yaml.safe_load((LANGUAGES / f"{language}.yaml").read_text(encoding="utf-8"))
    text: str = data["texts"][key]
    return text


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Site]:
    """The real service on a real port, its hosted model a fake upstream that must not be called by a handover."""
    tmp = tmp_path_factory.mktemp("languages")
    url, knowledge = site_files(tmp, sqlite_template, {})
    customer = HostSite()
    upstream = RecordingUpstream()
    try:
        with serving(upstream, lifespan="off") as model_base:
            settings = make_settings(tmp, url, knowledge_dir=knowledge, allowed_origins=[customer.origin],
                                     openai_api_key="sk-test-key", openai_base_url=f"{model_base}/v1",
                                     model="gpt-4o-mini")
            runtime = Runtime.build(settings)
            with serving(create_app(runtime=runtime)) as base:
                for language in ("en", "de", "es", "fr", "pt", "it", "nl"):
                    customer.pages[f"/{language}.html"] = _page(base).replace('lang="en"', f'lang="{language}"')
                customer.pages["/pinned.html"] = _page(base, {"data-locale": "en"})
                yield Site(base, upstream, customer)
    finally:
        customer.close()



def open_localized_chat(page: Page, site: Site, language: str) -> dict[str, str]:
    """Open the page in `language` and the chat with its launcher; return the widget's strings for it."""
    strings = widget_strings()[language]
    page.goto(f"{site.site.origin}/{language}.html")
    page.get_by_role("button", name=strings["launcherOpen"]).click()
    expect(page.get_by_role("dialog", name="Acme Analytics")).to_be_visible()
    return strings


def test_every_widget_language_has_every_english_string() -> None:
    strings = widget_strings()

    assert set(strings) == {"en", "de", "es", "fr", "pt", "it", "nl"}
    for language, table in strings.items():
        assert set(table) == set(strings["en"]), language
        assert all(value.strip() for value in table.values()), language
        if language != "en":  # translated, not copied: a few words may coincide ("Conversation", "Sources")
            same = {key for key in table if table[key] == strings["en"][key]}
            assert len(same) <= 3, (language, same)


@pytest.mark.parametrize(("language", "message"), [
    ("de", "Ich möchte bitte mit einem Menschen sprechen."),
    ("de", "Ich will eine Rückerstattung für die letzte Rechnung."),
    ("es", "Quiero hablar con una persona, por favor."),
    ("es", "Quiero que me devuelvan el dinero de la última factura."),
    ("fr", "Je voudrais parler à un conseiller, s'il vous plaît."),
    ("fr", "Je veux être remboursé pour le mois dernier."),
    ("pt", "Quero falar com um atendente humano."),
    ("it", "Voglio un rimborso per il mese scorso."),
    ("nl", "Ik wil mijn abonnement opzeggen."),
])
def test_visitor_is_handed_over_in_their_language_before_any_model_call(
    page: Page, site: Site, language: str, message: str,
) -> None:
    site.upstream.paths.clear()
    strings = open_localized_chat(page, site, language)
    box = page.get_by_role("textbox", name=strings["inputLabel"])
    expect(box).to_have_attribute("placeholder", strings["placeholder"])
    expect(page.get_by_role("button", name=strings["talkToHuman"])).to_be_visible()
    expect(page.get_by_role("button", name=strings["send"])).to_be_attached()

    send_in(page, strings, message)

    expect(replies(page).last).to_contain_text(fixed_text(language, "handoff"))
    expect(page.get_by_text(strings["handoffWaiting"])).to_be_visible()
    expect(page.get_by_text(strings["escalatedSubtitle"])).to_be_visible()
    expect(page.locator(".sb-msg--user")).to_have_text(f"{strings['you']}: {message}")
    assert site.upstream.paths == []


def test_an_ordinary_question_reaches_the_fake_model(page: Page, site: Site) -> None:
    """The control: the hosted model is wired to the fake upstream, so its silence above means something."""
    site.upstream.paths.clear()
    strings = open_localized_chat(page, site, "de")

    send_in(page, strings, "Wie exportiere ich ein Dashboard als PDF?")

    expect(replies(page).last).to_contain_text("word0 word1 word2")
    assert "/v1/chat/completions" in site.upstream.paths
    expect(page.get_by_role("button", name=strings["talkToHuman"])).to_be_visible()


SPANISH_QUESTION = "¿Cómo puedo exportar mi panel de ventas a un archivo PDF cada lunes?"


def test_widget_switches_to_the_language_the_visitor_writes(page: Page, site: Site) -> None:
    english, spanish = widget_strings()["en"], widget_strings()["es"]
    open_localized_chat(page, site, "en")

    send_in(page, english, SPANISH_QUESTION)

    expect(replies(page).last).to_contain_text("word0")
    box = page.get_by_role("textbox", name=spanish["inputLabel"])
    expect(box).to_have_attribute("placeholder", spanish["placeholder"])
    expect(page.get_by_role("button", name=spanish["talkToHuman"])).to_be_visible()
    expect(page.get_by_role("button", name=spanish["send"])).to_be_attached()
    expect(page.get_by_text(spanish["subtitle"])).to_be_visible()

    page.reload()  # the conversation goes on in Spanish (the chat opens again by itself)
    expect(page.get_by_role("textbox", name=spanish["inputLabel"])).to_have_attribute(
        "placeholder", spanish["placeholder"])
    expect(page.get_by_role("button", name=spanish["launcherClose"])).to_be_visible()


def test_a_locale_set_by_the_operator_stays(page: Page, site: Site) -> None:
    english = widget_strings()["en"]
    page.goto(f"{site.site.origin}/pinned.html")
    page.get_by_role("button", name=english["launcherOpen"]).click()

    send_in(page, english, SPANISH_QUESTION)

    expect(replies(page).last).to_contain_text("word0")
    expect(page.get_by_role("textbox", name=english["inputLabel"])).to_have_attribute(
        "placeholder", english["placeholder"])
    expect(page.get_by_role("button", name=english["talkToHuman"])).to_be_visible()


def send_in(page: Page, strings: dict[str, str], text: str) -> None:
    """Type a message into the localized message box and press Enter."""
    box = page.get_by_role("textbox", name=strings["inputLabel"])
    box.fill(text)
    box.press("Enter")

