"""CSAT in a real browser: the widget asks once for a 1-5 rating, after an answer, and agents see it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from service.api import create_app
from service.runtime import Runtime

from .conftest import make_settings, site_files
from .test_widget_browser import CSV_QUESTION, CSV_TITLE, HostSite, Service, _page, conversation_id, open_chat, send
from .upstream_server import serving

PROMPT = "How would you rate this conversation?"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Service]:
    """The real service (offline provider) on a real port, and a customer's site on another origin."""
    tmp = tmp_path_factory.mktemp("rating")
    url, knowledge = site_files(tmp, sqlite_template, {})
    site, stranger = HostSite(), HostSite()
    runtime = Runtime.build(make_settings(tmp, url, knowledge_dir=knowledge, allowed_origins=[site.origin]))
    try:
        with serving(create_app(runtime=runtime)) as base:
            site.pages["/"] = _page(base)
            yield Service(base, runtime, site, stranger)
    finally:
        site.close()
        stranger.close()


def answered(page: Page, service: Service) -> None:
    """Open the chat, ask a question and wait for the bot's answer."""
    open_chat(page, service.site.origin + "/")
    send(page, CSV_QUESTION)
    expect(page.locator(".sb-msg--assistant[data-id] strong").last).to_have_text(CSV_TITLE)


def test_closing_after_an_answer_asks_once_and_agents_see_the_rating(page: Page, service: Service) -> None:
    answered(page, service)
    question = page.get_by_role("region", name=PROMPT)
    expect(question).to_have_count(0)

    page.get_by_role("button", name="Close chat").click()

    expect(page.get_by_role("dialog")).to_be_hidden()
    expect(question).to_be_visible()
    send_rating = question.get_by_role("button", name="Send rating")
    expect(send_rating).to_be_disabled()
    question.get_by_role("button", name="4 out of 5").click()
    expect(question.get_by_role("button", name="4 out of 5")).to_have_attribute("aria-pressed", "true")
    question.get_by_role("textbox", name="Anything to add? (optional)").fill("Quick answer, thank you")
    send_rating.click()
    expect(page.get_by_text("Thanks for your rating!")).to_be_visible()

    detail = service.admin("GET", f"/conversations/{conversation_id(page)}").json()
    assert (detail["csat"]["score"], detail["csat"]["comment"]) == (4, "Quick answer, thank you")

    page.reload()
    open_chat(page, service.site.origin + "/")
    expect(page.locator(".sb-msg--assistant[data-id] strong").last).to_have_text(CSV_TITLE)
    page.get_by_role("button", name="Close chat").click()
    expect(page.get_by_role("dialog")).to_be_hidden()
    expect(page.get_by_role("region", name=PROMPT)).to_have_count(0)
    expect(page.get_by_role("button", name="Open support chat")).to_be_focused()


def test_no_question_before_an_answer_and_none_after_a_skip(page: Page, service: Service) -> None:
    open_chat(page, service.site.origin + "/")
    page.get_by_role("button", name="Close chat").click()
    expect(page.get_by_role("dialog")).to_be_hidden()
    expect(page.get_by_role("region", name=PROMPT)).to_have_count(0)

    page.get_by_role("button", name="Open support chat").click()
    send(page, CSV_QUESTION)
    expect(page.locator(".sb-msg--assistant[data-id] strong").last).to_have_text(CSV_TITLE)
    page.keyboard.press("Escape")
    question = page.get_by_role("region", name=PROMPT)
    question.get_by_role("button", name="No thanks").click()
    expect(question).to_have_count(0)

    page.reload()
    open_chat(page, service.site.origin + "/")
    expect(page.locator(".sb-msg--assistant[data-id] strong").last).to_have_text(CSV_TITLE)
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_be_hidden()
    expect(page.get_by_role("region", name=PROMPT)).to_have_count(0)
    assert service.admin("GET", f"/conversations/{conversation_id(page)}").json()["csat"] is None


def test_resolution_by_an_agent_asks_in_the_open_chat(page: Page, service: Service) -> None:
    answered(page, service)
    page.get_by_role("button", name="Talk to a human").click()
    expect(page.get_by_role("button", name="Talk to a human")).to_be_hidden()
    cid = conversation_id(page)
    posted = service.admin("POST", f"/conversations/{cid}/messages", json={"content": "Dana here: fixed it."})
    assert posted.status_code == 201, posted.text
    assert service.admin("POST", f"/conversations/{cid}/resolve").status_code == 200

    question = page.get_by_role("dialog").get_by_role("region", name=PROMPT)
    expect(question).to_be_visible()  # the widget polls while a person has the conversation
    expect(question.get_by_role("button", name="1 out of 5")).to_be_focused()
    question.get_by_role("button", name="5 out of 5").click()
    question.get_by_role("button", name="Send rating").click()
    expect(question).to_contain_text("Thanks for your rating!")

    detail = service.admin("GET", f"/conversations/{cid}").json()
    assert (detail["status"], detail["csat"]["score"], detail["csat"]["comment"]) == ("resolved", 5, None)
