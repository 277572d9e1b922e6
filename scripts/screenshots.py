"""Screenshots of the chat widget on the demo page, for the README: `.venv/bin/python scripts/screenshots.py`.

Starts the service (offline provider, a throw-away SQLite database, the repo's knowledge base) on a free
port, drives the machine's Chromium through the demo page and writes docs/widget-closed.png,
widget-open.png, widget-escalated.png and widget-mobile.png.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn
from playwright.sync_api import Browser, Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.api import create_app  # noqa: E402 - after the path set-up, so it runs from a checkout
from service.config import Settings  # noqa: E402
from service.db import upgrade  # noqa: E402
from service.runtime import Runtime  # noqa: E402

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@contextmanager
def running_service(data_dir: Path) -> Iterator[tuple[str, Runtime]]:
    """The service on a free port, answering offline from the repo's knowledge base."""
    database_url = f"sqlite:///{data_dir / 'supportbot.db'}"
    upgrade(database_url)
    settings = Settings(data_dir=data_dir, database_url=database_url, openai_api_key=None,
                        reload_interval=0, _env_file=None)
    runtime = Runtime.build(settings)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(runtime=runtime), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise SystemExit("the service did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", runtime
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def ask(page: Page, text: str) -> None:
    """Send a message and wait for the bot's stored reply."""
    replies = page.locator(".sb-msg--assistant[data-id]")
    before = replies.count()
    box = page.get_by_role("textbox", name="Message")
    box.fill(text)
    box.press("Enter")
    expect(replies).to_have_count(before + 1)


def open_demo(browser: Browser, base: str, width: int, height: int, scale: float = 1) -> Page:
    """The demo page in a fresh visitor's browser, animations off so every shot is settled."""
    context = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=scale,
                                  reduced_motion="reduce", is_mobile=width < 500, has_touch=width < 500)
    page = context.new_page()
    page.goto(base + "/")
    expect(page.get_by_role("button", name="Open support chat")).to_be_visible()
    return page


def open_chat(page: Page) -> None:
    """Open the widget, then move the pointer away so no hover state shows."""
    page.get_by_role("button", name="Open support chat").click()
    page.mouse.move(5, 5)


def shoot(browser: Browser, base: str, runtime: Runtime, out: Path) -> None:
    """Take the four screenshots."""
    page = open_demo(browser, base, 1280, 800)
    page.screenshot(path=out / "widget-closed.png")

    open_chat(page)
    ask(page, "My export file is larger than 100MB and fails")
    page.locator(".sb-msg--assistant[data-id]").last.get_by_role("button", name="Helpful", exact=True).click()
    ask(page, "How do I call the API from Python?")
    page.get_by_role("textbox", name="Message").fill("Thanks! And can I schedule it weekly?")
    page.screenshot(path=out / "widget-open.png")
    page.context.close()

    page = open_demo(browser, base, 1280, 800)
    open_chat(page)
    ask(page, "My dashboard is stuck loading since this morning, I tried everything")
    page.get_by_role("button", name="Talk to a human").click()
    email = page.get_by_role("textbox", name="Want a reply by e-mail too? (optional)")
    email.fill("jane@northwind.example")
    email.press("Enter")
    expect(page.get_by_text("We will also reply to jane@northwind.example")).to_be_visible()
    conversation = page.evaluate("() => window.SupportBot.getConversationId()")
    httpx.post(f"{base}/admin/api/conversations/{conversation}/messages", timeout=10,
               headers={"Authorization": f"Bearer {runtime.admin_token}"},
               json={"content": "Hi Jane, Dana from Acme here. I can see the stuck query on your workspace and "
                                "have restarted it; the dashboard should load within a minute.", "author": "Dana"})
    expect(page.locator(".sb-msg--agent")).to_be_visible()
    page.mouse.move(5, 5)
    page.screenshot(path=out / "widget-escalated.png")
    page.context.close()

    page = open_demo(browser, base, 360, 740, scale=2)
    open_chat(page)
    ask(page, "How do I set up single sign-on with Okta?")
    page.screenshot(path=out / "widget-mobile.png")
    page.context.close()


def main() -> None:
    """Parse the options, start the service and the browser, write the screenshots."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium executable")
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="directory for the PNG files")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, running_service(Path(tmp)) as (base, runtime), \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        try:
            shoot(browser, base, runtime, args.out)
        finally:
            browser.close()
    for name in ("closed", "open", "escalated", "mobile"):
        print(args.out / f"widget-{name}.png")


if __name__ == "__main__":
    main()
