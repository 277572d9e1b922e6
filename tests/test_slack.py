"""Slack app mode against a fake Slack over real HTTP: threads, visitor messages, replies back, bad requests."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from service.api.app import create_app
from service.models import AuditEntry, Conversation, Escalation, Message, OutboxEvent, SlackThread, User, utcnow
from service.runtime import Runtime
from service.slack.delivery import slack_sender
from service.slack.signing import slack_signature

from .conftest import make_settings
from .factories import send, start_conversation
from .fake_slack import FakeSlack, running_slack
from .upstream_server import serving

TOKEN = "xoxb-test-bot-token"
SECRET = "slack-signing-secret-for-tests"
CHANNEL = "C0SUPPORT"
SLACK_USERS = {
    "UANA": {"email": "Ana@Example.com", "name": "Ana from Slack"},
    "URITA": {"email": "rita@example.com", "name": "Rita"},
    "UNOBODY": {"email": "nobody@example.com", "name": "Nobody"},
}


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with running_slack(TOKEN, SLACK_USERS) as fake:
        yield fake


@pytest.fixture
def slack_runtime(tmp_path: Path, database_url: str, fake_slack: FakeSlack) -> Runtime:
    runtime = Runtime.build(make_settings(
        tmp_path, database_url, slack_bot_token=TOKEN, slack_signing_secret=SECRET, slack_channel=CHANNEL,
        slack_api_url=fake_slack.url, public_url="https://bot.example", webhook_timeout=2.0,
        outbox_poll_interval=0.02))
    with runtime.handoff.sessions.begin() as session:
        session.add_all([User(email="ana@example.com", name="Ana Agent", role="agent"),
                         User(email="rita@example.com", name="Rita Reviewer", role="reviewer")])
    return runtime


@pytest.fixture
async def api(slack_runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """The service over real HTTP, its lifespan running the Slack sender (as in production)."""
    assert slack_sender(slack_runtime) is not None
    with serving(create_app(runtime=slack_runtime)) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            yield client


async def until(check: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def until_async(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 10.0) -> Any:
    """`until` for a check that has to await (an HTTP call)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def signed_headers(body: bytes, *, secret: str = SECRET, age: int = 0) -> dict[str, str]:
    """The headers Slack sends with `body`: its timestamp (`age` seconds ago) and v0 signature."""
    timestamp = str(int(time.time()) - age)
    return {"Content-Type": "application/json", "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": slack_signature(secret, timestamp, body)}


def signed(payload: dict[str, Any], *, secret: str = SECRET, age: int = 0) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    return body, signed_headers(body, secret=secret, age=age)


async def next_event(lines: AsyncIterator[str], kind: str, timeout: float = 10.0) -> dict[str, Any]:
    """The data of the next live event (SSE) of `kind`."""
    async with asyncio.timeout(timeout):
        async for line in lines:
            if line.startswith("data: ") and (event := json.loads(line[6:]))["type"] == kind:
                return dict(event)
    raise AssertionError("the event stream ended")


def thread_event(thread_ts: str, user: str, text: str, event_id: str, **extra: Any) -> dict[str, Any]:
    event = {"type": "message", "channel": CHANNEL, "user": user, "text": text, "ts": f"{time.time():.6f}",
             "thread_ts": thread_ts, "client_msg_id": f"msg-{event_id}", **extra}
    return {"type": "event_callback", "event_id": event_id, "event": event}


def thread_of(runtime: Runtime, conversation_id: str) -> SlackThread | None:
    with runtime.handoff.sessions() as session:
        return session.get(SlackThread, conversation_id)


def count(runtime: Runtime, model: Any, *where: Any) -> int:
    with runtime.handoff.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def outbox_rows(runtime: Runtime) -> list[OutboxEvent]:
    with runtime.handoff.sessions() as session:
        return list(session.scalars(select(OutboxEvent).order_by(OutboxEvent.id)))


async def open_handoff(api: httpx.AsyncClient, runtime: Runtime, fake: FakeSlack) -> tuple[str, dict[str, str], str]:
    """A visitor asks for a human; returns the conversation, its auth and the Slack thread's ts."""
    conversation_id, auth = await start_conversation(api)
    assert (await send(api, conversation_id, auth, "can I talk to a human please")).json()["escalated"] is True
    thread = await until(lambda: (t := thread_of(runtime, conversation_id)) and t.thread_ts and t, "the thread ts")
    return conversation_id, auth, str(thread.thread_ts)


