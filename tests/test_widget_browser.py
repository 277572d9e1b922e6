"""The chat widget in a real browser, embedded on a customer's page served from another origin."""

from __future__ import annotations

import html
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Dialog, Locator, Page, Route, expect

from service.api import create_app
from service.auth import user_hash
from service.runtime import Runtime

from .conftest import make_settings, site_files
from .upstream_server import serving

IDENTITY_SECRET = "identity-secret-0123456789"
MAX_MESSAGE_CHARS = 300
CLOCK_START = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)  # where a test's fake page clock starts
GREETING = "Hi! Ask me anything about Acme Analytics."
CSV_QUESTION = "Export to CSV fails with an error"
CSV_TITLE = "CSV export fails with an error"
XSS_ENTRY = """# Payloads a bot reply must never run

## Zebra payload reply
keywords: zebra payload, zebra

Try <img src=x onerror=window.__pwned=1> and <script>window.__pwned=2</script> then [click](javascript:alert(1)) \
or read [the docs](https://acme.example/docs). ![tracker](https://evil.example/pixel.png)

## Quokka formatting reply
keywords: quokka formatting, quokka

Do this *first*:

- Open **Settings > Exports**
- Run `acme export --all` again

1. Check [status](https://status.acme.example/(eu))
2. Write to support@acme.example

```
acme export --since 2024-01-01
```
"""
HOSTILE_CSS = """<style>
* { color: red !important; font-size: 40px !important; font-family: serif !important; line-height: 3 !important;
    letter-spacing: 4px !important; text-transform: uppercase !important; box-sizing: content-box !important; }
button, textarea, input { background: lime !important; padding: 30px !important; border: 5px solid black !important;
    border-radius: 0 !important; width: 300px !important; height: 90px !important; }
p, div { margin: 50px !important; } svg { display: none !important; }
</style>"""


def _page(service: str, attributes: dict[str, str] | None = None, head: str = "", widget: bool = True) -> str:
    """A customer's page embedding the widget with one script tag, as the README shows."""
    attrs = {"data-title": "Acme Analytics", "data-greeting": GREETING, "data-poll-interval": "300",
             **(attributes or {})}
    tag = " ".join(f'{name}="{html.escape(value)}"' for name, value in attrs.items())
    script = f'<script src="{service}/widget.js" async {tag}></script>' if widget else ""
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Customer page</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">{head}</head>'
            f'<body><h1>Customer site</h1><p id="host-text">Host page text</p>{script}</body></html>')


class HostSite:
    """A customer's web site on its own origin (a port of its own), serving the pages a test set up."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the name http.server calls
                body = pages.get(self.path.split("?")[0])
                if body is None:
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # quiet: no access log in test output
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Service:
    """The running service and the two customer sites: one allowed by CORS, one not."""

    base: str
    runtime: Runtime
    site: HostSite
    stranger: HostSite

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Call the admin API with the admin token."""
        headers = {"Authorization": f"Bearer {self.runtime.admin_token}"}
        return httpx.request(method, f"{self.base}/admin/api{path}", headers=headers, timeout=10, **kwargs)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Service]:
    """The real service (offline provider, a knowledge entry carrying XSS payloads) on a real port."""
    tmp = tmp_path_factory.mktemp("widget")
    url, knowledge = site_files(tmp, sqlite_template, {"zz-payloads.md": XSS_ENTRY})
    site, stranger = HostSite(), HostSite()
    settings = make_settings(tmp, url, knowledge_dir=knowledge,
                             allowed_origins=[site.origin], identity_secret=IDENTITY_SECRET,
                             max_message_chars=MAX_MESSAGE_CHARS)
    runtime = Runtime.build(settings)
    try:
        with serving(create_app(runtime=runtime)) as base:
            site.pages.update({
                "/": _page(base),
                "/plain.html": _page(base, widget=False),
                "/hostile.html": _page(base, head=HOSTILE_CSS),
                "/signed-in.html": _page(base, {"data-user-id": "user-42",
                                                "data-user-hash": user_hash(IDENTITY_SECRET, "user-42")},
                                         head='<script src="/config.js"></script>'),
                "/forged.html": _page(base, {"data-user-id": "user-42", "data-user-hash": "0" * 64}),
            })
            site.pages["/config.js"] = 'window.SupportBotConfig = {context: {plan: "pro"}};'
            # A page with a long title and a big context: more than the service's 4 KB of metadata.
            site.pages["/crowded.html"] = _page(base, {"data-context": json.dumps(
                {f"k{n:02d}": "é" * 400 for n in range(20)})}).replace("Customer page", "T" * 3000)
            stranger.pages["/"] = _page(base)
            yield Service(base, runtime, site, stranger)
    finally:
        site.close()
        stranger.close()



