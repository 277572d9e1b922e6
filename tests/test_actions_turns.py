"""Actions in a turn: the model calls the team's API (a real local server) and answers from what it returned;
sign-in, confirmation, failures and the per-turn limit. The model is mocked at HTTP level and scripted from what
it is sent, so a result that is not fed back shows in the answer."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from sqlalchemy import select

from service.api import create_app
from service.auth import user_hash
from service.models import ActionCall, Escalation
from service.runtime import Runtime

from . import fake_model
from .commit_hook import commit_hook
from .conftest import MODEL_BASE_URL, make_settings
from .factories import parse_sse, send
from .fake_team_api import INJECTION, FakeTeamAPI, running_team_api

SECRET = "orders-token-9f8e7d"
IDENTITY_SECRET = "identity-secret-for-tests"

ORDER_STATUS = """\
name: get_order_status
description: Look up the shipping status of one of the visitor's orders by its order number.
parameters:
  type: object
  properties:
    order_id: {type: string, description: "The order number, like A-1042."}
  required: [order_id]
  additionalProperties: false
request:
  method: GET
  url: BASE/PATH
  headers:
    Authorization: "Bearer ${ORDERS_API_TOKEN}"
  timeout: TIMEOUT
identity: IDENTITY
side_effects: false
response:
  fields: [status, carrier, eta]
  max_bytes: 4000
"""

CANCEL_ORDER = """\
name: cancel_order
description: Cancel one of the visitor's orders that has not shipped yet.
parameters:
  type: object
  properties:
    order_id: {type: string}
  required: [order_id]
request:
  method: POST
  url: BASE/orders/{order_id}/cancel
  headers:
    Authorization: "Bearer ${ORDERS_API_TOKEN}"
identity: optional
side_effects: true
confirm: "Cancel order {order_id}"
response:
  fields: [status, refund]
"""


def write_actions(folder: Path, base: str, *, path: str = "orders/{order_id}", identity: str = "optional",
                  timeout: float = 5) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "get_order_status.yaml").write_text(
        ORDER_STATUS.replace("BASE", base).replace("PATH", path).replace("IDENTITY", identity)
        .replace("TIMEOUT", str(timeout)), encoding="utf-8")
    (folder / "cancel_order.yaml").write_text(CANCEL_ORDER.replace("BASE", base), encoding="utf-8")
    return folder


class ScriptedModel:
    """Answers like a model that uses tools: asked without a tool result, it calls `first`; given one, it answers
    from the result's JSON. `requests` keeps every body it was sent."""

    def __init__(self, first: Callable[[dict[str, Any]], list[dict[str, Any]] | None], stream: bool = False,
                 text_before: str = "", always: bool = False) -> None:
        self.first = first
        self.always = always
        self.stream = stream
        self.text_before = text_before
        self.requests: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append(body)
        last = body["messages"][-1]
        calls = self.first(body) if last["role"] == "user" or self.always else None
        if calls:
            if self.stream:
                return fake_model.stream(fake_model.tool_call_chunks(calls, self.text_before))
            return fake_model.completion(self.text_before or None, tool_calls=calls)
        answer = self.answer(last)
        if self.stream:
            return fake_model.stream(fake_model.text_chunks([answer[:10], answer[10:]]))
        return fake_model.completion(answer)

    @staticmethod
    def answer(last: dict[str, Any]) -> str:
        if last["role"] != "tool":
            return "How can I help?"
        result = json.loads(last["content"])
        if result["status"] == "ok":
            data = result["data"]
            return f"Your order is {data.get('status')} with {data.get('carrier')}, arriving {data.get('eta')}."
        return f"Sorry, that did not work ({result['status']})."


def order_lookup(order_id: str = "A-1042") -> Callable[[dict[str, Any]], list[dict[str, Any]]]:
    return lambda _body: [fake_model.tool_call("get_order_status", {"order_id": order_id})]


@pytest.fixture
def team_api() -> Iterator[FakeTeamAPI]:
    with running_team_api(token=SECRET, slow_seconds=5) as api:
        yield api


@pytest.fixture
def model_router() -> Iterator[respx.MockRouter]:
    """The model mocked; requests to the local team API go through for real."""
    with respx.mock(assert_all_called=False) as router:
        router.route(host="127.0.0.1").pass_through()
        yield router