async def test_round_trip_handoff_thread_visitor_message_and_reply_from_slack(
    api: httpx.AsyncClient, slack_runtime: Runtime, fake_slack: FakeSlack
) -> None:
    conversation_id, auth, ts = await open_handoff(api, slack_runtime, fake_slack)

    (opened,) = fake_slack.posts()
    assert opened["channel"] == CHANNEL and "thread_ts" not in opened and opened["ts"] == ts
    assert "needs a human (user_request)" in opened["text"]
    assert "Customer: can I talk to a human please" in opened["text"]
    assert f"<https://bot.example/admin/conversations/{conversation_id}|Open transcript>" in opened["text"]
    assert fake_slack.attempts()[0].token == TOKEN

    await send(api, conversation_id, auth, "My invoice is #42 <!channel>")
    posted = await until(lambda: [p for p in fake_slack.posts() if p.get("thread_ts") == ts], "the visitor's message")
    assert posted[0]["channel"] == CHANNEL
    assert posted[0]["text"] == "*Visitor:* My invoice is #42 &lt;!channel&gt;", "the visitor cannot ping the channel"

    body, headers = signed(thread_event(ts, "UANA", "Found it &amp; fixed: <https://x.example/i/42|invoice 42>", "Ev1"))
    admin = {"Authorization": f"Bearer {slack_runtime.admin_token}"}
    async with api.stream("GET", f"/admin/api/events?conversation_id={conversation_id}", headers=admin) as live:
        lines = live.aiter_lines()
        async for line in lines:  # subscribed once it says so
            if line == ": connected":
                break
        answered = await api.post("/slack/events", content=body, headers=headers)
        event = await next_event(lines, "agent_reply")
    assert event["conversation_id"] == conversation_id and event["author"] == "Ana Agent", "agents' pages hear of it"

    assert answered.status_code == 200 and answered.json() == {"ok": True}

    async def agent_replies() -> list[dict[str, Any]]:
        seen = (await api.get(f"/api/conversations/{conversation_id}", headers=auth)).json()  # the widget's view
        return [m for m in seen["messages"] if m["role"] == "agent"]

    agent = await until_async(agent_replies, "the agent reply in the widget")
    assert [(m["content"], m["author"]) for m in agent] == [
        ("Found it & fixed: invoice 42 (https://x.example/i/42)", "Ana Agent")]
    assert count(slack_runtime, AuditEntry, AuditEntry.action == "agent_reply",
                 AuditEntry.actor == "ana@example.com") == 1
    assert [c.args for c in fake_slack.attempts("users.info")] == [{"user": "UANA"}]

    # Slack sends the event again (we were slow): answered 200, posted once.
    retry_headers = {**headers, "X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    again = await api.post("/slack/events", content=body, headers=retry_headers)
    assert again.status_code == 200
    # A later reply, also sent to the channel: handled after the retry.
    later, _ = signed(thread_event(ts, "UANA", "one more thing", "Ev2", subtype="thread_broadcast"))
    assert (await api.post("/slack/events", content=later, headers=signed_headers(later))).status_code == 200
    await until(lambda: count(slack_runtime, Message, Message.content == "one more thing") == 1, "the later reply")
    replies = [m["content"] for m in await agent_replies()]
    assert replies == ["Found it & fixed: invoice 42 (https://x.example/i/42)", "one more thing"], "the retry: no post"
    assert len(fake_slack.attempts("users.info")) == 2
    assert slack_runtime.outbox.claim_due(utcnow(), slack=False) == [], "the webhook sender never takes Slack rows"


async def test_rate_limit_is_honoured_through_the_outbox(
    api: httpx.AsyncClient, slack_runtime: Runtime, fake_slack: FakeSlack
) -> None:
    # Longer than the first backoff (2 s +-20 %), so only honouring Retry-After passes.
    fake_slack.rate_limit(times=1, retry_after=3)

    conversation_id, auth, ts = await open_handoff(api, slack_runtime, fake_slack)

    (row,) = await until(lambda: [r for r in outbox_rows(slack_runtime) if r.status == "delivered"], "delivery")
    first, second = fake_slack.attempts()
    assert second.at - first.at >= 3.0, "the second attempt waited for Retry-After"
    assert (row.event, row.status, row.attempts) == ("slack.thread", "delivered", 2)
    assert fake_slack.posts()[0]["ts"] == ts


async def test_permanent_slack_error_kills_the_row_with_the_reason(
    api: httpx.AsyncClient, slack_runtime: Runtime, fake_slack: FakeSlack
) -> None:
    fake_slack.fail_with("channel_not_found")
    conversation_id, auth = await start_conversation(api)
    await send(api, conversation_id, auth, "can I talk to a human please")

    row = await until(lambda: [r for r in outbox_rows(slack_runtime) if r.status == "dead"], "a dead row")
    assert row[0].attempts == 1 and "channel_not_found" in (row[0].last_error or "")
    assert len(fake_slack.attempts()) == 1
    thread = thread_of(slack_runtime, conversation_id)
    assert thread is not None and thread.thread_ts is None, "no thread was opened"


async def test_a_handoff_from_before_slack_has_no_thread_and_sends_nothing(
    api: httpx.AsyncClient, slack_runtime: Runtime, fake_slack: FakeSlack
) -> None:
    conversation_id, auth = await start_conversation(api)
    with slack_runtime.handoff.sessions.begin() as session:  # escalated while Slack app mode was off
        session.add(Escalation(conversation_id=conversation_id, reason="user_request"))
        session.get_one(Conversation, conversation_id).status = "escalated"

    assert (await send(api, conversation_id, auth, "still there?")).json()["escalated"] is True

    assert outbox_rows(slack_runtime) == [] and thread_of(slack_runtime, conversation_id) is None


async def test_url_verification_answers_the_challenge(api: httpx.AsyncClient) -> None:
    body, headers = signed({"type": "url_verification", "challenge": "c-123", "token": "legacy"})

    response = await api.post("/slack/events", content=body, headers=headers)

    assert response.status_code == 200 and response.json() == {"challenge": "c-123"}


def seeded_thread(runtime: Runtime) -> tuple[str, str]:
    """A conversation with an open Slack thread, written directly (the round trip test opens one for real)."""
    conversation = runtime.log.create_conversation()
    ts = "1700000000.000100"
    with runtime.handoff.sessions.begin() as session:
        session.add(SlackThread(conversation_id=conversation.id, channel=CHANNEL, thread_ts=ts))
    return conversation.id, ts


async def test_unsigned_or_stale_requests_are_refused_and_change_nothing(
    api: httpx.AsyncClient, slack_runtime: Runtime, fake_slack: FakeSlack
) -> None:
    _, ts = seeded_thread(slack_runtime)
    forgeries = ["wrong secret", "stale", "missing", "tampered"]
    for forgery in forgeries:
        body, headers = signed(thread_event(ts, "UANA", "I am Ana, honest", f"Ev-{forgery}"),
                               secret="guessed" if forgery == "wrong secret" else SECRET,
                               age=400 if forgery == "stale" else 0)
        if forgery == "missing":
            headers = {"Content-Type": "application/json"}
        if forgery == "tampered":
            body = body.replace(b"honest", b"HONEST")

        response = await api.post("/slack/events", content=body, headers=headers)

        assert response.status_code == 401, forgery
        assert response.json()["error"]["code"] == "slack_signature_invalid"
    assert count(slack_runtime, Message) == 0
    with slack_runtime.handoff.sessions() as session:
        refused = list(session.scalars(select(AuditEntry).where(AuditEntry.action == "slack_refused")
                                       .order_by(AuditEntry.id)))
    assert [entry.details for entry in refused] == [
        {"reason": "signature does not match"}, {"reason": "stale timestamp"},
        {"reason": "missing signature or timestamp"}, {"reason": "signature does not match"}]
    assert fake_slack.calls == []
    # The same reply, signed: it gets through, so the refusals above were the signature's doing.
    body, headers = signed(thread_event(ts, "UANA", "I am Ana, honest", "Ev-signed"))
    assert (await api.post("/slack/events", content=body, headers=headers)).status_code == 200
    await until(lambda: count(slack_runtime, Message) == 1, "the signed reply")


async def test_replies_from_unmapped_slack_users_are_refused_in_the_thread(
    api: httpx.AsyncClient, slack_runtime: Runtime, fake_slack: FakeSlack
) -> None:
    conversation_id, ts = seeded_thread(slack_runtime)
    refusals = {
        "UNOBODY": "no enabled supportbot user with the e-mail nobody@example.com",
        "URITA": "rita@example.com is a reviewer and may not write to visitors",
        "UGHOST": "unknown Slack user",
    }
    for slack_user in refusals:
        body, headers = signed(thread_event(ts, slack_user, "let me answer", f"Ev-{slack_user}"))
        assert (await api.post("/slack/events", content=body, headers=headers)).status_code == 200

    notes = await until(lambda: len(fake_slack.posts()) == 3 and fake_slack.posts(), "three notes in the thread")
    assert {(note["thread_ts"], note["text"]) for note in notes} == {
        (ts, f":no_entry: Not sent to the visitor: {reason}.") for reason in refusals.values()}
    assert count(slack_runtime, Message) == 0
    with slack_runtime.handoff.sessions() as session:
        refused = list(session.scalars(select(AuditEntry).where(AuditEntry.action == "slack_refused")))
    assert {(entry.target, entry.details["slack_user"], entry.details["reason"]) for entry in refused  # type: ignore[index]
            } == {(f"conversation:{conversation_id}", user, reason) for user, reason in refusals.items()}


async def test_bot_posts_edits_and_foreign_threads_are_ignored(
    api: httpx.AsyncClient, slack_runtime: Runtime, fake_slack: FakeSlack
) -> None:
    _, ts = seeded_thread(slack_runtime)
    ignored = [
        thread_event(ts, "UANA", "our own post", "Ev1", bot_id="B1"),
        thread_event(ts, "UANA", "edited", "Ev2", subtype="message_changed"),
        thread_event("999.000", "UANA", "another thread", "Ev3"),
        {**thread_event(ts, "UANA", "top level", "Ev4"), "event": {"type": "message", "channel": CHANNEL,
                                                                    "user": "UANA", "text": "hi", "ts": ts}},
    ]
    for payload in ignored:
        body, headers = signed(payload)
        assert (await api.post("/slack/events", content=body, headers=headers)).status_code == 200

    assert count(slack_runtime, Message) == 0
    assert fake_slack.calls == []
