"""Training data of turns that called actions: per round an assistant message with `tool_calls` and one `tool`
message per call (exactly what the model was given), then the final answer; on SQLite and PostgreSQL, from rows
written directly and through real turns (a call made on the visitor's Confirm)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from sqlalchemy.orm import Session, sessionmaker

from service.actions.files import ActionFiles
from service.api import create_app
from service.db import create_db_engine, make_session_factory
from service.export import Exporter, ExportOptions
from service.export_format import check_chat
from service.models import ActionCall, Message
from service.review import ReviewDesk
from service.runtime import Runtime

from . import fake_model
from .action_rows import SYSTEM_PROMPT, Call, new_conversation, seed_turn
from .conftest import MODEL_BASE_URL, make_settings
from .factories import send, start_conversation
from .fake_team_api import cancel_action, running_team_api, write_action

ORDER_TOOL = {"type": "function", "function": {
    "name": "get_order_status", "description": "Look up the shipping status of one of the visitor's orders.",
    "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}}}
SHIPPED = {"status": "shipped", "carrier": "DHL", "eta": "2026-12-05"}


@pytest.fixture
def sessions(database_url: str) -> sessionmaker[Session]:
    return make_session_factory(create_db_engine(database_url))


def export(sessions: sessionmaker[Session], tools: list[dict[str, Any]] | None = None,
           **options: Any) -> list[dict[str, Any]]:
    exporter = Exporter(sessions, ExportOptions(**options), action_tools=tools or [])
    return [json.loads(line.text) for line in exporter.lines()]


def stored_content(sessions: sessionmaker[Session], call_id: int) -> str:
    with sessions() as session:
        call = session.get(ActionCall, call_id)
        assert call is not None
        return call.tool_content


def test_a_corrected_miss_exports_its_call_and_result_and_the_correction_replaces_only_the_answer(
    sessions: sessionmaker[Session],
) -> None:
    conversation = new_conversation(sessions)
    turn = seed_turn(sessions, conversation, "Where is my order A-1042?", "It is somewhere.",
                     [Call("get_order_status", {"order_id": "A-1042"}, result=SHIPPED)])
    ReviewDesk(sessions).correct(turn.reply_id, "Order A-1042 shipped with DHL; it arrives on 5 December.", "ana")

    (line,) = export(sessions, [ORDER_TOOL], select="corrected")

    assert check_chat(line) == []
    system, user, calling, tool, final = line["messages"]
    assert system == {"role": "system", "content": SYSTEM_PROMPT}
    assert user == {"role": "user", "content": "Where is my order A-1042?"}
    call_id = f"call_{turn.reply_id}_0"
    assert calling == {"role": "assistant", "content": None, "weight": 1, "tool_calls": [
        {"id": call_id, "type": "function",
         "function": {"name": "get_order_status", "arguments": '{"order_id": "A-1042"}'}}]}
    assert tool == {"role": "tool", "tool_call_id": call_id, "content": stored_content(sessions, turn.call_ids[0])}
    assert json.loads(tool["content"]) == {"status": "ok", "data": SHIPPED}
    assert final == {"role": "assistant", "content": "Order A-1042 shipped with DHL; it arrives on 5 December.",
                     "weight": 1}
    assert line["tools"] == [line["tools"][0], ORDER_TOOL]
    assert line["tools"][0]["function"]["name"] == "escalate_to_human"


def test_rounds_keep_their_order_and_earlier_turns_are_only_their_text_as_the_model_was_given_them(
    sessions: sessionmaker[Session],
) -> None:
    conversation = new_conversation(sessions)
    first = seed_turn(sessions, conversation, "Is order A-1 shipped?", "Yes, A-1 shipped.",
                      [Call("get_order_status", {"order_id": "A-1"}, result=SHIPPED)])
    second = seed_turn(sessions, conversation, "And orders B-2 and C-3?", "B-2 is late.", [
        Call("get_order_status", {"order_id": 2}, status="invalid_arguments", http_status=None, latency_ms=None,
             error="order_id: 2 is not of type 'string'"),
        Call("get_order_status", {"order_id": "B-2"}, round=1, result={"status": "late"}),
        Call("get_order_status", {"order_id": "C-3"}, round=1, status="rejected", http_status=404, result={}),
    ])
    ReviewDesk(sessions).correct(second.reply_id, "B-2 is late; there is no order C-3 on your account.", "ana")

    (line,) = export(sessions, select="corrected")

    assert check_chat(line) == []
    shape = [(m["role"], m.get("weight"), [c["function"]["arguments"] for c in m.get("tool_calls", ())])
             for m in line["messages"][1:]]
    assert shape == [
        ("user", None, []),
        ("assistant", 0, []),  # an earlier turn: its text only (a turn's model never sees earlier tool results)
        ("user", None, []),
        ("assistant", 0, ['{"order_id": 2}']),  # arguments the model got wrong: never learned
        ("tool", None, []),
        ("assistant", 1, ['{"order_id": "B-2"}', '{"order_id": "C-3"}']),  # two calls of one round
        ("tool", None, []),
        ("tool", None, []),
        ("assistant", 1, []),
    ]
    tools = [m for m in line["messages"] if m["role"] == "tool"]
    assert [t["tool_call_id"] for t in tools] == [f"call_{second.reply_id}_0", f"call_{second.reply_id}_1",
                                                 f"call_{second.reply_id}_2"]
    assert json.loads(tools[0]["content"])["status"] == "invalid_arguments"
    assert json.loads(tools[2]["content"])["status"] == "rejected"
    assert line["messages"][2]["content"] == "Yes, A-1 shipped." and first.call_ids
    # without the action files, an action is still declared (by name) so the line stays valid
    assert line["tools"][1] == {"type": "function",
                                "function": {"name": "get_order_status", "parameters": {"type": "object"}}}


def test_personal_data_in_arguments_and_results_is_redacted_like_the_messages(
    sessions: sessionmaker[Session],
) -> None:
    conversation = new_conversation(sessions)
    turn = seed_turn(sessions, conversation, "I'm jane@example.com, where are my orders?", "Let me look.", [
        Call("find_orders", {"email": "jane@example.com"},
             result={"orders": [{"id": "A-7", "contact": "jane@example.com", "phone": "+49 30 1234 5678"}]}),
    ])
    ReviewDesk(sessions).correct(turn.reply_id, "Jane, your order A-7 is on its way: jane@example.com.", "ana")

    (line,) = export(sessions, select="corrected")
    raw = export(sessions, select="corrected", redact=False)[0]

    assert check_chat(line) == []
    text = json.dumps(line)
    assert "jane@example.com" not in text and "1234 5678" not in text
    _, user, calling, tool, final = line["messages"]
    assert user["content"] == "I'm [EMAIL], where are my orders?"
    assert json.loads(calling["tool_calls"][0]["function"]["arguments"]) == {"email": "[EMAIL]"}
    assert json.loads(tool["content"])["data"]["orders"][0] == {"id": "A-7", "contact": "[EMAIL]",
                                                                "phone": "[PHONE]"}
    assert final["content"] == "Jane, your order A-7 is on its way: [EMAIL]."
    assert json.loads(raw["messages"][2]["tool_calls"][0]["function"]["arguments"]) == {
        "email": "jane@example.com"}


def test_a_good_reply_that_called_an_action_then_handed_over_keeps_both_kinds_of_tool_calls(
    sessions: sessionmaker[Session],
) -> None:
    conversation = new_conversation(sessions)
    turn = seed_turn(sessions, conversation, "Where is order A-9?", "A colleague will look into it.", [
        Call("get_order_status", {"order_id": "A-9"}, status="failed", http_status=503, result=None,
             error="the system answered 503")], review="good")
    escalate = {"id": "call_esc", "type": "function", "function": {
        "name": "escalate_to_human", "arguments": json.dumps({"reason": "action_failed", "summary": "order A-9"})}}
    with sessions.begin() as session:
        reply = session.get(Message, turn.reply_id)
        assert reply is not None
        reply.tool_calls = [escalate]

    (line,) = export(sessions, [ORDER_TOOL], select="all")

    assert check_chat(line) == []
    calling, tool, final = line["messages"][2:]
    assert calling["tool_calls"][0]["function"]["name"] == "get_order_status" and calling["weight"] == 1
    assert json.loads(tool["content"])["status"] == "failed"
    assert final["tool_calls"] == [escalate] and final["content"] == "A colleague will look into it."
    assert [t["function"]["name"] for t in line["tools"]] == ["escalate_to_human", "get_order_status"]


def test_the_check_refuses_a_tool_answer_without_its_call_and_an_undeclared_tool() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "get_order_status", "arguments": "{}"}}
    line = {"messages": [{"role": "user", "content": "where?"},
                         {"role": "assistant", "content": None, "tool_calls": [call]},
                         {"role": "tool", "tool_call_id": "c2", "content": "{}"},
                         {"role": "assistant", "content": "here", "weight": 1}],
            "tools": [{"type": "function", "function": {"name": "escalate_to_human"}}]}

    assert check_chat(line) == ["messages[2]: tool_call_id 'c2' answers no earlier call",
                                "tool 'get_order_status' is called but not in 'tools'"]


async def test_a_call_made_on_confirm_exports_exactly_as_the_model_was_given_it(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORDERS_API_TOKEN", "orders-token-0123456789")
    asked: list[dict[str, Any]] = []

    def model(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        asked.append(body)
        if body["messages"][-1]["role"] == "tool":
            return fake_model.completion("Done: order A-1043 is cancelled and you will get a refund.")
        return fake_model.completion(None, tool_calls=[fake_model.tool_call(
            "cancel_order", {"order_id": "A-1043", "reason": "changed my mind"}, call_id="call_cancel")])

    with running_team_api(token="orders-token-0123456789") as api, \
            respx.mock(base_url=MODEL_BASE_URL, assert_all_called=False) as mock:
        mock.route(host="127.0.0.1").pass_through()
        mock.post("/chat/completions").mock(side_effect=model)
        write_action(tmp_path / "actions", cancel_action(api.url))
        runtime = Runtime.build(make_settings(tmp_path, database_url, openai_api_key="sk-test-key",
                                              openai_base_url=MODEL_BASE_URL, model="gpt-4o-mini",
                                              actions_dir=tmp_path / "actions"))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(runtime=runtime)),
                                     base_url="http://supportbot.test") as client:
            conversation, auth = await start_conversation(client)
            asking = (await send(client, conversation, auth, "Please cancel order A-1043, I changed my mind")).json()
            waiting = asking["confirmation"]["action_call_id"]
            done = await client.post(f"/api/conversations/{conversation}/actions/{waiting}", headers=auth,
                                     json={"decision": "confirm"})
            assert done.status_code == 200, done.text
            reviewed = await client.post(f"/admin/api/messages/{done.json()['reply']['message_id']}/review",
                                         headers={"Authorization": f"Bearer {runtime.admin_token}"},
                                         json={"verdict": "good"})
            assert reviewed.status_code == 200, reviewed.text
        assert len(api.cancels()) == 1
    tools = ActionFiles(tmp_path / "actions", interval=0).current().tools()
    lines = [json.loads(x.text) for x in Exporter(runtime.log.sessions, ExportOptions(select="all"),
                                                   action_tools=tools).lines()]
    await runtime.aclose()

    (line,) = lines
    assert check_chat(line) == []
    given = asked[-1]["messages"]
    unweighted = [{k: v for k, v in m.items() if k != "weight"} for m in line["messages"]]
    assert unweighted[:-1] == given, "the example is the conversation as the model was given it"
    calling = line["messages"][-3]
    assert calling["weight"] == 0, "the call was the visitor's Confirm, not the model's choice"
    assert line["messages"][-1] == {"role": "assistant", "weight": 1,
                                    "content": "Done: order A-1043 is cancelled and you will get a refund."}
    assert [t["function"]["name"] for t in line["tools"]] == ["escalate_to_human", "cancel_order"]
    assert line["tools"][1] == tools[0]