@pytest.fixture
def make_client(tmp_path: Path, database_url: str, team_api: FakeTeamAPI, model_router: respx.MockRouter,
                monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    monkeypatch.setenv("ORDERS_API_TOKEN", SECRET)

    def build(model: ScriptedModel, **options: Any) -> _Client:
        model_router.post(f"{MODEL_BASE_URL}/chat/completions").mock(side_effect=model)
        actions = write_actions(tmp_path / "actions", team_api.url, **options.pop("files", {}))
        settings = make_settings(tmp_path, database_url, openai_api_key="sk-test-key",
                                 openai_base_url=MODEL_BASE_URL, model="gpt-4o-mini", actions_dir=actions,
                                 identity_secret=IDENTITY_SECRET, **options)
        return _Client(Runtime.build(settings))

    return build


class _Client:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def __aenter__(self) -> httpx.AsyncClient:
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(runtime=self.runtime)),
                                      base_url="http://supportbot.test")
        return self.http

    async def __aexit__(self, *_exc: object) -> None:
        await self.http.aclose()
        await self.runtime.aclose()

    def calls(self) -> list[ActionCall]:
        with self.runtime.log.sessions() as session:
            return list(session.scalars(select(ActionCall).order_by(ActionCall.id)))


async def visitor(http: httpx.AsyncClient, user_id: str | None = None, *, verified: bool = True,
                  locale: str | None = None) -> tuple[str, dict[str, str]]:
    metadata: dict[str, str] = {}
    if user_id:
        metadata["user_id"] = user_id
        if verified:
            metadata["user_hash"] = user_hash(IDENTITY_SECRET, user_id)
    if locale:
        metadata["locale"] = locale
    response = await http.post("/api/conversations", json={"metadata": metadata} if metadata else None)
    assert response.status_code == 201, response.text
    body = response.json()
    return body["conversation_id"], {"Authorization": f"Bearer {body['token']}"}


async def test_the_model_looks_up_an_order_and_answers_from_the_declared_fields(make_client: Any,
                                                                                  team_api: FakeTeamAPI) -> None:
    model = ScriptedModel(order_lookup())
    client = make_client(model)
    async with client as http:
        conversation, auth = await visitor(http, "cust-7")
        response = await send(http, conversation, auth, "Where is my order A-1042?")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["reply"]["content"] == "Your order is shipped with DHL, arriving 2026-12-05."
    assert body["actions"] == [{"name": "get_order_status", "status": "ok"}]
    assert body["confirmation"] is None and body["escalated"] is False

    first, second = model.requests
    offered = [tool["function"]["name"] for tool in first["tools"]]
    assert offered[0] == "escalate_to_human" and set(offered[1:]) == {"get_order_status", "cancel_order"}
    said, result = second["messages"][-2:]
    assert said["role"] == "assistant" and said["tool_calls"][0]["function"]["name"] == "get_order_status"
    assert result["role"] == "tool" and result["tool_call_id"] == said["tool_calls"][0]["id"]
    assert json.loads(result["content"]) == {"status": "ok", "data": {
        "status": "shipped", "carrier": "DHL", "eta": "2026-12-05"}}
    sent_to_model = json.dumps(model.requests)
    assert "internal_note" not in sent_to_model and "jane.doe@example.com" not in sent_to_model
    assert SECRET not in sent_to_model, "the header secret never reaches the model"

    [received] = team_api.requests_to("/orders/")
    assert (received.method, received.path) == ("GET", "/orders/A-1042")
    assert received.headers["authorization"] == f"Bearer {SECRET}"
    assert received.headers["x-supportbot-user"] == "cust-7", "the verified user id goes with the call"

    [call] = client.calls()
    assert (call.action, call.status, call.http_status, call.arguments) == (
        "get_order_status", "ok", 200, {"order_id": "A-1042"})
    assert call.result == {"status": "shipped", "carrier": "DHL", "eta": "2026-12-05"}
    assert call.tool_content == result["content"] and call.latency_ms is not None
    assert call.message_id == body["message_id"] and call.reply_id == body["reply"]["message_id"]


async def test_streamed_turn_runs_the_action_and_streams_the_answer(make_client: Any, team_api: FakeTeamAPI) -> None:
    model = ScriptedModel(order_lookup(), stream=True, text_before="Let me check.")
    async with make_client(model) as http:
        conversation, auth = await visitor(http)
        response = await http.post(f"/api/conversations/{conversation}/messages", headers={
            **auth, "Accept": "text/event-stream"}, json={"content": "where is my order A-1042?"})
    events = parse_sse(response.text)
    text = "".join(str(data["text"]) for name, data in events if name == "delta")
    done = [data for name, data in events if name == "done"][-1]
    expected = "Let me check.\n\nYour order is shipped with DHL, arriving 2026-12-05."
    assert text == expected and done["reply"]["content"] == expected  # type: ignore[index]
    assert done["actions"] == [{"name": "get_order_status", "status": "ok"}]
    assert len(team_api.requests_to("/orders/")) == 1
    assert "x-supportbot-user" not in team_api.requests_to("/orders/")[0].headers, "no verified user, no header"


