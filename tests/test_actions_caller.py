"""The action caller against a real HTTP order API: what is sent (URL, headers, body), what comes back (only the
declared fields), and how each kind of answer is classified (ok, rejected, failed, invalid arguments)."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from service.actions.caller import ActionCaller, ActionRefused
from service.models import ActionStatus

from .fake_team_api import FakeTeamAPI, cancel_action, known_orders, order_action, order_spec, running_team_api, spec_of

TOKEN = "orders-token-3f9a"
ENV = {"ORDERS_API_TOKEN": TOKEN}


@pytest.fixture(scope="module")
def served() -> Iterator[FakeTeamAPI]:
    with running_team_api(token=TOKEN) as api:
        yield api


@pytest.fixture
def api(served: FakeTeamAPI) -> FakeTeamAPI:
    served.clear()
    served.orders.clear()
    served.orders.update(known_orders())
    return served


@pytest.fixture
async def caller() -> AsyncIterator[ActionCaller]:
    made = ActionCaller(environ=ENV)
    yield made
    await made.aclose()




async def test_only_declared_fields_reach_the_result_and_the_model(api: FakeTeamAPI, caller: ActionCaller) -> None:
    outcome = await caller.call(order_spec(api), {"order_id": "A-1042"}, user_id="user-7")

    assert outcome.status == ActionStatus.OK and outcome.http_status == 200
    assert outcome.result == {"status": "shipped", "carrier": "DHL", "eta": "2026-12-05"}
    assert json.loads(outcome.tool_content()) == {"status": "ok", "data": outcome.result}
    for private in ("internal_note", "customer_email", "jane.doe@example.com", "complained"):
        assert private not in outcome.tool_content()
    assert outcome.error is None
    assert isinstance(outcome.latency_ms, int) and 0 <= outcome.latency_ms < 5000


async def test_the_request_carries_the_secret_and_the_verified_user(api: FakeTeamAPI, caller: ActionCaller) -> None:
    outcome = await caller.call(order_spec(api), {"order_id": "A-1042"}, user_id="user-7")

    (received,) = api.received
    assert (received.method, received.raw_path, received.query) == ("GET", "/orders/A-1042", "")
    assert received.headers["authorization"] == f"Bearer {TOKEN}"
    assert received.headers["x-supportbot-user"] == "user-7"
    assert received.headers["accept"] == "application/json"
    assert received.headers["host"] == api.url.removeprefix("http://")
    assert outcome.request is not None
    assert outcome.request.url == f"{api.url}/orders/A-1042"
    assert outcome.request.headers == {"Accept": "application/json", "Authorization": "Bearer ***",
                                       "X-Supportbot-User": "user-7"}


async def test_no_user_header_without_a_verified_user(api: FakeTeamAPI, caller: ActionCaller) -> None:
    await caller.call(order_spec(api), {"order_id": "A-1042"}, user_id=None)

    (received,) = api.received
    assert "x-supportbot-user" not in received.headers


async def test_identity_none_never_sends_the_user(api: FakeTeamAPI, caller: ActionCaller) -> None:
    outcome = await caller.call(order_spec(api, identity="none"), {"order_id": "A-1042"}, user_id="user-7")

    assert outcome.status == ActionStatus.OK
    assert "x-supportbot-user" not in api.received[0].headers


async def test_identity_required_without_a_user_calls_nothing(api: FakeTeamAPI, caller: ActionCaller) -> None:
    outcome = await caller.call(order_spec(api, identity="required"), {"order_id": "A-1042"}, user_id=None)

    assert outcome.status == ActionStatus.FAILED and outcome.error == "this action needs a signed-in visitor"
    assert api.received == []


async def test_dotted_fields_keep_the_shape_and_skip_what_is_missing(api: FakeTeamAPI, caller: ActionCaller) -> None:
    spec = order_spec(api, response={"fields": ["status", "shipping.carrier", "shipping.tracking.number",
                                            "shipping.nope", "nope.deeper"]})

    outcome = await caller.call(spec, {"order_id": "A-1042"})

    assert outcome.result == {"status": "shipped",
                              "shipping": {"carrier": "DHL", "tracking": {"number": "JD014600006281"}}}


async def test_no_fields_declared_gives_only_the_status(api: FakeTeamAPI, caller: ActionCaller) -> None:
    outcome = await caller.call(order_spec(api, response={}), {"order_id": "A-1042"})

    assert outcome.status == ActionStatus.OK and outcome.result == {}
    assert json.loads(outcome.tool_content()) == {"status": "ok", "data": {}}


async def test_post_sends_the_other_arguments_as_a_json_body(api: FakeTeamAPI, caller: ActionCaller) -> None:
    spec = spec_of(cancel_action(api.url))

    outcome = await caller.call(spec, {"order_id": "A-1043", "reason": "ordered twice"}, user_id="user-7")

    assert outcome.status == ActionStatus.OK
    assert outcome.result == {"status": "cancelled", "refund": "full"}
    (cancel,) = api.cancels()
    assert cancel.raw_path == "/orders/A-1043/cancel"
    assert cancel.json() == {"reason": "ordered twice"}
    assert cancel.headers["content-type"] == "application/json"
    assert cancel.headers["x-supportbot-user"] == "user-7"
    assert outcome.request is not None and outcome.request.body == {"reason": "ordered twice"}


async def test_get_sends_the_other_declared_arguments_as_query_and_drops_undeclared(
        api: FakeTeamAPI, caller: ActionCaller) -> None:
    action = order_action(f"{api.url}/echo/orders/{{order_id}}")
    action["parameters"]["properties"]["fields"] = {"type": "array", "items": {"type": "string"}}
    action["parameters"]["properties"]["verbose"] = {"type": "boolean"}

    outcome = await caller.call(spec_of(action), {"order_id": "A-1042", "fields": ["a", "b"], "verbose": True,
                                                  "admin": "1"})

    assert outcome.status == ActionStatus.OK
    (received,) = api.received
    assert received.query == "fields=a&fields=b&verbose=true"
    assert received.body == b""


async def test_a_conflict_is_rejected_with_the_declared_fields(api: FakeTeamAPI, caller: ActionCaller) -> None:
    outcome = await caller.call(spec_of(cancel_action(api.url)), {"order_id": "A-2001"})

    assert outcome.status == ActionStatus.REJECTED and outcome.http_status == 409
    assert outcome.result == {"status": "delivered", "error": "conflict", "message": "The order is already delivered."}
    content = json.loads(outcome.tool_content())
    assert content["status"] == "rejected" and content["http_status"] == 409 and content["data"] == outcome.result


async def test_an_unknown_order_is_rejected_not_failed(api: FakeTeamAPI, caller: ActionCaller) -> None:
    outcome = await caller.call(order_spec(api), {"order_id": "A-9999"})

    assert outcome.status == ActionStatus.REJECTED and outcome.http_status == 404
    assert outcome.result == {}


@pytest.mark.parametrize(("code", "status"), [
    (400, ActionStatus.REJECTED), (404, ActionStatus.REJECTED), (409, ActionStatus.REJECTED),
    (410, ActionStatus.REJECTED), (422, ActionStatus.REJECTED),
    (401, ActionStatus.FAILED), (403, ActionStatus.FAILED), (407, ActionStatus.FAILED), (408, ActionStatus.FAILED),
    (429, ActionStatus.FAILED), (500, ActionStatus.FAILED), (502, ActionStatus.FAILED), (503, ActionStatus.FAILED),
])
async def test_status_codes_are_classified(api: FakeTeamAPI, caller: ActionCaller, code: int,
                                           status: ActionStatus) -> None:
    outcome = await caller.call(order_spec(api, f"/status/{code}?order={{order_id}}"), {"order_id": "A-1042"})

    assert (outcome.status, outcome.http_status) == (status, code)
    assert outcome.error == f"HTTP {code}"
    assert "stack trace" not in outcome.tool_content()
    assert api.received[0].query == "order=A-1042"


async def test_a_wrong_secret_fails_as_401(api: FakeTeamAPI) -> None:
    caller = ActionCaller(environ={"ORDERS_API_TOKEN": "wrong"})
    try:
        outcome = await caller.call(order_spec(api), {"order_id": "A-1042"})
    finally:
        await caller.aclose()

    assert (outcome.status, outcome.http_status, outcome.error) == (ActionStatus.FAILED, 401, "HTTP 401")


async def test_missing_environment_variable_fails_before_any_request(api: FakeTeamAPI) -> None:
    caller = ActionCaller(environ={})
    try:
        outcome = await caller.call(order_spec(api), {"order_id": "A-1042"})
    finally:
        await caller.aclose()

    assert outcome.status == ActionStatus.FAILED
    assert outcome.error == "missing environment variable ORDERS_API_TOKEN"
    assert outcome.request is None and api.received == []


async def test_environment_is_read_at_call_time(api: FakeTeamAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    caller = ActionCaller()  # the process environment
    try:
        monkeypatch.delenv("ORDERS_API_TOKEN", raising=False)
        missing = await caller.call(order_spec(api), {"order_id": "A-1042"})
        monkeypatch.setenv("ORDERS_API_TOKEN", TOKEN)
        found = await caller.call(order_spec(api), {"order_id": "A-1042"})
    finally:
        await caller.aclose()

    assert missing.status == ActionStatus.FAILED and found.status == ActionStatus.OK
    assert [r.headers["authorization"] for r in api.received] == [f"Bearer {TOKEN}"]


async def test_nobody_listening_fails_with_a_short_error(caller: ActionCaller) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: the connection is refused
        outcome = await caller.call(spec_of(order_action(f"http://127.0.0.1:{port}/orders/{{order_id}}")),
                                    {"order_id": "A-1042"})

    assert outcome.status == ActionStatus.FAILED
    assert outcome.error is not None and outcome.error.startswith("could not reach the API")


@pytest.mark.parametrize(("arguments", "error"), [
    ({}, "order_id: required"),
    ({"order_id": 1042}, "order_id: must be of type string"),
    ({"order_id": "A" * 501}, "order_id: longer than 500 characters"),
    ("A-1042", "arguments must be a JSON object"),
    (["A-1042"], "arguments must be a JSON object"),
    (None, "arguments must be a JSON object"),
])
async def test_invalid_arguments_are_told_briefly_and_call_nothing(
        api: FakeTeamAPI, caller: ActionCaller, arguments: Any, error: str) -> None:
    outcome = await caller.call(order_spec(api), arguments)

    assert (outcome.status, outcome.error) == (ActionStatus.INVALID_ARGUMENTS, error)
    assert json.loads(outcome.tool_content())["errors"] == error
    assert api.received == []


def test_validate_refuses_what_the_request_would_refuse(api: FakeTeamAPI, caller: ActionCaller) -> None:
    spec = spec_of(cancel_action(api.url))  # a side-effect action: validated before the visitor confirms

    assert caller.validate(spec, {"order_id": ".."}) == "order_id: must not be empty, '.' or '..'"
    assert caller.validate(spec, {"order_id": ""}) == "order_id: must not be empty, '.' or '..'"
    assert caller.validate(spec, {"order_id": "..."}) is None


def test_max_argument_chars_is_configurable(api: FakeTeamAPI) -> None:
    caller = ActionCaller(environ=ENV, max_argument_chars=6)

    assert caller.validate(order_spec(api), {"order_id": "A-1042"}) is None
    assert caller.validate(order_spec(api), {"order_id": "A-10420"}) == "order_id: longer than 6 characters"


def test_schema_limits_are_named_without_the_value(api: FakeTeamAPI, caller: ActionCaller) -> None:
    action = order_action(f"{api.url}/orders/{{order_id}}")
    action["parameters"]["properties"]["order_id"]["pattern"] = "^A-[0-9]+$"
    action["parameters"]["properties"]["count"] = {"type": "integer", "maximum": 3}
    action["parameters"]["additionalProperties"] = False

    error = caller.validate(spec_of(action), {"order_id": "DROP TABLE orders", "count": 99, "sneaky": 1})

    assert error == ("unexpected argument(s): sneaky; count: must be at most 3; "
                     "order_id: must match the pattern ^A-[0-9]+$")
    assert "DROP" not in error and "99" not in error


def test_prepare_shows_the_request_without_making_it(api: FakeTeamAPI, caller: ActionCaller) -> None:
    prepared = caller.prepare(order_spec(api), {"order_id": "A 1042/x"}, user_id="user-7")

    assert prepared.method == "GET"
    assert prepared.url == f"{api.url}/orders/A%201042%2Fx"
    assert prepared.headers["Authorization"] == "Bearer ***"
    assert api.received == []
    with pytest.raises(ActionRefused, match="order_id: must not be empty, '.' or '..'"):
        caller.prepare(order_spec(api), {"order_id": ".."})


async def test_a_given_client_is_used_and_left_open(api: FakeTeamAPI) -> None:
    async with httpx.AsyncClient(headers={"User-Agent": "supportbot-test"}) as client:
        caller = ActionCaller(client=client, environ=ENV)
        outcome = await caller.call(order_spec(api), {"order_id": "A-1042"})
        await caller.aclose()
        assert not client.is_closed

    assert outcome.status == ActionStatus.OK
    assert api.received[0].headers["user-agent"] == "supportbot-test"
