"""Handoff webhooks through the durable outbox, against a real local HTTP receiver that misbehaves."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from service.api import create_app
from service.models import utcnow
from service.runtime import Runtime
from service.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

from .conftest import make_settings
from .factories import send, start_conversation

SECRET = "webhook-secret-for-tests-0123"


class Receiver:
    """A webhook receiver with an idempotency check; `script` says how to answer each request in turn."""

    def __init__(self, script: list[str]) -> None:
        self.script = list(script)
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.accepted: dict[str, int] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                mode = receiver.script.pop(0) if receiver.script else "ok"
                if mode == "slow":
                    time.sleep(1.5)
                if mode == "ok":
                    key = self.headers["Idempotency-Key"]
                    receiver.accepted[key] = receiver.accepted.get(key, 0) + 1
                self.send_response(200 if mode == "ok" else 500)
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/support"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(["fail", "slow"])
    yield r
    r.close()


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


def _runtime(tmp_path: Path, database_url: str, url: str) -> Runtime:
    return Runtime.build(make_settings(tmp_path, database_url, handoff_webhook_url=url, handoff_webhook_secret=SECRET,
                                       webhook_timeout=0.5, public_url="https://bot.example"))


async def _escalate(runtime: Runtime, messages: list[str]) -> list[str]:
    transport = httpx.ASGITransport(app=create_app(runtime=runtime))
    ids = []
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for text in messages:
            conversation_id, auth = await start_conversation(client)
            await send(client, conversation_id, auth, text)
            ids.append(conversation_id)
    return ids


async def test_failing_then_slow_receiver_gets_every_handoff_exactly_once(
    tmp_path: Path, database_url: str, receiver: Receiver
) -> None:
    runtime = _runtime(tmp_path, database_url, receiver.url)
    conversations = await _escalate(runtime, ["Can I talk to a human?", "I want a refund for March"])
    clock = Clock()
    sender = runtime.webhook_sender(clock=clock)
    assert sender is not None

    assert await sender.deliver_due() == 0, "first answers: a 500 and a timeout"
    assert await sender.deliver_due() == 0, "nothing is due before the backoff has passed"
    clock.now += timedelta(seconds=10)
    assert await sender.deliver_due() == 2
    clock.now += timedelta(hours=2)
    assert await sender.deliver_due() == 0

    assert sorted(receiver.accepted.values()) == [1, 1]
    assert runtime.outbox.counts() == {"pending": 0, "delivered": 2, "dead": 0}
    payloads = [json.loads(body) for headers, body in receiver.requests
                if headers["Idempotency-Key"] in receiver.accepted]
    for headers, body in receiver.requests:
        assert verify(SECRET, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    by_conversation = {p["conversation_id"]: p for p in payloads}
    assert set(by_conversation) == set(conversations)
    human = by_conversation[conversations[0]]
    assert human["reason"] == "user_request" and human["event"] == "conversation.escalated"
    assert human["transcript_url"] == f"https://bot.example/admin/conversations/{conversations[0]}"
    assert human["text"].startswith(f"Conversation {conversations[0]} needs a human (user_request)")
    assert by_conversation[conversations[1]]["reason"] == "policy:refund"
    await sender.aclose()
    await runtime.aclose()


async def test_receiver_down_then_service_restart_loses_nothing(tmp_path: Path, database_url: str) -> None:
    down = Receiver([])
    url = down.url
    down.close()  # nothing listens on this port any more: connection refused
    runtime = _runtime(tmp_path, database_url, url)
    await _escalate(runtime, ["real person please"])
    clock = Clock()
    first = runtime.webhook_sender(clock=clock)
    assert first is not None
    assert await first.deliver_due() == 0
    await first.aclose()
    await runtime.aclose()

    up = Receiver([])
    restarted = _runtime(tmp_path, database_url, up.url)
    later = Clock()
    later.now += timedelta(minutes=5)
    second = restarted.webhook_sender(clock=later)
    assert second is not None

    assert await second.deliver_due() == 1
    assert list(up.accepted.values()) == [1]
    await second.aclose()
    await restarted.aclose()
    up.close()


async def test_a_crashed_workers_lease_expires_and_another_delivers(
    tmp_path: Path, database_url: str
) -> None:
    receiver = Receiver([])
    runtime = _runtime(tmp_path, database_url, receiver.url)
    await _escalate(runtime, ["talk to an agent"])
    now = utcnow()

    held = runtime.outbox.claim_due(now, lease_seconds=30)  # a worker takes the row, then dies
    clock = Clock()
    sender = runtime.webhook_sender(clock=clock)
    assert sender is not None and len(held) == 1

    assert await sender.deliver_due() == 0, "the lease still holds"
    clock.now = now + timedelta(seconds=31)
    assert await sender.deliver_due() == 1
    assert list(receiver.accepted.values()) == [1]
    await sender.aclose()
    await runtime.aclose()
    receiver.close()


async def test_gives_up_after_max_attempts(tmp_path: Path, sqlite_url: str) -> None:
    receiver = Receiver(["fail"] * 10)
    settings = make_settings(tmp_path, sqlite_url, handoff_webhook_url=receiver.url,
                             handoff_webhook_secret=SECRET, webhook_max_attempts=3)
    runtime = Runtime.build(settings)
    await _escalate(runtime, ["human please"])
    clock = Clock()
    sender = runtime.webhook_sender(clock=clock)
    assert sender is not None

    for _ in range(5):
        await sender.deliver_due()
        clock.now += timedelta(hours=1)

    assert len(receiver.requests) == 3
    assert runtime.outbox.counts()["dead"] == 1
    await sender.aclose()
    await runtime.aclose()
    receiver.close()


async def test_no_outbox_rows_without_a_webhook(client: httpx.AsyncClient, runtime: Runtime) -> None:
    conversation_id, auth = await start_conversation(client)
    await send(client, conversation_id, auth, "human please")

    assert runtime.webhook_sender() is None
    assert runtime.outbox.counts() == {"pending": 0, "delivered": 0, "dead": 0}


async def test_visitor_words_cannot_ping_the_channel_or_fake_a_link_in_the_slack_text(
    tmp_path: Path, sqlite_url: str
) -> None:
    receiver = Receiver([])
    runtime = _runtime(tmp_path, sqlite_url, receiver.url)
    hostile = "<!channel> urgent & <https://evil.example/login|Open transcript> talk to a human please"
    [conversation_id] = await _escalate(runtime, [hostile])
    sender = runtime.webhook_sender()
    assert sender is not None

    assert await sender.deliver_due() == 1
    [(_headers, body)] = receiver.requests
    payload = json.loads(body)
    text = payload["text"]
    assert "<!channel>" not in text
    assert "&lt;!channel&gt; urgent &amp; &lt;https://evil.example/login|Open transcript&gt;" in text
    ours = f"<https://bot.example/admin/conversations/{conversation_id}|Open transcript>"
    assert text.endswith(ours) and text.count("<") == 1, "our transcript link is the only Slack link"
    assert hostile in payload["summary"], "the raw words stay in their own field"
    await sender.aclose()
    await runtime.aclose()
    receiver.close()