async def test_an_unverified_visitor_is_asked_to_sign_in_in_their_language(make_client: Any,
                                                                          team_api: FakeTeamAPI) -> None:
    model = ScriptedModel(order_lookup())
    client = make_client(model, files={"identity": "required"}, languages=["en", "de"])
    async with client as http:
        conversation, auth = await visitor(http, "cust-7", verified=False)
        body = (await send(http, conversation, auth,
                           "Hallo, wo ist meine Bestellung A-1042? Ich warte schon seit zwei Wochen darauf.")).json()
    assert body["language"] == "de"
    assert body["reply"]["content"].startswith("Dafür muss ich wissen, dass Sie es sind")
    assert body["actions"] == [{"name": "get_order_status", "status": "sign_in_required"}]
    assert team_api.requests_to("/orders/") == [], "nothing is called for an unverified visitor"
    assert len(model.requests) == 1
    [call] = client.calls()
    assert json.loads(call.tool_content)["status"] == "sign_in_required"


async def test_a_verified_visitor_gets_the_lookup_and_the_model_cannot_choose_the_user(
        make_client: Any, team_api: FakeTeamAPI) -> None:
    sneaky = lambda _body: [fake_model.tool_call(  # noqa: E731
        "get_order_status", {"order_id": "A-1042", "user_id": "admin"})]
    model = ScriptedModel(sneaky)
    client = make_client(model, files={"identity": "required"})
    async with client as http:
        conversation, auth = await visitor(http, "cust-7")
        body = (await send(http, conversation, auth, "Where is my order A-1042?")).json()
    # additionalProperties is false: the extra argument is refused and the model is told why
    assert body["actions"][0]["status"] == "invalid_arguments"
    assert team_api.requests_to("/orders/") == []

    model.first = order_lookup()
    async with client.__class__(Runtime.build(client.runtime.settings)) as http:
        body = (await send(http, conversation, auth, "It is A-1042.")).json()
    assert body["actions"] == [{"name": "get_order_status", "status": "ok"}]
    [received] = team_api.requests_to("/orders/")
    assert received.headers["x-supportbot-user"] == "cust-7"


async def test_a_side_effect_waits_for_confirm_then_runs_once(make_client: Any, team_api: FakeTeamAPI) -> None:
    model = ScriptedModel(lambda _body: [fake_model.tool_call("cancel_order", {"order_id": "A-1043"})])
    client = make_client(model)
    async with client as http:
        conversation, auth = await visitor(http)
        body = (await send(http, conversation, auth, "Please cancel my order A-1043")).json()
        assert body["reply"]["content"] == "Before I go ahead, please confirm: Cancel order A-1043"
        confirmation = body["confirmation"]
        assert confirmation["action"] == "cancel_order" and confirmation["summary"] == "Cancel order A-1043"
        assert team_api.cancels() == [], "nothing is called before Confirm"
        transcript = (await http.get(f"/api/conversations/{conversation}", headers=auth)).json()
        assert transcript["messages"][-1]["confirmation"] == confirmation, "a reload shows the buttons again"

        url = f"/api/conversations/{conversation}/actions/{confirmation['action_call_id']}"
        decided = await http.post(url, headers=auth, json={"decision": "confirm"})
        assert decided.status_code == 200, decided.text
        answer = decided.json()
        assert answer["reply"]["content"] == "Your order is cancelled with None, arriving None."
        assert answer["actions"] == [{"name": "cancel_order", "status": "ok"}]
        assert len(team_api.cancels()) == 1

        again = await http.post(url, headers=auth, json={"decision": "confirm"})
        assert again.json()["reply"] == answer["reply"], "a second click replays the answer"
        assert len(team_api.cancels()) == 1, "and calls nothing again"
        other = await http.post(url, headers=auth, json={"decision": "cancel"})
        assert other.status_code == 409 and other.json()["error"]["code"] == "confirmation_decided"
        transcript = (await http.get(f"/api/conversations/{conversation}", headers=auth)).json()

    assert all(m["confirmation"] is None for m in transcript["messages"])
    assert [m["content"] for m in transcript["messages"] if m["role"] == "user"] == [
        "Please cancel my order A-1043", "Yes, go ahead."]
    waiting, made = client.calls()
    assert (waiting.status, waiting.decided_at is not None) == ("confirmed", True)
    assert (made.status, made.confirms_id, made.result) == ("ok", waiting.id, {"status": "cancelled",
                                                                               "refund": "full"})
    last = model.requests[-1]["messages"]
    assert last[-2]["tool_calls"][0]["function"]["name"] == "cancel_order" and last[-1]["role"] == "tool"


