"""The review UI in /admin: sign-in, session, CSRF on every form, the pages reviewers use."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import respx
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select

from service.api import create_app
from service.markdown import LINK_REL
from service.models import AuditEntry, Correction, Message
from service.runtime import Runtime

from . import fake_model
from .conftest import make_settings, site_files
from .factories import build_logged_dataset, send, start_conversation
from .upstream_server import serving

# Symbols that only an emoji font draws: on a machine without one they show as empty boxes.
EMOJI = re.compile("[\u2300-\u23ff\u2600-\u27bf\u2b00-\u2bff\ufe0f\U0001f000-\U0001faff]")
FORMATTED_ENTRY = """# Replies with Markdown, as a model writes them

## Quokka formatting reply
keywords: quokka formatting, quokka

Do this *first*:

- Open **Settings > Exports**
- Run `acme export --all` again

1. Check [status](https://status.acme.example/(eu))
2. Write to <support@acme.example>

## Zebra payload reply
keywords: zebra payload, zebra

Try <img src=x onerror=window.__pwned=1> and [click](javascript:alert(1)) \
or ![tracker](https://evil.example/pixel.png)
"""


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert match, "every form carries a CSRF token"
    return match.group(1)


async def sign_in(client: httpx.AsyncClient, runtime: Runtime) -> None:
    form = await client.get("/admin/login")
    response = await client.post("/admin/login", data={"token": runtime.admin_token, "csrf": csrf_of(form.text),
                                                       "next": "/admin"})
    assert response.status_code == 303 and response.headers["location"] == "/admin"


async def test_pages_redirect_to_sign_in_without_a_session(client: httpx.AsyncClient) -> None:
    for path in ["/admin", "/admin/prompts", "/admin/audit", "/admin/conversations/abc"]:
        response = await client.get(path)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/admin/login?next=")


async def test_sign_in_sets_a_strict_http_only_session(client: httpx.AsyncClient, runtime: Runtime) -> None:
    form = await client.get("/admin/login")
    wrong = await client.post("/admin/login", data={"token": "nope", "csrf": csrf_of(form.text)})
    no_csrf = await client.post("/admin/login", data={"token": runtime.admin_token, "csrf": "0" * 64})
    right = await client.post("/admin/login", data={"token": runtime.admin_token, "csrf": csrf_of(form.text),
                                                    "next": "https://evil.example/"})

    assert wrong.status_code == 401 and "not the admin token" in wrong.text
    assert no_csrf.status_code == 400
    assert right.status_code == 303 and right.headers["location"] == "/admin", "never an open redirect"
    cookie = right.headers["set-cookie"].lower()
    assert "sb_admin=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    with runtime.log.sessions() as session:
        actions = [e.action for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert actions == ["login"], "a failed sign-in is counted, not written to the audit log"


async def test_inbox_page_filters_and_security_headers(client: httpx.AsyncClient, runtime: Runtime) -> None:
    data = await build_logged_dataset(client, runtime.admin_token)
    await sign_in(client, runtime)

    everything = await client.get("/admin")
    thumbs = await client.get("/admin", params={"view": "thumbs_down"})
    searched = await client.get("/admin", params={"q": "nonprofits"})

    assert everything.status_code == 200
    assert "default-src 'none'" in everything.headers["content-security-policy"]
    assert everything.headers["x-frame-options"] == "DENY"
    # One script, this site's own file; never inline code (the CSP allows only 'self').
    assert re.findall(r"<script[^>]*>", everything.text) == ['<script src="/admin/static/admin-live.js" defer>']
    assert "script-src 'self'" in everything.headers["content-security-policy"]
    assert "unsafe-inline" not in everything.headers["content-security-policy"]
    assert all(f"/admin/conversations/{entry['id']}" in everything.text for entry in data.values())
    assert f"/admin/conversations/{data['disliked']['id']}" in thumbs.text
    assert f"/admin/conversations/{data['liked']['id']}" not in thumbs.text
    assert "Is there a discount for nonprofits?" in searched.text and "reset my password" not in searched.text


async def test_conversation_page_shows_reply_details_and_correction_form_works(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    conversation_id, auth = await start_conversation(client)
    turn = (await send(client, conversation_id, auth, "How do I reset my password?")).json()
    reply_id = turn["reply"]["message_id"]
    await sign_in(client, runtime)

    page = await client.get(f"/admin/conversations/{conversation_id}")
    assert "support@v2" in page.text and "offline" in page.text and " ms" in page.text
    saved = await client.post(f"/admin/messages/{reply_id}/correction",
                              data={"content": "Use Settings > Security > Reset.", "csrf": csrf_of(page.text)})
    forged = await client.post(f"/admin/messages/{reply_id}/correction",
                               data={"content": "evil", "csrf": "f" * 64})
    after = await client.get(f"/admin/conversations/{conversation_id}")

    assert saved.status_code == 303
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "csrf_failed"
    with runtime.log.sessions() as session:
        assert [c.content for c in session.scalars(select(Correction))] == ["Use Settings &gt; Security &gt; Reset."
                                                                           .replace("&gt;", ">")]
    assert "Use Settings &gt; Security &gt; Reset." in after.text, "shown, HTML-escaped"


async def test_review_exclude_reply_and_resolve_forms(client: httpx.AsyncClient, runtime: Runtime) -> None:
    conversation_id, auth = await start_conversation(client)
    turn = (await send(client, conversation_id, auth, "get me a human")).json()
    assert turn["escalated"] is True
    first = (await send(client, str(conversation_id), auth, "hello?")).json()
    await sign_in(client, runtime)
    csrf = csrf_of((await client.get(f"/admin/conversations/{conversation_id}")).text)

    replied = await client.post(f"/admin/conversations/{conversation_id}/reply",
                                data={"content": "Hi, Dana here. How can I help?", "author": "Dana", "csrf": csrf})
    excluded = await client.post(f"/admin/conversations/{conversation_id}/exclude",
                                 data={"excluded": "true", "csrf": csrf})
    resolved = await client.post(f"/admin/conversations/{conversation_id}/resolve", data={"csrf": csrf})

    assert replied.status_code == excluded.status_code == resolved.status_code == 303
    transcript = (await client.get(f"/api/conversations/{conversation_id}", headers=auth)).json()
    assert transcript["status"] == "resolved"
    assert transcript["messages"][-1]["role"] == "agent"
    with runtime.log.sessions() as session:
        agent = session.scalars(select(Message).where(Message.role == "agent")).one()
    # The bot only sent fixed texts (handoff, acknowledgement): there is no answer to correct.
    assert first["reply"]["content"] == runtime.settings.escalated_ack_reply
    assert agent.author == "Dana" and agent.corrects_id is None
    assert runtime.log.get_conversation(conversation_id).exclude_from_training is True


async def test_prompt_pages(client: httpx.AsyncClient, runtime: Runtime) -> None:
    await sign_in(client, runtime)

    listing = await client.get("/admin/prompts")
    one = await client.get("/admin/prompts/support@v1")
    diff = await client.get("/admin/prompts/diff", params={"a": "support@v1", "b": "support@v2"})
    missing = await client.get("/admin/prompts/support@v7")

    assert "support@v1" in listing.text and "support@v2" in listing.text and "production" in listing.text
    assert "You are a helpful support agent for Acme Analytics." in one.text and "sha256" in one.text
    assert '<span class="add">+' in diff.text and '<span class="del">-' in diff.text
    assert missing.status_code == 404


@pytest.mark.parametrize("cookie", ["garbage", ""])
async def test_tampered_session_is_refused(client: httpx.AsyncClient, cookie: str) -> None:
    client.cookies.set("sb_admin", cookie, path="/admin")

    assert (await client.get("/admin")).status_code == 303
    assert (await client.post("/admin/logout", data={"csrf": "x"})).status_code == 401


def byline_of(page: str, message_id: int) -> str:
    """The header of one message on the conversation page, as text."""
    match = re.search(rf'id="m{message_id}">\s*<div class="meta">(.*?)</div>', page, re.S)
    assert match, f"message {message_id} is on the page"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", match.group(1))).split())


async def test_headers_say_once_who_wrote_each_message(client: httpx.AsyncClient, runtime: Runtime) -> None:
    conversation_id, auth = await start_conversation(client)
    answered = (await send(client, conversation_id, auth, "How do I reset my password?")).json()
    handed = (await send(client, conversation_id, auth, "get me a human")).json()
    await sign_in(client, runtime)
    csrf = csrf_of((await client.get(f"/admin/conversations/{conversation_id}")).text)
    await client.post(f"/admin/conversations/{conversation_id}/reply",
                      data={"content": "Hi, Dana here.", "author": "Dana", "csrf": csrf})
    page = (await client.get(f"/admin/conversations/{conversation_id}")).text
    with runtime.log.sessions() as session:
        agent_id = session.scalars(select(Message.id).where(Message.role == "agent")).one()

    offline = byline_of(page, answered["reply"]["message_id"])
    handoff = byline_of(page, handed["reply"]["message_id"])
    agent = byline_of(page, agent_id)
    visitor = byline_of(page, answered["message_id"])
    assert "offline provider (knowledge base)" in offline and offline.count("offline") == 1, offline
    assert "fixed handoff text, no model" in handoff and "offline" not in handoff, handoff
    assert agent.startswith("Dana #") and "human agent" in agent and "offline" not in agent, agent
    assert visitor.startswith("Customer #") and "offline" not in visitor, visitor


async def test_headers_name_the_hosted_model_and_call_a_failed_reply_a_fixed_text(
    hosted_client: httpx.AsyncClient, hosted_runtime: Runtime, model_mock: respx.MockRouter
) -> None:
    failure = httpx.Response(500, json={"error": {"message": "boom"}})
    model_mock.post("/chat/completions").mock(side_effect=[
        fake_model.completion("**Clear** your cache:\n\n- Settings\n- Privacy"), failure, failure])
    conversation_id, auth = await start_conversation(hosted_client)
    answered = (await send(hosted_client, conversation_id, auth, "My dashboard takes forever to load")).json()
    failed = (await send(hosted_client, conversation_id, auth, "Export to CSV fails with an error")).json()
    await sign_in(hosted_client, hosted_runtime)

    page = (await hosted_client.get(f"/admin/conversations/{conversation_id}")).text

    hosted = byline_of(page, answered["reply"]["message_id"])
    fixed = byline_of(page, failed["reply"]["message_id"])
    assert "openai · gpt-4o-mini (reported gpt-4o-mini-2024-07-18)" in hosted, hosted
    assert hosted.count("gpt-4o-mini ") == 1, "the model is named once, its reported name once"
    assert "fixed text: openai · gpt-4o-mini did not answer" in fixed, fixed
    assert "<strong>Clear</strong> your cache" in page and "<li>Privacy</li>" in page, "Markdown rendered"


@dataclass
class AdminSite:
    """The service on a real port, with one conversation: formatted and hostile bot replies, a thumbs-down."""

    base: str
    runtime: Runtime
    conversation_id: str
    formatted_id: int
    hostile_id: int
    agent_id: int


@pytest.fixture(scope="module")
def admin_site(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[AdminSite]:
    """The real service (offline provider, knowledge that answers with Markdown and with payloads)."""
    tmp = tmp_path_factory.mktemp("admin")
    url, knowledge = site_files(tmp, sqlite_template, {"zz-formatted.md": FORMATTED_ENTRY})
    runtime = Runtime.build(make_settings(tmp, url, knowledge_dir=knowledge))
    admin = {"Authorization": f"Bearer {runtime.admin_token}"}
    with serving(create_app(runtime=runtime)) as base, httpx.Client(base_url=base, timeout=10) as http:
        started = http.post("/api/conversations").json()
        conversation_id, auth = started["conversation_id"], {"Authorization": f"Bearer {started['token']}"}
        path = f"/api/conversations/{conversation_id}/messages"
        formatted = http.post(path, headers=auth, json={"content": "quokka formatting"}).json()["reply"]
        hostile = http.post(path, headers=auth, json={"content": "zebra payload **please**"}).json()["reply"]
        rated = http.post(f"{path}/{hostile['message_id']}/feedback", headers=auth, json={"rating": "down"})
        agent = http.post(f"/admin/api/conversations/{conversation_id}/messages", headers=admin,
                          json={"content": "**Dana** here: see [the docs](https://acme.example/docs)",
                                "author": "Dana"})
        assert rated.status_code == 200 and agent.status_code == 201, (rated.text, agent.text)
        yield AdminSite(base, runtime, conversation_id, formatted["message_id"], hostile["message_id"],
                        agent.json()["id"])


@pytest.fixture
def reviewer(browser: Browser, admin_site: AdminSite) -> Iterator[Page]:
    """A browser tab signed in through the sign-in form; records every URL the pages ask for."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    tab = context.new_page()
    tab.goto(admin_site.base + "/admin/login")
    tab.get_by_label("Admin token").fill(admin_site.runtime.admin_token)
    tab.get_by_role("button", name="Sign in").click()
    expect(tab.get_by_role("heading", name="Conversations")).to_be_visible()
    yield tab
    context.close()


def test_thumbs_down_marker_is_an_svg_icon_not_an_emoji(reviewer: Page, admin_site: AdminSite) -> None:
    for url in ["/admin", f"/admin/conversations/{admin_site.conversation_id}"]:
        reviewer.goto(admin_site.base + url)

        marker = reviewer.get_by_role("img", name="thumbs down")
        expect(marker).to_have_count(1)
        expect(marker).to_be_visible()
        assert marker.evaluate("element => element.namespaceURI + ' ' + element.localName") == \
            "http://www.w3.org/2000/svg svg"
        box = marker.bounding_box()
        assert box is not None and box["width"] >= 8 and box["height"] >= 8, f"drawn at a readable size: {box}"
        emoji = sorted({f"U+{ord(c):04X}" for c in EMOJI.findall(reviewer.content())})
        assert emoji == [], f"{url} depends on an emoji font for {emoji}"


def test_bot_reply_markdown_renders_and_hostile_markup_stays_inert(reviewer: Page, admin_site: AdminSite) -> None:
    requested: list[str] = []
    reviewer.on("request", lambda request: requested.append(request.url))
    reviewer.goto(f"{admin_site.base}/admin/conversations/{admin_site.conversation_id}")

    formatted = reviewer.locator(f"#m{admin_site.formatted_id} .content")
    hostile = reviewer.locator(f"#m{admin_site.hostile_id} .content")
    agent = reviewer.locator(f"#m{admin_site.agent_id} .content")
    visitor = reviewer.locator("article.user .content").last
    expect(formatted.locator("strong")).to_have_text(["Quokka formatting reply", "Settings > Exports"])
    expect(formatted.locator("em")).to_have_text("first")
    expect(formatted.locator("ul > li")).to_have_count(2)
    expect(formatted.locator("ol > li")).to_have_count(2)
    expect(formatted.locator("code")).to_have_text("acme export --all")
    status = formatted.get_by_role("link", name="status")
    expect(status).to_have_attribute("href", "https://status.acme.example/(eu)")
    expect(status).to_have_attribute("rel", LINK_REL)
    expect(formatted.get_by_role("link", name="support@acme.example")).to_have_attribute(
        "href", "mailto:support@acme.example")
    expect(agent.locator("strong")).to_have_text("Dana")
    expect(agent.get_by_role("link", name="the docs")).to_have_attribute("rel", LINK_REL)
    expect(visitor).to_have_text("zebra payload **please**")

    expect(hostile).to_contain_text("<img src=x onerror=window.__pwned=1>")
    expect(hostile).to_contain_text("[click](javascript:alert(1))")
    expect(hostile.get_by_role("link", name="tracker")).to_have_attribute("href", "https://evil.example/pixel.png")
    expect(reviewer.locator("main img")).to_have_count(0)
    expect(reviewer.locator("a[href^='javascript:' i]")).to_have_count(0)
    assert reviewer.evaluate("() => window.__pwned") is None
    assert not [url for url in requested if "evil.example" in url or url.endswith("/x")], requested