def open_chat(page: Page, url: str) -> None:
    """Load a page and open the chat with the launcher bubble."""
    page.goto(url)
    page.get_by_role("button", name="Open support chat").click()
    expect(page.get_by_role("dialog", name="Acme Analytics")).to_be_visible()


def send(page: Page, text: str) -> None:
    """Type a message and press Enter."""
    box = page.get_by_role("textbox", name="Message")
    box.fill(text)
    box.press("Enter")


def replies(page: Page) -> Locator:
    """The bot replies the service has stored (they carry a message id)."""
    return page.locator(".sb-msg--assistant[data-id]")


def conversation_id(page: Page) -> str:
    """The current conversation, through the public window.SupportBot API."""
    value = page.evaluate("() => window.SupportBot.getConversationId()")
    assert isinstance(value, str)
    return value


def wait_until(page: Page, condition: Callable[[], bool]) -> None:
    """Let Playwright dispatch events (route handlers) until `condition` holds."""
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "condition not met in 10 s"
        page.wait_for_timeout(20)


def wait_for_animations_to_end(element: Locator) -> None:
    """Wait until the element's CSS transitions and animations have ended, so its box is the final one."""
    element.page.wait_for_function(
        "(el) => el.getAnimations().every((a) => a.playState === 'finished' || a.playState === 'idle')",
        arg=element.element_handle())


def test_message_is_answered_by_a_streamed_reply(page: Page, service: Service) -> None:
    open_chat(page, service.site.origin + "/")

    with page.expect_response(lambda r: r.url.endswith("/messages") and r.request.method == "POST") as sent:
        send(page, CSV_QUESTION)

    reply = replies(page).last
    expect(reply.locator("strong")).to_have_text(CSV_TITLE)
    expect(page.locator(".sb-msg--user")).to_have_text(f"You: {CSV_QUESTION}")
    expect(page.get_by_role("status")).to_contain_text(f"Acme Analytics: {CSV_TITLE}")
    expect(page.get_by_role("textbox", name="Message")).to_have_value("")
    assert sent.value.request.headers["accept"] == "text/event-stream"
    assert sent.value.headers["content-type"].startswith("text/event-stream")


def test_typing_indicator_shows_until_the_reply_arrives(page: Page, service: Service) -> None:
    held: list[Route] = []
    open_chat(page, service.site.origin + "/")
    page.route("**/messages", lambda route: held.append(route))

    send(page, CSV_QUESTION)
    typing = page.get_by_role("img", name="Typing…")
    expect(typing).to_be_visible()
    wait_until(page, lambda: bool(held))
    held[0].continue_()

    expect(replies(page).last.locator("strong")).to_have_text(CSV_TITLE)
    expect(typing).to_have_count(0)


def test_broken_stream_falls_back_to_the_json_endpoint_with_the_same_message_id(
    page: Page, service: Service
) -> None:
    streamed: list[Any] = []
    plain: list[Any] = []

    def break_the_stream(route: Route) -> None:
        if route.request.headers.get("accept") == "text/event-stream":
            streamed.append(route.request.post_data_json)
            route.fulfill(status=200, body='event: delta\ndata: {"text": "Half an ans"}\n\n',
                          headers={"Content-Type": "text/event-stream",
                                   "Access-Control-Allow-Origin": service.site.origin})
        else:
            plain.append(route.request.post_data_json)
            route.continue_()

    open_chat(page, service.site.origin + "/")
    page.route("**/messages", break_the_stream)
    send(page, CSV_QUESTION)

    expect(replies(page).last.locator("strong")).to_have_text(CSV_TITLE)
    assert len(streamed) == len(plain) == 1
    assert plain[0]["client_message_id"] == streamed[0]["client_message_id"]
    expect(page.get_by_role("alert")).to_be_hidden()