async def test_cancel_calls_nothing_and_a_stale_confirmation_expires(make_client: Any,
                                                                    team_api: FakeTeamAPI) -> None:
    model = ScriptedModel(lambda body: [fake_model.tool_call("cancel_order", {"order_id": "A-1043"})]
                          if "cancel" in body["messages"][-1]["content"].lower() else None)
    client = make_client(model)
    async with client as http:
        conversation, auth = await visitor(http)
        first = (await send(http, conversation, auth, "cancel order A-1043")).json()["confirmation"]
        cancelled = await http.post(f"/api/conversations/{conversation}/actions/{first['action_call_id']}",
                                    headers=auth, json={"decision": "cancel"})
        assert cancelled.status_code == 200
        assert cancelled.json()["reply"]["content"] == "Sorry, that did not work (cancelled)."
        assert json.loads(model.requests[-1]["messages"][-1]["content"])["status"] == "cancelled"

        second = (await send(http, conversation, auth, "cancel order A-1043 please")).json()["confirmation"]
        await send(http, conversation, auth, "Actually, what are your opening hours?")
        stale = await http.post(f"/api/conversations/{conversation}/actions/{second['action_call_id']}",
                                headers=auth, json={"decision": "confirm"})
        assert stale.status_code == 409 and stale.json()["error"]["code"] == "confirmation_expired"

        other, other_auth = await visitor(http)
        foreign = await http.post(f"/api/conversations/{other}/actions/{second['action_call_id']}",
                                  headers=other_auth, json={"decision": "confirm"})
        assert foreign.status_code == 404
        bad = await http.post(f"/api/conversations/{conversation}/actions/{second['action_call_id']}",
                              headers=auth, json={"decision": "maybe"})
        assert bad.status_code == 422
    assert team_api.cancels() == []


@pytest.mark.parametrize(("path", "timeout", "why"), [
    ("status/503?order={order_id}", 5, "503"),
    ("slow/{order_id}", 0.3, "no answer within"),
    ("html/{order_id}", 5, "JSON"),
    ("huge/{order_id}", 5, "larger"),
])
async def test_a_failed_action_hands_over_politely(make_client: Any, team_api: FakeTeamAPI, path: str,
                                                   timeout: float, why: str) -> None:
    model = ScriptedModel(order_lookup())
    client = make_client(model, files={"path": path, "timeout": timeout})
    async with client as http:
        conversation, auth = await visitor(http)
        response = await send(http, conversation, auth, "Where is my order A-1042?")
    assert response.status_code == 200
    body = response.json()
    assert body["reply"]["content"].startswith("I'm sorry, I couldn't look that up right now.")
    assert body["escalation"]["reason"] == "action_failed" and body["escalated"] is True
    assert len(model.requests) == 1, "the model is not asked again after a failure"
    [call] = client.calls()
    assert call.status == "failed" and why.lower() in (call.error or "").lower()
    assert "<html" not in body["reply"]["content"].lower() and (call.error or "") not in body["reply"]["content"]
    with client.runtime.log.sessions() as session:
        [escalation] = session.scalars(select(Escalation)).all()
    assert escalation.reason == "action_failed" and "get_order_status" in (escalation.detail or "")


async def test_an_unknown_order_is_explained_by_the_model(make_client: Any, team_api: FakeTeamAPI) -> None:
    model = ScriptedModel(order_lookup("Z-9999"))
    async with make_client(model) as http:
        conversation, auth = await visitor(http)
        body = (await send(http, conversation, auth, "Where is my order Z-9999?")).json()
    assert body["reply"]["content"] == "Sorry, that did not work (rejected)."
    assert body["actions"] == [{"name": "get_order_status", "status": "rejected"}] and body["escalated"] is False


