"""The widget shows a reply's sources as links under it, in a real browser: streamed, JSON and restored replies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Dialog, Page, Route, expect

from service.api import create_app
from service.runtime import Runtime

from .conftest import make_settings, site_files
from .test_reply_sources import CITED_PAGES, CURRENCY, CURRENCY_QUESTION, PAUSE, PAUSE_QUESTION
from .test_widget_browser import CSV_QUESTION, CSV_TITLE, HostSite, _page, open_chat, replies, send
from .upstream_server import serving


@dataclass
class Site:
    """The running service and the customer's site that embeds the widget."""

    base: str
    site: HostSite


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Site]:
    """The real service (offline provider) whose knowledge cites help-center pages, on a real port."""
    tmp = tmp_path_factory.mktemp("widget-sources")
    url, knowledge = site_files(tmp, sqlite_template, {"zz-pages.md": CITED_PAGES})
    customer = HostSite()
    runtime = Runtime.build(make_settings(tmp, url, knowledge_dir=knowledge, allowed_origins=[customer.origin]))
    try:
        with serving(create_app(runtime=runtime)) as base:
            customer.pages["/"] = _page(base)
            yield Site(base, customer)
    finally:
        customer.close()



def test_streamed_reply_shows_its_source_as_a_link_that_opens_a_new_tab(page: Page, site: Site) -> None:
    open_chat(page, site.site.origin + "/")

    send(page, CURRENCY_QUESTION)

    reply = replies(page).last
    link = reply.get_by_role("link", name=CURRENCY["title"])
    expect(link).to_have_attribute("href", CURRENCY["url"])
    expect(link).to_have_attribute("target", "_blank")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    expect(reply.get_by_role("list", name="Sources")).to_be_visible()
    expect(reply.locator(".sb-bubble")).not_to_contain_text("Sources")  # under the reply, not in its text


def test_a_site_path_links_to_the_customers_site_and_survives_a_reload(page: Page, site: Site) -> None:
    open_chat(page, site.site.origin + "/")
    send(page, PAUSE_QUESTION)
    expect(replies(page).last.get_by_role("link", name=PAUSE["title"])).to_have_attribute(
        "href", site.site.origin + PAUSE["url"])

    page.reload()

    restored = replies(page).last  # rebuilt from the conversation's transcript
    expect(restored.get_by_role("link", name=PAUSE["title"])).to_have_attribute(
        "href", site.site.origin + PAUSE["url"])


def test_json_reply_shows_its_source_too(page: Page, site: Site) -> None:
    def ask_for_json(route: Route) -> None:
        route.continue_(headers={**route.request.headers, "accept": "application/json"})

    open_chat(page, site.site.origin + "/")
    page.route("**/messages", ask_for_json)
    with page.expect_response(lambda r: r.url.endswith("/messages")) as answered:
        send(page, CURRENCY_QUESTION)

    assert answered.value.headers["content-type"].startswith("application/json")
    expect(replies(page).last.get_by_role("link", name=CURRENCY["title"])).to_have_attribute("href", CURRENCY["url"])


def test_a_fixed_text_and_an_entry_without_a_page_show_no_sources(page: Page, site: Site) -> None:
    open_chat(page, site.site.origin + "/")

    send(page, CSV_QUESTION)  # a shipped entry: no `url:` field
    expect(replies(page).last.locator("strong")).to_have_text(CSV_TITLE)
    send(page, "I want to talk to a human")

    expect(replies(page)).to_have_count(2)
    expect(page.locator(".sb-sources")).to_have_count(0)


def test_a_source_that_is_not_a_web_address_is_shown_as_text_and_runs_nothing(page: Page, site: Site) -> None:
    hostile = [
        {"title": "Script link", "url": "javascript:window.__pwned=1"},
        {"title": "Data page", "url": "data:text/html,<script>window.__pwned=2</script>"},
        {"title": "Other host", "url": "//evil.example/x"},
        {"title": "Backslash host", "url": "/\\evil.example/x"},
        {"title": "<img src=x onerror=window.__pwned=3>", "url": "https://help.acme.example/ok"},
    ]
    dialogs: list[str] = []

    def refuse(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    def tamper(route: Route) -> None:
        # What a compromised or buggy server could send: the widget must not trust it.
        answer = route.fetch(headers={**route.request.headers, "accept": "application/json"})
        body = answer.json()
        body["reply"]["sources"] = hostile
        route.fulfill(response=answer, body=json.dumps(body), headers={**answer.headers,
                                                                       "content-type": "application/json"})

    page.on("dialog", refuse)
    open_chat(page, site.site.origin + "/")
    page.route("**/messages", tamper)
    send(page, CURRENCY_QUESTION)

    sources = replies(page).last.get_by_role("list", name="Sources").get_by_role("listitem")
    expect(sources).to_have_text([s["title"] for s in hostile])
    links = replies(page).last.locator(".sb-sources a")
    expect(links).to_have_count(1)  # only the https one, its title kept as text
    expect(links).to_have_attribute("href", "https://help.acme.example/ok")
    for name in ["Script link", "Data page", "Other host", "Backslash host"]:
        sources.get_by_text(name).click()
    assert page.locator("img").count() == 0
    assert page.evaluate("() => window.__pwned") is None
    assert dialogs == []
