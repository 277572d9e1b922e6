"""Handoff end to end: deterministic escalation before the model, pause, agent replies, resolution, feedback."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
import respx
from sqlalchemy import select

from service.models import Conversation, Escalation, Feedback, Message
from service.runtime import Runtime

from . import fake_model
from .factories import parse_sse, send, start_conversation


def _admin(runtime: Runtime) -> dict[str, str]:
    return {"Authorization": f"Bearer {runtime.admin_token}"}


def _escalations(runtime: Runtime) -> list[Escalation]:
    with runtime.log.sessions() as session:
        return list(session.scalars(select(Escalation).order_by(Escalation.id)))


async def test_refund_request_escalates_before_and_without_the_model(
    hosted_client: httpx.AsyncClient, hosted_runtime: Runtime, model_mock: respx.MockRouter
) -> None:
    route = model_mock.post("/chat/completions").mock(return_value=fake_model.completion("I can refund that!"))
    conversation_id, auth = await start_conversation(hosted_client)

    body = (await send(hosted_client, conversation_id, auth, "I want a refund for last month's charge")).json()

    assert route.call_count == 0, "a policy topic never waits on the model"
    assert body["escalated"] is True and body["escalation"]["reason"] == "policy:refund"
    assert body["reply"]["content"] == hosted_runtime.settings.handoff_reply
    (escalation,) = _escalations(hosted_runtime)
    assert escalation.message_id == body["message_id"]
    assert "Customer: I want a refund for last month's charge" in (escalation.summary or "")
    with hosted_runtime.log.sessions() as session:
        reply = session.get(Message, body["reply"]["message_id"])
    assert reply is not None and reply.provider == "handoff" and reply.prompt_version == "v2"


async def test_escalation_streams_in_the_same_sse_shape(client: httpx.AsyncClient) -> None:
    conversation_id, auth = await start_conversation(client)

    response = await client.post(f"/api/conversations/{conversation_id}/messages",
                                 headers={**auth, "Accept": "text/event-stream"},
                                 json={"content": "can I talk to a human please"})

    events = parse_sse(response.text)
    assert [name for name, _ in events] == ["delta", "done"]
    assert events[-1][1]["escalated"] is True
    assert events[-1][1]["escalation"]["reason"] == "user_request"  # type: ignore[index]


async def test_bot_pauses_while_escalated_and_answers_again_after_resolution(
    hosted_client: httpx.AsyncClient, hosted_runtime: Runtime, model_mock: respx.MockRouter
) -> None:
    route = model_mock.post("/chat/completions").mock(return_value=fake_model.completion("Model answer."))
    conversation_id, auth = await start_conversation(hosted_client)
    await send(hosted_client, conversation_id, auth, "get me an agent")

    paused = (await send(hosted_client, conversation_id, auth, "My export also fails")).json()

    assert route.call_count == 0
    assert paused["reply"]["content"] == hosted_runtime.settings.escalated_ack_reply
    assert paused["escalated"] is True and paused["escalation"]["reason"] == "user_request"
    assert len(_escalations(hosted_runtime)) == 1, "an acknowledgement is not a new escalation"

    resolved = await hosted_client.post(f"/admin/api/conversations/{conversation_id}/resolve",
                                        headers=_admin(hosted_runtime))
    assert resolved.json() == {"conversation_id": conversation_id, "status": "resolved"}
    answered = (await send(hosted_client, conversation_id, auth, "How do I export to PDF?")).json()

    assert route.call_count == 1
    assert answered["reply"]["content"] == "Model answer." and answered["escalated"] is False
    with hosted_runtime.log.sessions() as session:
        assert session.get(Conversation, conversation_id).status == "open"  # type: ignore[union-attr]
    assert _escalations(hosted_runtime)[0].resolved_at is not None


async def test_agent_reply_reaches_the_visitor_and_links_the_missed_bot_reply(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    conversation_id, auth = await start_conversation(client)
    missed = (await send(client, conversation_id, auth, "What is the airspeed of an unladen swallow?")).json()
    assert missed["escalation"]["reason"] == "no_answer"

    posted = await client.post(f"/admin/api/conversations/{conversation_id}/messages", headers=_admin(runtime),
                               json={"content": "About 11 m/s, for a European swallow.", "author": "Dana"})
    transcript = (await client.get(f"/api/conversations/{conversation_id}", headers=auth)).json()

    assert posted.status_code == 201
    agent = posted.json()
    assert agent["role"] == "agent" and agent["author"] == "Dana"
    assert agent["corrects_id"] == missed["reply"]["message_id"]
    assert transcript["messages"][-1] == {**transcript["messages"][-1], "role": "agent",
                                          "content": "About 11 m/s, for a European swallow."}


async def test_agent_correction_target_must_be_a_bot_reply_of_the_conversation(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    conversation_id, auth = await start_conversation(client)
    turn = (await send(client, conversation_id, auth, "How do I reset my password?")).json()

    response = await client.post(f"/admin/api/conversations/{conversation_id}/messages", headers=_admin(runtime),
                                 json={"content": "x", "corrects_message_id": turn["message_id"]})

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_correction_target"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token-wrong-token"}])
async def test_admin_api_refuses_without_the_admin_token(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    conversation_id, auth = await start_conversation(client)

    for response in [
        await client.get("/admin/api/escalations", headers=headers),
        await client.get(f"/admin/api/conversations/{conversation_id}", headers=headers),
        await client.post(f"/admin/api/conversations/{conversation_id}/messages", headers=headers,
                          json={"content": "hi"}),
        await client.post(f"/admin/api/conversations/{conversation_id}/resolve", headers=headers),
        await client.get("/admin/api/escalations", headers=auth),  # a visitor token is not an admin token
    ]:
        assert response.status_code == 401


async def test_handoff_button_with_contact_and_note(client: httpx.AsyncClient, runtime: Runtime) -> None:
    conversation_id, auth = await start_conversation(client)
    await send(client, conversation_id, auth, "How do I reset my password?")

    first = await client.post(f"/api/conversations/{conversation_id}/handoff", headers=auth,
                              json={"contact": "jane@example.com", "note": "Reset mail never arrives"})
    again = await client.post(f"/api/conversations/{conversation_id}/handoff", headers=auth,
                              json={"contact": "jane.doe@example.com"})

    assert first.status_code == again.status_code == 200
    assert first.json()["escalated"] is True and first.json()["escalation"]["reason"] == "user_request"
    assert first.json()["reply"]["content"] == runtime.settings.handoff_reply
    assert again.json()["reply"]["content"] == runtime.settings.escalated_ack_reply
    (escalation,) = _escalations(runtime)
    assert escalation.contact == "jane.doe@example.com"
    assert "Customer: Reset mail never arrives" in (escalation.summary or "")
    listed = (await client.get("/admin/api/escalations", headers=_admin(runtime))).json()
    assert [e["conversation_id"] for e in listed] == [conversation_id]


@pytest.mark.parametrize(("payload", "code"), [
    ({"contact": "not-an-email"}, "validation_error"),
    ({"note": "x" * 5000}, "message_too_long"),
    ({"other": 1}, "validation_error"),
])
async def test_handoff_rejects_bad_input_and_writes_nothing(
    client: httpx.AsyncClient, runtime: Runtime, payload: dict[str, object], code: str
) -> None:
    conversation_id, auth = await start_conversation(client)

    response = await client.post(f"/api/conversations/{conversation_id}/handoff", headers=auth, json=payload)

    assert response.json()["error"]["code"] == code
    assert _escalations(runtime) == []


async def test_feedback_last_rating_counts_and_two_downs_in_a_row_escalate(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    conversation_id, auth = await start_conversation(client)
    first = (await send(client, conversation_id, auth, "How do I reset my password?")).json()
    second = (await send(client, conversation_id, auth, "How can I invite a teammate?")).json()
    url = f"/api/conversations/{conversation_id}/messages/{{}}/feedback"

    up = await client.post(url.format(first["reply"]["message_id"]), headers=auth, json={"rating": "up"})
    down1 = await client.post(url.format(first["reply"]["message_id"]), headers=auth,
                              json={"rating": "down", "comment": "wrong link"})
    down2 = await client.post(url.format(second["reply"]["message_id"]), headers=auth, json={"rating": "down"})

    assert up.json()["escalated"] is False and down1.json()["escalated"] is False
    assert down2.json()["escalated"] is True
    assert down2.json()["escalation"]["reason"] == "repeated_failure"
    with runtime.log.sessions() as session:
        ratings = {f.message_id: (f.rating, f.comment) for f in session.scalars(select(Feedback))}
    assert ratings == {first["reply"]["message_id"]: ("down", "wrong link"),
                       second["reply"]["message_id"]: ("down", None)}


async def test_feedback_only_on_own_bot_replies(client: httpx.AsyncClient) -> None:
    conversation_id, auth = await start_conversation(client)
    other_id, other_auth = await start_conversation(client)
    turn = (await send(client, conversation_id, auth, "How do I reset my password?")).json()
    theirs = (await send(client, other_id, other_auth, "How do I reset my password?")).json()

    on_user_message = await client.post(
        f"/api/conversations/{conversation_id}/messages/{turn['message_id']}/feedback", headers=auth,
        json={"rating": "up"})
    on_their_reply = await client.post(
        f"/api/conversations/{conversation_id}/messages/{theirs['reply']['message_id']}/feedback", headers=auth,
        json={"rating": "down"})
    bad_rating = await client.post(
        f"/api/conversations/{conversation_id}/messages/{turn['reply']['message_id']}/feedback", headers=auth,
        json={"rating": "meh"})

    assert (on_user_message.status_code, on_user_message.json()["error"]["code"]) == (422, "not_a_bot_reply")
    assert on_their_reply.status_code == 404
    assert bad_rating.status_code == 422


async def test_model_tool_call_escalates_when_streaming(
    hosted_client: httpx.AsyncClient, hosted_runtime: Runtime, model_mock: respx.MockRouter
) -> None:
    arguments = json.dumps({"reason": "needs account access", "summary": "Cannot see billing page."})
    chunks = [
        fake_model.chunk({"role": "assistant", "content": None, "tool_calls": [
            {"index": 0, "id": "call_9", "type": "function",
             "function": {"name": "escalate_to_human", "arguments": ""}}]}),
        fake_model.chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[:20]}}]}),
        fake_model.chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[20:]}}]}),
        fake_model.chunk({}, finish_reason="tool_calls"),
        fake_model.chunk(None, usage={"prompt_tokens": 300, "completion_tokens": 20, "total_tokens": 320}),
        b"data: [DONE]\n\n",
    ]
    model_mock.post("/chat/completions").mock(side_effect=lambda _r: fake_model.stream(chunks))
    conversation_id, auth = await start_conversation(hosted_client)

    response = await hosted_client.post(f"/api/conversations/{conversation_id}/messages",
                                        headers={**auth, "Accept": "text/event-stream"},
                                        json={"content": "The billing page is empty for me"})

    done = parse_sse(response.text)[-1][1]
    assert done["escalated"] is True
    assert done["escalation"] == {"reason": "model_decision", "detail": "needs account access"}
    assert done["reply"]["content"] == hosted_runtime.settings.handoff_reply  # type: ignore[index]
    (escalation,) = _escalations(hosted_runtime)
    assert escalation.summary == "Cannot see billing page."


async def test_tool_call_with_invalid_arguments_still_escalates(
    hosted_client: httpx.AsyncClient, hosted_runtime: Runtime, model_mock: respx.MockRouter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    model_mock.post("/chat/completions").mock(return_value=fake_model.completion(
        None, tool_calls=[fake_model.escalate_call(arguments='{"reason": "x", summary')]))
    conversation_id, auth = await start_conversation(hosted_client)

    with caplog.at_level(logging.WARNING):
        body = (await send(hosted_client, conversation_id, auth, "The billing page is empty for me")).json()

    assert body["escalated"] is True and body["escalation"]["reason"] == "model_decision"
    assert "invalid arguments" in caplog.text


async def test_model_wins_when_it_escalates_a_question_policy_would_answer(
    hosted_client: httpx.AsyncClient, hosted_runtime: Runtime, model_mock: respx.MockRouter
) -> None:
    model_mock.post("/chat/completions").mock(return_value=fake_model.completion(
        "Let me get a colleague.", tool_calls=[fake_model.escalate_call("unsure", "Asked about PDF export.")]))
    conversation_id, auth = await start_conversation(hosted_client)

    body = (await send(hosted_client, conversation_id, auth, "How do I export a dashboard as PDF?")).json()

    assert body["escalated"] is True and body["escalation"]["reason"] == "model_decision"
    assert body["reply"]["content"] == "Let me get a colleague."


async def test_admin_conversation_view_shows_reply_details(client: httpx.AsyncClient, runtime: Runtime) -> None:
    conversation_id, auth = await start_conversation(client)
    turn = (await send(client, conversation_id, auth, "How do I reset my password?")).json()
    await client.post(f"/api/conversations/{conversation_id}/messages/{turn['reply']['message_id']}/feedback",
                      headers=auth, json={"rating": "up"})

    detail = (await client.get(f"/admin/api/conversations/{conversation_id}", headers=_admin(runtime))).json()

    reply = detail["messages"][1]
    assert reply["provider"] == "offline" and reply["prompt_version"] == "v2" and reply["feedback"] == "up"
    assert reply["prompt_sha256"] and reply["latency_ms"] is not None
    assert detail["escalations"] == []
