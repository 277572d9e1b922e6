"""Actions through the widget in a real browser: a visitor's order looked up in the team's API, and a cancel
that waits for the visitor's Confirm. The service runs for real with a fake OpenAI-compatible model that
calls tools and answers only from the tool results it is given, and the fake order API (tests/fake_team_api.py).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Locator, Page, Route, expect
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route as StarletteRoute

from service.api import create_app
from service.runtime import Runtime

from .conftest import make_settings, site_files
from .fake_model import chunk, text_chunks
from .fake_team_api import FakeTeamAPI, known_orders, running_team_api
from .test_language_browser import fixed_text, widget_strings
from .test_widget_browser import HostSite, _page, open_chat, replies, send, wait_until
from .upstream_server import serving

ORDERS_TOKEN = "orders-token-Zq81bX"  # the team API's secret: in the action file as ${ORDERS_API_TOKEN}
ORDER_ACTIONS = """
name: get_order_status
description: Look up the shipping status of one of the visitor's orders by its order number.
parameters:
  type: object
  properties:
    order_id: {{type: string, description: "The order number, like A-1042."}}
  required: [order_id]
request:
  method: GET
  url: {api}/orders/{{order_id}}
  headers:
    Authorization: "Bearer ${{ORDERS_API_TOKEN}}"
  timeout: 5
identity: optional
side_effects: false
response:
  fields: [status, carrier, eta]
  max_bytes: 4000
"""
CANCEL_ACTION = """
name: cancel_order
description: Cancel one of the visitor's orders that has not been delivered yet.
parameters:
  type: object
  properties:
    order_id: {{type: string, description: "The order number, like A-1043."}}
  required: [order_id]
request:
  method: POST
  url: {api}/orders/{{order_id}}/cancel
  headers:
    Authorization: "Bearer ${{ORDERS_API_TOKEN}}"
  timeout: 5
identity: optional
side_effects: true
confirm: "Cancel order {{order_id}}"
response:
  fields: [status, refund]
"""
ORDER_ID = re.compile(r"\b(A-\d{4})\b")
ToolCall = dict[str, Any]
HOSTILE_ORDER_ID = '<img src=x onerror="window.__pwned=1">A-1043'


@dataclass
class FakeModel:
    """An OpenAI-compatible chat model that is honest about tools: asked about an order (and offered the tool)
    it calls one; given a `tool` message it answers only from that message's JSON. Every request is kept.
    `hold`: cleared, the answer to a `tool` message waits until it is set again."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    hold: threading.Event = field(default_factory=threading.Event)
    hostile_argument: bool = False  # call cancel_order with markup in the order number

    def __post_init__(self) -> None:
        self.hold.set()

    def reset(self) -> None:
        self.requests.clear()
        self.hold.set()
        self.hostile_argument = False

    def app(self) -> Starlette:
        return Starlette(routes=[StarletteRoute("/v1/chat/completions", self._complete, methods=["POST"])])

    def bodies(self) -> str:
        """Everything the model was ever sent, as one string."""
        return json.dumps(self.requests)

    def offered(self, index: int) -> set[str]:
        """The tool names offered in request `index`."""
        return {tool["function"]["name"] for tool in self.requests[index].get("tools") or []}

    async def _complete(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        messages = body["messages"]
        if messages[-1]["role"] == "tool":
            deadline = asyncio.get_running_loop().time() + 20  # a failed test must not hold the server for ever
            while not self.hold.is_set() and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.02)  # the test looks at the page while the turn is not over
            return _respond(body, _answer_from_tool(messages), None)
        return _respond(body, *self._first_answer(messages, {t["function"]["name"] for t in body.get("tools") or []}))

    def _first_answer(self, messages: list[dict[str, Any]], tools: set[str]) -> tuple[str | None, ToolCall | None]:
        question = next(m["content"] for m in reversed(messages) if m["role"] == "user")
        found = ORDER_ID.search(question)
        if found and re.search(r"cancel|storn", question, re.I) and "cancel_order" in tools:
            order_id = HOSTILE_ORDER_ID if self.hostile_argument else found.group(1)
            return None, _tool_call("cancel_order", {"order_id": order_id})
        if found and "where" in question.lower() and "get_order_status" in tools:
            return None, _tool_call("get_order_status", {"order_id": found.group(1)})
        return f"I was not offered a tool for that (offered: {sorted(tools)}).", None


def _tool_call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"call_{name}", "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


