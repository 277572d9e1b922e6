"""Live updates in real browsers: an agent signed in with a password watches a conversation while the visitor
writes in the widget on a customer's site; the agent answers and the visitor sees the reply under the agent's
name. No page is reloaded for what arrives (the admin pages have no polling: only the event stream brings it)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import argon2
import pytest
from playwright.sync_api import Browser, Page, expect

from service.api import create_app
from service.db import transaction
from service.models import User
from service.runtime import Runtime

from .conftest import make_settings, site_files
from .test_widget_browser import HostSite, _page, conversation_id, open_chat, send
from .upstream_server import serving

AGENT_EMAIL, AGENT_NAME, AGENT_PASSWORD = "dana@example.com", "Dana Agent", "correct horse battery staple"


@dataclass
class LiveSite:
    """The service on a port, with an agent who has a password, and a customer's site embedding the widget."""

    base: str
    runtime: Runtime
    site: HostSite


@pytest.fixture(scope="module")
def live_site(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[LiveSite]:
    tmp = tmp_path_factory.mktemp("live")
    url, knowledge = site_files(tmp, sqlite_template, {})
    site = HostSite()
    settings = make_settings(tmp, url, knowledge_dir=knowledge, allowed_origins=[site.origin],
                             language_detection="fast")
    runtime = Runtime.build(settings)
    with transaction(runtime.log.sessions) as db:
        db.add(User(email=AGENT_EMAIL, name=AGENT_NAME, role="agent",
                    password_hash=argon2.PasswordHasher().hash(AGENT_PASSWORD)))
    try:
        with serving(create_app(runtime=runtime)) as base:
            site.pages["/"] = _page(base)
            yield LiveSite(base, runtime, site)
    finally:
        site.close()


@pytest.fixture
def agent_page(browser: Browser) -> Iterator[Page]:
    """A second browser context: the agent's, with its own cookies."""
    context = browser.new_context()
    page = context.new_page()
    yield page
    context.close()


def sign_in(page: Page, live: LiveSite, next_path: str) -> None:
    """Sign in on /admin/login with e-mail and password; wait until the page's event stream is open."""
    page.goto(f"{live.base}/admin/login?next={next_path}")
    page.locator("input[name=email]").fill(AGENT_EMAIL)  # the form fields issue 16 names
    page.locator("input[name=password]").fill(AGENT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live.base}{next_path}")
    expect(page.locator("html")).to_have_attribute("data-live", "on")
    page.evaluate("() => { window.__notReloaded = true; }")


def not_reloaded(page: Page) -> bool:
    """True when the page is still the one signed in to (a reload would drop the marker)."""
    return bool(page.evaluate("() => window.__notReloaded === true"))


def test_agent_sees_the_visitors_message_live_and_the_visitor_sees_the_reply_under_the_agents_name(
    page: Page, agent_page: Page, live_site: LiveSite
) -> None:
    visitor = page
    csp_errors: list[str] = []
    agent_page.on("console", lambda message: csp_errors.append(message.text)
                  if "Content Security Policy" in message.text else None)
    open_chat(visitor, live_site.site.origin + "/")
    send(visitor, "I want to talk to a human")
    expect(visitor.get_by_role("button", name="Talk to a human")).to_be_hidden()  # handed over
    cid = conversation_id(visitor)

    sign_in(agent_page, live_site, f"/admin/conversations/{cid}")
    transcript = agent_page.locator("article.message.user")
    expect(transcript).to_have_count(1)
    expect(agent_page.locator("#live-presence")).to_have_text("visitor on the page")  # the widget is open

    # The visitor types: the agent sees it; then sends: the message appears on the agent's page.
    visitor.get_by_role("textbox", name="Message").fill("My order number is")
    expect(agent_page.get_by_text("Visitor is typing…")).to_be_visible()
    send(visitor, "My order number is 4711 and the export still fails")
    expect(transcript).to_have_count(2)
    expect(transcript.last).to_contain_text("My order number is 4711")
    expect(agent_page.get_by_text("Visitor is typing…")).to_be_hidden()
    assert not_reloaded(agent_page)

    # The agent answers through the page's reply form; the widget shows it under the agent's name.
    agent_page.locator("textarea[name=content]").last.fill("Thanks! I re-ran export 4711 for you: it works now.")
    agent_page.get_by_role("button", name="Send", exact=True).click()
    expect(agent_page.locator("article.message.agent")).to_contain_text("I re-ran export 4711")
    reply = visitor.locator(".sb-msg--agent")
    expect(reply).to_contain_text("I re-ran export 4711 for you")
    expect(reply.locator(".sb-author")).to_have_text(AGENT_NAME)
    assert csp_errors == []


def test_inbox_lists_a_new_handoff_without_a_reload(page: Page, agent_page: Page, live_site: LiveSite) -> None:
    sign_in(agent_page, live_site, "/admin")
    rows = agent_page.locator("main table tbody tr")
    before = rows.count()
    visitor = page
    open_chat(visitor, live_site.site.origin + "/")
    send(visitor, "Please let me speak to a person about my invoice")
    expect(visitor.get_by_role("button", name="Talk to a human")).to_be_hidden()
    cid = conversation_id(visitor)
    expect(agent_page.locator(f"main table a[href='/admin/conversations/{cid}']")).to_be_visible()
    assert rows.count() >= before
    assert not_reloaded(agent_page)