def test_conversation_survives_reload_and_other_tabs_until_a_new_one_is_started(
    page: Page, service: Service
) -> None:
    open_chat(page, service.site.origin + "/")
    send(page, CSV_QUESTION)
    expect(replies(page)).to_have_count(1)
    first = conversation_id(page)

    page.reload()
    log = page.get_by_role("log", name="Conversation")
    expect(page.get_by_role("dialog", name="Acme Analytics")).to_be_visible()  # it stays open in this tab
    expect(log).to_contain_text(CSV_QUESTION)
    expect(replies(page).last.locator("strong")).to_have_text(CSV_TITLE)
    expect(replies(page).last.get_by_role("button", name="Helpful", exact=True)).to_be_visible()

    other_tab = page.context.new_page()
    open_chat(other_tab, service.site.origin + "/")
    expect(other_tab.get_by_role("log", name="Conversation")).to_contain_text(CSV_QUESTION)
    other_tab.close()

    page.get_by_role("button", name="New conversation").click()
    expect(log).not_to_contain_text(CSV_QUESTION)
    expect(log).to_contain_text(GREETING)
    send(page, "How do I reset my password?")
    expect(replies(page)).to_have_count(1)
    assert conversation_id(page) != first


def test_talk_to_a_human_shows_the_handoff_then_the_agents_reply(page: Page, service: Service) -> None:
    open_chat(page, service.site.origin + "/")
    send(page, CSV_QUESTION)
    expect(replies(page)).to_have_count(1)

    page.get_by_role("button", name="Talk to a human").click()
    log = page.get_by_role("log", name="Conversation")
    expect(log).to_contain_text(service.runtime.settings.handoff_reply)
    expect(page.get_by_role("button", name="Talk to a human")).to_be_hidden()
    email = page.get_by_role("textbox", name="Want a reply by e-mail too? (optional)")
    expect(email).to_be_focused()
    email.fill("not an address")
    email.press("Enter")
    expect(email).to_have_attribute("aria-invalid", "true")
    email.fill("jane@example.com")
    email.press("Enter")
    expect(page.get_by_text("We will also reply to jane@example.com")).to_be_visible()

    cid = conversation_id(page)
    detail = service.admin("GET", f"/conversations/{cid}").json()
    assert detail["status"] == "escalated"
    assert [e["contact"] for e in detail["escalations"]] == ["jane@example.com"]
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_be_hidden()
    posted = service.admin("POST", f"/conversations/{cid}/messages",
                           json={"content": "Hi, Dana here: I re-ran your export and it works now.", "author": "Dana"})
    assert posted.status_code == 201, posted.text

    page.get_by_role("button", name="Open support chat (1 unread)").click()  # arrived while the panel was closed
    agent = page.locator(".sb-msg--agent")
    expect(agent).to_contain_text("Dana here: I re-ran your export")
    expect(agent.locator(".sb-author")).to_have_text("Dana")  # the person's name, not the team's
    expect(page.get_by_role("status")).to_contain_text("Dana: Hi, Dana here")


def test_thumbs_up_on_a_reply_is_stored_as_feedback(page: Page, service: Service) -> None:
    open_chat(page, service.site.origin + "/")
    send(page, CSV_QUESTION)
    reply = replies(page).last
    helpful = reply.get_by_role("button", name="Helpful", exact=True)

    helpful.click()

    expect(helpful).to_have_attribute("aria-pressed", "true")
    expect(reply.get_by_role("button", name="Not helpful")).to_have_attribute("aria-pressed", "false")
    message_id = int(reply.get_attribute("data-id") or 0)
    detail = service.admin("GET", f"/conversations/{conversation_id(page)}").json()
    assert {m["id"]: m["feedback"] for m in detail["messages"]}[message_id] == "up"