def _answer_from_tool(messages: list[dict[str, Any]]) -> str:
    """The answer to the last tool result, written from its JSON alone."""
    tool = messages[-1]
    calls = {call["id"]: call for m in messages if m["role"] == "assistant" for call in m.get("tool_calls") or []}
    call = calls[tool["tool_call_id"]]["function"]
    order_id = json.loads(call["arguments"]).get("order_id", "?")
    result = json.loads(tool["content"])
    data = result.get("data") or {}
    if call["name"] == "get_order_status" and result["status"] == "ok":
        return f"Order {order_id} is {data['status']}, travelling with {data['carrier']}, expected on {data['eta']}."
    if call["name"] == "cancel_order" and result["status"] == "ok":
        return f"Done: order {order_id} is now {data['status']} (refund: {data['refund']})."
    if result["status"] == "cancelled":
        return f"All right, order {order_id} stays as it is."
    return f"The {call['name']} tool said {result['status']}."


def _respond(body: dict[str, Any], content: str | None, tool_call: dict[str, Any] | None) -> Response:
    """The answer as a JSON completion, or streamed in chunks when the service asked for a stream."""
    model = body.get("model", "gpt-4o-mini")
    usage = {"prompt_tokens": 300, "completion_tokens": 20, "total_tokens": 320}
    if not body.get("stream"):
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if tool_call:
            message["tool_calls"] = [tool_call]
        return JSONResponse({"id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": model,
                             "choices": [{"index": 0, "message": message,
                                          "finish_reason": "tool_calls" if tool_call else "stop"}],
                             "usage": usage})
    if tool_call:
        pieces = [chunk({"role": "assistant", "content": None,
                         "tool_calls": [{"index": 0, **tool_call}]}),
                  chunk({}, finish_reason="tool_calls"), chunk(None, usage=usage), b"data: [DONE]\n\n"]
    else:
        assert content is not None
        words = content.split(" ")
        pieces = text_chunks([w + " " for w in words[:-1]] + [words[-1]])

    async def events() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    return StreamingResponse(events(), media_type="text/event-stream")


@dataclass
class Shop:
    """The running service, its fake model, the team's order API and the customer's site."""

    base: str
    model: FakeModel
    orders: FakeTeamAPI
    site: HostSite

    def reset(self) -> None:
        self.model.reset()
        self.orders.clear()
        self.orders.orders = known_orders()


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Shop]:
    """The real service on a real port with two action files in a tmp directory."""
    tmp = tmp_path_factory.mktemp("actions")
    url, knowledge = site_files(tmp, sqlite_template, {})
    customer = HostSite()
    model = FakeModel()
    try:
        with pytest.MonkeyPatch.context() as env, running_team_api(token=ORDERS_TOKEN) as orders, \
                serving(model.app(), lifespan="off") as model_base:
            env.setenv("ORDERS_API_TOKEN", ORDERS_TOKEN)
            actions = tmp / "actions"
            actions.mkdir()
            (actions / "get_order_status.yaml").write_text(ORDER_ACTIONS.format(api=orders.url), encoding="utf-8")
            (actions / "cancel_order.yaml").write_text(CANCEL_ACTION.format(api=orders.url), encoding="utf-8")
            settings = make_settings(tmp, url, knowledge_dir=knowledge, allowed_origins=[customer.origin],
                                     openai_api_key="sk-test-key", openai_base_url=f"{model_base}/v1",
                                     model="gpt-4o-mini", actions_dir=actions)
            runtime = Runtime.build(settings)
            with serving(create_app(runtime=runtime)) as base:
                customer.pages["/"] = _page(base)
                yield Shop(base, model, orders, customer)
    finally:
        customer.close()


@pytest.fixture
def fresh(shop: Shop) -> Shop:
    """The shop with no requests recorded and its orders as new."""
    shop.reset()
    return shop


def use_mode(page: Page, mode: str) -> None:
    """'stream': the widget as shipped (SSE). 'json': every turn is asked for as JSON, the widget's other path."""
    if mode == "stream":
        return

    def as_json(route: Route) -> None:
        headers = {**route.request.headers, "accept": "application/json"}
        route.continue_(headers=headers)

    page.route(re.compile(r".*/api/conversations/[^/]+/(messages|actions/\d+)$"), as_json)


def confirmation(page: Page, summary: str) -> Locator:
    """The Confirm / Cancel group, named by the summary it asks about."""
    return page.get_by_role("group", name=summary)


