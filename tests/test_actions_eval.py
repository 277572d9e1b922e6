"""`supportbot eval` on tool use: cases expecting an action (`expect.action`), judged on the model's first
response, the action-match rate per prompt x model, and the team's API never called."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from service.cases import load_cases
from service.errors import ConfigError
from service.evals import Column, EvalRunner, format_table

from . import fake_model
from .conftest import MODEL_BASE_URL, make_settings
from .fake_team_api import cancel_action, order_action, running_team_api, write_action

CASES = [
    {"id": "where", "messages": [{"role": "user", "content": "Where is my order A-1042?"}],
     "expect": {"action": {"name": "get_order_status", "arguments": {"order_id": "A-1042"}}}},
    {"id": "wrong-order", "messages": [{"role": "user", "content": "Status of A-1042 please"}],
     "expect": {"action": {"name": "get_order_status", "arguments": {"order_id": "A-1042"}}}},
    {"id": "in-text", "messages": [{"role": "user", "content": "Has A-1042 shipped?"}],
     "expect": {"action": {"name": "get_order_status"}}},
    {"id": "other-action", "messages": [{"role": "user", "content": "What about order B-7?"}],
     "expect": {"action": {"name": "get_order_status", "arguments": {"order_id": "B-7"}}}},
    {"id": "no-action", "messages": [{"role": "user", "content": "Do you ship to Norway?"}],
     "expect": {"escalate": False, "contains": ["Norway"]}},
]
# What the model does with each question on its first response; after a tool result it answers in text.
FIRST = {
    "Where is my order A-1042?": [fake_model.tool_call("get_order_status", {"order_id": "A-1042", "verbose": True})],
    "Status of A-1042 please": [fake_model.tool_call("get_order_status", {"order_id": "A-9999"})],
    "Has A-1042 shipped?": "Yes, it shipped yesterday.",
    "What about order B-7?": [fake_model.tool_call("cancel_order", {"order_id": "B-7"})],
    "Do you ship to Norway?": "Yes, we ship to Norway.",
}


def write_cases(path: Path, cases: list[dict[str, Any]]) -> Path:
    path.write_text("\n".join(json.dumps(case) for case in cases) + "\n", encoding="utf-8")
    return path


async def test_action_cases_pass_only_when_the_first_response_calls_that_action_with_those_arguments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORDERS_API_TOKEN", "orders-token-0123456789")
    offered: list[list[str]] = []

    def model(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        last = body["messages"][-1]
        if last["role"] == "tool":
            return fake_model.completion("Sorry, I could not look that order up just now.")
        offered.append([tool["function"]["name"] for tool in body.get("tools", [])])
        first = FIRST[last["content"]]
        return fake_model.completion(first) if isinstance(first, str) else fake_model.completion(None, tool_calls=first)

    with running_team_api() as api, respx.mock(base_url=MODEL_BASE_URL, assert_all_called=False) as mock:
        mock.route(host="127.0.0.1").pass_through()
        mock.post("/chat/completions").mock(side_effect=model)
        actions = tmp_path / "actions"
        write_action(actions, order_action(f"{api.url}/orders/{{order_id}}"))
        write_action(actions, cancel_action(api.url))
        settings = make_settings(tmp_path, "sqlite://", openai_api_key="sk-test-key", openai_base_url=MODEL_BASE_URL,
                                 actions_dir=actions)
        cases = load_cases(write_cases(tmp_path / "cases.jsonl", CASES))

        report = await EvalRunner(settings, [Column("support@v2", "gpt-4o-mini")]).run(cases)

        assert api.received == [], "an eval never calls the team's API"
    assert offered == [["escalate_to_human", "cancel_order", "get_order_status"]] * 5  # files in path order
    results = {r.id: r for r in report.cases}
    assert {case_id: r.failures for case_id, r in results.items()} == {
        "where": [],
        "wrong-order": ['called get_order_status with {"order_id": "A-9999"}, expected arguments '
                        '{"order_id": "A-1042"}'],
        "in-text": ["expected a call to get_order_status, got an answer in text"],
        "other-action": ["expected a call to get_order_status, got cancel_order"],
        "no-action": [],
    }
    assert results["where"].actions == [{"name": "get_order_status",
                                         "arguments": {"order_id": "A-1042", "verbose": True}}]
    assert {case_id: r.action_matched for case_id, r in results.items()} == {
        "where": True, "wrong-order": False, "in-text": False, "other-action": False, "no-action": None}
    (column,) = report.columns
    assert column.action_match_rate == 1 / 4 and column.pass_rate == 2 / 5
    header, _, row, *_ = format_table(report).splitlines()
    assert header.split()[3:9] == ["pass", "esc", "P", "esc", "R", "action"]
    assert row.split()[3:7] == ["40%", "-", "-", "25%"]  # pass, escalation precision and recall, action match
    assert report.as_json()["columns"][0]["action_match_rate"] == 0.25


async def test_an_offline_column_never_calls_an_action_so_action_cases_fail(tmp_path: Path) -> None:
    actions = tmp_path / "actions"
    write_action(actions, order_action("https://api.acme.example/orders/{order_id}"))
    settings = make_settings(tmp_path, "sqlite://", actions_dir=actions)
    cases = load_cases(write_cases(tmp_path / "cases.jsonl", CASES[:1]))

    report = await EvalRunner(settings, [Column("support@v2", "offline")]).run(cases)

    (result,) = report.cases
    assert result.failures == ["expected a call to get_order_status, got an answer in text"]
    assert report.columns[0].action_match_rate == 0.0


@pytest.mark.parametrize(("action", "reason"), [
    ("get_order_status", "'expect.action' must be"),
    ({"arguments": {"order_id": "A-1"}}, "'expect.action' must be"),
    ({"name": "get_order_status", "args": {}}, "'expect.action' must be"),
    ({"name": "get_order_status", "arguments": ["A-1"]}, "'expect.action.arguments' must be an object"),
])
def test_a_malformed_expected_action_names_the_line(tmp_path: Path, action: Any, reason: str) -> None:
    bad = {"id": "bad", "messages": [{"role": "user", "content": "Where is A-1?"}], "expect": {"action": action}}
    path = write_cases(tmp_path / "cases.jsonl", [CASES[0], bad])

    with pytest.raises(ConfigError) as raised:
        load_cases(path)

    assert raised.value.line == 2 and reason in raised.value.reason