def test_markup_and_script_links_in_a_bot_reply_are_shown_as_text_and_run_nothing(
    page: Page, service: Service
) -> None:
    dialogs: list[str] = []
    requested: list[str] = []

    def refuse(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", refuse)
    page.on("request", lambda request: requested.append(request.url))
    open_chat(page, service.site.origin + "/")

    send(page, "zebra payload")

    reply = replies(page).last
    expect(reply).to_contain_text("<img src=x onerror=window.__pwned=1>")
    expect(reply).to_contain_text("<script>window.__pwned=2</script>")
    expect(reply.get_by_role("link", name="the docs")).to_have_attribute("href", "https://acme.example/docs")
    expect(reply.get_by_role("link", name="the docs")).to_have_attribute("rel", re.compile("noopener"))
    expect(reply.get_by_role("link", name="click")).to_have_count(0)
    reply.get_by_text("click").click()
    assert page.locator("img").count() == 0  # CSS locators reach into the open shadow root
    assert page.locator("script:not([src])").count() == 0
    assert page.evaluate("() => window.__pwned") is None
    assert dialogs == []
    assert not [url for url in requested if "evil.example" in url]


def test_bot_markdown_is_shown_as_lists_code_bold_and_links(page: Page, service: Service) -> None:
    open_chat(page, service.site.origin + "/")

    send(page, "quokka formatting")

    reply = replies(page).last
    expect(reply.locator("strong").first).to_have_text("Quokka formatting reply")
    expect(reply.locator("em")).to_have_text("first")
    expect(reply.locator("ul > li")).to_have_text(["Open Settings > Exports", "Run acme export --all again"])
    expect(reply.locator("ul strong")).to_have_text("Settings > Exports")
    expect(reply.locator("li code")).to_have_text("acme export --all")
    expect(reply.locator("ol > li")).to_have_count(2)
    expect(reply.get_by_role("link", name="status")).to_have_attribute("href", "https://status.acme.example/(eu)")
    expect(reply.get_by_role("link", name="status")).to_have_attribute("target", "_blank")
    expect(reply.locator("pre > code")).to_have_text("acme export --since 2024-01-01")


def test_page_on_an_origin_outside_the_allow_list_is_refused_and_shows_an_error(
    page: Page, service: Service
) -> None:
    open_chat(page, service.stranger.origin + "/")

    send(page, "Hello from a site that is not allowed")

    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("can't reach support")
    expect(alert.get_by_role("button", name="Retry")).to_be_enabled()
    expect(page.get_by_role("textbox", name="Message")).to_have_value("Hello from a site that is not allowed")
    expect(page.locator(".sb-msg--user")).to_have_count(0)
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    refused = httpx.options(f"{service.base}/api/conversations", headers={"Origin": service.stranger.origin,
                                                                          **preflight})
    allowed = httpx.options(f"{service.base}/api/conversations", headers={"Origin": service.site.origin,
                                                                         **preflight})
    assert "access-control-allow-origin" not in refused.headers
    assert allowed.headers["access-control-allow-origin"] == service.site.origin


WIDGET_STYLES = """() => {
  const root = document.querySelector("supportbot-widget").shadowRoot;
  const picked = {};
  for (const selector of [".sb-launcher", ".sb-panel", ".sb-title", ".sb-greeting .sb-bubble", ".sb-greeting p",
                          ".sb-input", ".sb-send", ".sb-human", ".sb-icon"]) {
    const element = root.querySelector(selector);
    const style = getComputedStyle(element);  // computed sizes: unlike boxes, not caught mid-transition
    picked[selector] = {
      color: style.color, background: style.backgroundColor, fontSize: style.fontSize, fontFamily: style.fontFamily,
      lineHeight: style.lineHeight, letterSpacing: style.letterSpacing, textTransform: style.textTransform,
      padding: style.padding, margin: style.margin, border: style.border, radius: style.borderRadius,
      display: style.display, width: style.width, height: style.height, right: style.right, bottom: style.bottom,
    };
  }
  return picked;
}"""
HOST_STYLES = """() => {
  const style = getComputedStyle(document.getElementById("host-text"));
  return {color: style.color, fontSize: style.fontSize, fontFamily: style.fontFamily, margin: style.margin,
          leakedGlobals: ["DOMPurify", "module", "exports"].filter((name) => name in window)};
}"""


def test_host_page_css_does_not_change_the_widget_and_the_widget_leaks_nothing(
    page: Page, service: Service
) -> None:
    page.goto(service.site.origin + "/plain.html")
    host_alone = page.evaluate(HOST_STYLES)
    open_chat(page, service.site.origin + "/")
    plain = page.evaluate(WIDGET_STYLES)
    host_with_widget = page.evaluate(HOST_STYLES)

    hostile_page = page.context.new_page()
    open_chat(hostile_page, service.site.origin + "/hostile.html")
    hostile = hostile_page.evaluate(WIDGET_STYLES)

    assert hostile_page.evaluate(HOST_STYLES)["color"] == "rgb(255, 0, 0)"  # the hostile rules are in force
    assert hostile == plain
    assert plain[".sb-greeting p"]["fontSize"] == "14px"
    assert host_with_widget == host_alone
    assert host_alone["leakedGlobals"] == []


def test_rate_limited_message_is_kept_and_sent_again_after_retry_after(page: Page, service: Service) -> None:
    # The page's clock stands still from the refusal on, so the one second of Retry-After is a state the test
    # steps through, not a window it has to catch on a busy machine.
    page.clock.install(time=CLOCK_START)
    open_chat(page, service.site.origin + "/")
    page.clock.pause_at(CLOCK_START + timedelta(hours=1))
    page.route("**/messages", lambda route: route.fulfill(
        status=429, body=json.dumps({"error": {"code": "rate_limited", "message": "slow down"}}),
        headers={"Content-Type": "application/json", "Retry-After": "1",
                 "Access-Control-Allow-Origin": service.site.origin,
                 "Access-Control-Expose-Headers": "Retry-After"}), times=1)

    send(page, CSV_QUESTION)

    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("sending messages too quickly")
    expect(page.get_by_role("textbox", name="Message")).to_have_value(CSV_QUESTION)
    retry = alert.get_by_role("button", name=re.compile("Retry"))
    expect(retry).to_be_disabled()
    expect(retry).to_have_text("Retry in 1 s")
    page.clock.run_for(999)
    expect(retry).to_be_disabled()
    page.clock.run_for(1)
    expect(retry).to_be_enabled()
    page.clock.resume()
    retry.click()
    expect(replies(page).last.locator("strong")).to_have_text(CSV_TITLE)
    expect(page.get_by_role("textbox", name="Message")).to_have_value("")
    expect(alert).to_be_hidden()


def test_too_long_message_is_refused_and_stays_in_the_box(page: Page, service: Service) -> None:
    text = "My dashboard is slow. " * (MAX_MESSAGE_CHARS // 20)
    open_chat(page, service.site.origin + "/")

    send(page, text)

    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Your message is too long")
    expect(alert.get_by_role("button")).to_have_count(0)  # retrying the same text cannot help
    expect(page.get_by_role("textbox", name="Message")).to_have_value(text)
    expect(page.locator(".sb-msg--user")).to_have_count(0)


def test_widget_is_usable_with_the_keyboard_alone(page: Page, service: Service) -> None:
    page.goto(service.site.origin + "/")
    launcher = page.get_by_role("button", name="Open support chat")
    expect(launcher).to_be_visible()
    box = page.get_by_role("textbox", name="Message")

    page.keyboard.press("Tab")
    expect(launcher).to_be_focused()
    page.keyboard.press("Enter")
    expect(box).to_be_focused()
    page.keyboard.type("Export to CSV")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("fails with an error")
    expect(box).to_have_value("Export to CSV\nfails with an error")
    expect(page.locator(".sb-msg--user")).to_have_count(0)
    page.keyboard.press("Enter")

    expect(replies(page).last.locator("strong")).to_have_text(CSV_TITLE)
    expect(page.get_by_role("status")).to_contain_text(CSV_TITLE)
    expect(box).to_be_focused()
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_be_hidden()
    expect(page.get_by_role("button", name="Open support chat")).to_be_focused()


def test_chat_fills_a_360px_phone_screen(browser: Browser, service: Service) -> None:
    context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True)
    phone = context.new_page()
    try:
        open_chat(phone, service.site.origin + "/")
        send(phone, CSV_QUESTION)
        expect(replies(phone).last.locator("strong")).to_have_text(CSV_TITLE)

        dialog = phone.get_by_role("dialog", name="Acme Analytics")
        wait_for_animations_to_end(dialog)
        assert dialog.bounding_box() == {"x": 0, "y": 0, "width": 360, "height": 740}
        for control in (phone.get_by_role("textbox", name="Message"), phone.get_by_role("button", name="Send message"),
                        phone.get_by_role("button", name="Close chat"), replies(phone).last):
            box = control.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 360, box
        assert phone.evaluate("() => document.documentElement.scrollWidth") <= 360
        phone.get_by_role("button", name="Close chat").click()
        expect(phone.get_by_role("button", name="Open support chat")).to_be_visible()
    finally:
        context.close()


def test_signed_in_visitor_is_verified_and_the_page_context_is_kept(page: Page, service: Service) -> None:
    url = service.site.origin + "/signed-in.html"
    open_chat(page, url)

    send(page, CSV_QUESTION)
    expect(replies(page)).to_have_count(1)

    visitor = service.admin("GET", f"/conversations/{conversation_id(page)}").json()["visitor"]
    assert visitor == {"url": url, "title": "Customer page", "locale": "en", "user_id": "user-42",
                       "plan": "pro", "verified": True}


def test_a_crowded_page_still_starts_a_conversation_with_trimmed_metadata(page: Page, service: Service) -> None:
    open_chat(page, service.site.origin + "/crowded.html")

    send(page, CSV_QUESTION)
    expect(replies(page)).to_have_count(1)

    visitor = service.admin("GET", f"/conversations/{conversation_id(page)}").json()["visitor"]
    assert visitor["url"].endswith("/crowded.html") and visitor["title"] == "T" * 300
    assert len(json.dumps(visitor, ensure_ascii=False).encode()) <= service.runtime.settings.max_metadata_bytes
    assert 1 <= sum(key.startswith("k") for key in visitor) < 20, "context kept while it fits, the rest left out"


def test_wrong_user_hash_is_refused_and_the_message_kept(page: Page, service: Service) -> None:
    open_chat(page, service.site.origin + "/forged.html")

    send(page, CSV_QUESTION)

    expect(page.get_by_role("alert")).to_contain_text("couldn't verify your account")
    expect(page.get_by_role("textbox", name="Message")).to_have_value(CSV_QUESTION)


def test_demo_page_runs_the_widget_under_its_strict_csp(page: Page, service: Service) -> None:
    page.add_init_script("window.__csp = []; document.addEventListener('securitypolicyviolation', "
                         "(e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));")
    page.goto(service.base + "/")

    page.get_by_role("button", name="Ask our support").click()  # a host element with data-supportbot-open
    expect(page.get_by_role("dialog", name="Acme Analytics")).to_be_visible()
    send(page, CSV_QUESTION)
    expect(replies(page).last.locator("strong")).to_have_text(CSV_TITLE)
    page.evaluate("() => window.SupportBot.close()")
    expect(page.get_by_role("dialog")).to_be_hidden()

    launcher = page.get_by_role("button", name="Open support chat")
    assert launcher.evaluate("(el) => getComputedStyle(el).borderRadius") == "50%"  # the widget's CSS applied
    assert page.evaluate("() => window.__csp") == []