def stored_conversation(page: Page, shop: Shop) -> dict[str, Any]:
    """The widget's conversation id and token, as it keeps them in localStorage."""
    value = page.evaluate("(key) => localStorage.getItem(key)", f"supportbot:{shop.base}")
    assert isinstance(value, str)
    stored: dict[str, Any] = json.loads(value)
    return stored


@pytest.mark.parametrize("mode", ["stream", "json"])
def test_visitor_reads_their_orders_status_from_the_team_api(page: Page, fresh: Shop, mode: str) -> None:
    fresh.orders.orders["A-1042"]["eta"] = "2026-12-24"  # not a value the model could have made up
    use_mode(page, mode)
    open_chat(page, fresh.site.origin + "/")

    send(page, "where is my order A-1042?")

    expect(replies(page).last).to_contain_text("Order A-1042 is shipped, travelling with DHL, expected on 2026-12-24.")
    assert "get_order_status" in fresh.model.offered(0)
    assert "escalate_to_human" in fresh.model.offered(0), "actions are offered next to the handoff tool"
    assert [(r.method, r.path) for r in fresh.orders.received] == [("GET", "/orders/A-1042")]
    assert fresh.orders.received[0].headers["authorization"] == f"Bearer {ORDERS_TOKEN}"
    assert len(fresh.model.requests) == 2
    assert fresh.model.requests[-1]["messages"][-1]["role"] == "tool"
    assert [r.get("stream", False) for r in fresh.model.requests] == [mode == "stream"] * 2
    sent = fresh.model.bodies()
    assert "Customer complained twice" not in sent and "internal_note" not in sent  # undeclared fields
    assert "jane.doe@example.com" not in sent
    assert ORDERS_TOKEN not in sent
    expect(page.locator(".sb-confirm")).to_have_count(0)


@pytest.mark.parametrize("mode", ["stream", "json"])
def test_cancel_waits_for_confirm_and_is_called_once(page: Page, fresh: Shop, mode: str) -> None:
    use_mode(page, mode)
    open_chat(page, fresh.site.origin + "/")

    send(page, "please cancel my order A-1043")

    group = confirmation(page, "Cancel order A-1043")
    expect(group).to_be_visible()
    confirm = group.get_by_role("button", name="Confirm")
    expect(confirm).to_be_enabled()
    expect(group.get_by_role("button", name="Cancel")).to_be_enabled()
    assert fresh.orders.cancels() == [], "nothing is called before the visitor confirms"
    assert fresh.orders.received == []

    fresh.model.hold.clear()  # the answer after the call waits: the page is looked at mid-decision
    confirm.click()

    wait_until(page, lambda: len(fresh.orders.cancels()) == 1)
    expect(group.get_by_role("button", name="Confirm")).to_be_disabled()
    expect(group.get_by_role("button", name="Cancel")).to_be_disabled()
    group.get_by_role("button", name="Cancel").click(force=True)  # a disabled button decides nothing more
    fresh.model.hold.set()
    expect(replies(page).last).to_contain_text("Done: order A-1043 is now cancelled (refund: full).")
    expect(page.locator(".sb-confirm")).to_have_count(0)
    assert [(r.method, r.path) for r in fresh.orders.received] == [("POST", "/orders/A-1043/cancel")]
    assert {r.get("stream", False) for r in fresh.model.requests} == {mode == "stream"}
    assert "refund via batch job" not in fresh.model.bodies()
    expect(page.get_by_role("textbox", name="Message")).to_be_focused()


def test_cancel_button_decides_without_calling_anything(page: Page, fresh: Shop) -> None:
    open_chat(page, fresh.site.origin + "/")
    send(page, "please cancel my order A-1043")
    group = confirmation(page, "Cancel order A-1043")
    cancel = group.get_by_role("button", name="Cancel")

    cancel.focus()  # a keyboard user: the buttons take focus and Enter presses them
    page.keyboard.press("Enter")

    expect(replies(page).last).to_contain_text("All right, order A-1043 stays as it is.")
    expect(page.locator(".sb-confirm")).to_have_count(0)
    assert fresh.orders.received == []
    assert fresh.orders.orders["A-1043"]["status"] == "processing"