async def test_calls_per_turn_are_capped(make_client: Any, team_api: FakeTeamAPI) -> None:
    """A model that keeps calling gets the limit's worth of calls, then only the handoff tool, then a handoff."""
    model = ScriptedModel(lambda body: [fake_model.tool_call("get_order_status", {"order_id": "A-1042"},
                                                             call_id=f"call_{len(body['messages'])}")],
                          always=True)
    client = make_client(model, actions_max_calls=2)
    async with client as http:
        conversation, auth = await visitor(http)
        body = (await send(http, conversation, auth, "Where is my order A-1042?")).json()
    assert len(team_api.requests_to("/orders/")) == 2
    assert [t["function"]["name"] for t in model.requests[-1]["tools"]] == ["escalate_to_human"]
    assert len(model.requests) == 3
    assert body["escalation"]["reason"] == "action_failed"
    assert [call.status for call in client.calls()] == ["ok", "ok", "over_limit"]


async def test_a_response_that_gives_instructions_stays_data(make_client: Any, team_api: FakeTeamAPI) -> None:
    model = ScriptedModel(order_lookup())
    client = make_client(model, files={"path": "inject/{order_id}"})
    async with client as http:
        conversation, auth = await visitor(http)
        body = (await send(http, conversation, auth, "Where is my order A-1042?")).json()
    system = model.requests[-1]["messages"][0]
    assert INJECTION not in system["content"], "nothing of a response enters the instructions"
    carrying = [m for m in model.requests[-1]["messages"] if INJECTION in json.dumps(m)]
    assert [m["role"] for m in carrying] == ["tool"], "the text arrives only as the tool's data"
    assert isinstance(json.loads(carrying[0]["content"])["data"], dict)
    assert body["escalated"] is False


async def test_a_resend_replays_the_turn_without_calling_again(make_client: Any, team_api: FakeTeamAPI) -> None:
    model = ScriptedModel(order_lookup())
    async with make_client(model) as http:
        conversation, auth = await visitor(http)
        first = (await send(http, conversation, auth, "Where is A-1042?", client_message_id="m-1")).json()
        again = (await send(http, conversation, auth, "Where is A-1042?", client_message_id="m-1")).json()
    assert again["reply"] == first["reply"] and again["actions"] == first["actions"]
    assert len(team_api.requests_to("/orders/")) == 1


async def test_no_action_is_called_for_a_message_whose_commit_failed(make_client: Any,
                                                                     team_api: FakeTeamAPI) -> None:
    model = ScriptedModel(order_lookup())

    def asked(request: httpx.Request) -> httpx.Response:
        hook.asked.set()
        return model(request)

    client = make_client(asked)
    async with client as http:
        conversation, auth = await visitor(http, "cust-7")
        with commit_hook(client.runtime.log.engine, fail=True) as hook:
            hook.arm()
            response = await send(http, conversation, auth, "Where is my order A-1042?")
        assert hook.asked_while_committing == [True]
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "database_unavailable"
    assert len(model.requests) == 1, "the model asked for the lookup; it was never made, so never answered"
    assert team_api.requests_to("/orders/") == [], "the team's API is not called for a message not stored"
    assert client.calls() == []


async def test_the_start_up_line_names_the_actions_and_a_broken_file(make_client: Any, tmp_path: Path) -> None:
    client = make_client(ScriptedModel(order_lookup()))
    assert f"actions={tmp_path / 'actions'} (2) " in client.runtime.describe()
    (tmp_path / "actions" / "broken.yaml").write_text("name: broken\nrequest: {url: ftp://x/}\n", encoding="utf-8")
    assert "(2, 1 with errors: run supportbot actions check)" in client.runtime.describe()
    await client.runtime.aclose()


async def test_the_confirmation_names_the_waiting_call_when_the_model_called_more_after_it(
        make_client: Any, team_api: FakeTeamAPI) -> None:
    """Two calls in one response, the side effect first: it waits, the second is not made, and the widget is
    given the waiting call's id (not the last call's)."""
    model = ScriptedModel(lambda _body: [
        fake_model.tool_call("cancel_order", {"order_id": "A-1043"}, call_id="call_a"),
        fake_model.tool_call("get_order_status", {"order_id": "A-1043"}, call_id="call_b")])
    client = make_client(model)
    async with client as http:
        conversation, auth = await visitor(http)
        body = (await send(http, conversation, auth, "Cancel A-1043 and tell me its status")).json()
    waiting, skipped = client.calls()
    assert (waiting.status, skipped.status) == ("awaiting_confirmation", "over_limit")
    assert body["confirmation"] == {"action_call_id": waiting.id, "action": "cancel_order",
                                    "summary": "Cancel order A-1043"}
    assert team_api.requests_to("/orders/") == [], "nothing is called before Confirm"