def test_reload_while_asked_to_confirm_shows_the_buttons_again(page: Page, fresh: Shop) -> None:
    open_chat(page, fresh.site.origin + "/")
    send(page, "please cancel my order A-1043")
    expect(confirmation(page, "Cancel order A-1043")).to_be_visible()

    page.reload()  # the chat opens again by itself and reads the transcript

    group = confirmation(page, "Cancel order A-1043")
    expect(group).to_be_visible()
    assert fresh.orders.cancels() == []
    group.get_by_role("button", name="Confirm").click()
    expect(replies(page).last).to_contain_text("Done: order A-1043 is now cancelled")
    assert len(fresh.orders.cancels()) == 1

    page.reload()  # decided: the transcript no longer asks
    expect(replies(page).last).to_contain_text("Done: order A-1043 is now cancelled")
    expect(page.locator(".sb-confirm")).to_have_count(0)


def test_a_decision_made_elsewhere_leaves_a_short_note_instead_of_the_buttons(page: Page, fresh: Shop) -> None:
    open_chat(page, fresh.site.origin + "/")
    send(page, "please cancel my order A-1043")
    group = confirmation(page, "Cancel order A-1043")
    expect(group).to_be_visible()
    stored = stored_conversation(page, fresh)
    transcript = httpx.get(f"{fresh.base}/api/conversations/{stored['id']}",
                           headers={"Authorization": f"Bearer {stored['token']}"}, timeout=10).json()
    asked = [m["confirmation"] for m in transcript["messages"] if m.get("confirmation")]
    assert len(asked) == 1
    decided = httpx.post(f"{fresh.base}/api/conversations/{stored['id']}/actions/{asked[0]['action_call_id']}",
                         json={"decision": "confirm"}, headers={"Authorization": f"Bearer {stored['token']}"},
                         timeout=10)  # another tab of the same visitor
    assert decided.status_code == 200, decided.text

    group.get_by_role("button", name="Cancel").click()

    expect(group.get_by_role("status")).to_have_text("This request was already answered or is no longer open.")
    expect(group.get_by_role("button")).to_have_count(0)
    expect(replies(page).last).to_contain_text("Done: order A-1043 is now cancelled")  # the other tab's answer
    assert len(fresh.orders.cancels()) == 1


def test_summary_with_markup_is_shown_as_text(page: Page, fresh: Shop) -> None:
    fresh.model.hostile_argument = True
    open_chat(page, fresh.site.origin + "/")

    send(page, "please cancel my order A-1043")

    group = confirmation(page, f"Cancel order {HOSTILE_ORDER_ID}")
    expect(group).to_be_visible()
    expect(group.locator(".sb-confirm-summary")).to_have_text(f"Cancel order {HOSTILE_ORDER_ID}")
    expect(page.locator("supportbot-widget img")).to_have_count(0)
    assert page.evaluate("() => window.__pwned") is None
    assert fresh.orders.received == []


def test_a_german_visitor_is_asked_and_answers_in_german(page: Page, fresh: Shop) -> None:
    german = widget_strings()["de"]
    open_chat(page, fresh.site.origin + "/")  # an English page: the widget follows what the visitor writes

    send(page, "Bitte stornieren Sie meine Bestellung A-1043.")

    asked = fixed_text("de", "action_confirm").format(summary="Cancel order A-1043")
    expect(replies(page).last).to_contain_text(asked)
    group = confirmation(page, "Cancel order A-1043")
    expect(group.get_by_role("button", name=german["confirm"])).to_be_visible()
    group.get_by_role("button", name=german["cancel"]).click()
    expect(replies(page).last).to_contain_text("All right, order A-1043 stays as it is.")
    assert fresh.orders.received == []

    page.reload()  # the decision as stored: the visitor's message in their language
    expect(page.locator(".sb-msg--user").last).to_contain_text(fixed_text("de", "action_cancel_label"))
    expect(page.locator(".sb-confirm")).to_have_count(0)


def test_writing_something_else_lets_the_question_lapse(page: Page, fresh: Shop) -> None:
    open_chat(page, fresh.site.origin + "/")
    send(page, "please cancel my order A-1043")
    expect(confirmation(page, "Cancel order A-1043")).to_be_visible()

    send(page, "where is my order A-1042?")

    expect(replies(page).last).to_contain_text("Order A-1042 is shipped")
    expect(page.locator(".sb-confirm")).to_have_count(0)
    page.reload()
    expect(replies(page).last).to_contain_text("Order A-1042 is shipped")
    expect(page.locator(".sb-confirm")).to_have_count(0)
    assert fresh.orders.cancels() == []
