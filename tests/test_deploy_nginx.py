"""Three `supportbot serve` replicas on one PostgreSQL database and Redis behind nginx with deploy/nginx.conf.

Streams pass unbuffered, a replica killed mid-stream loses nothing the visitor sent, and rolling restarts
(SIGTERM one replica at a time, start it again) drop no request.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import create_engine, select

from bench.nginx import nginx_binary, nginx_command, render_nginx_conf
from service.models import Message

from .deploy_support import NGINX_CONF, Nginx, SlowModel, postgres_database, require
from .factories import parse_sse
from .processes import ServiceProcess
from .upstream_server import serving

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

# A Redis database no other test uses (tests/test_ratelimit.py uses 15): the replicas' shared rate limits.
REDIS_URL = "redis://127.0.0.1:6379/13"
REPLICAS = ("r1", "r2", "r3")
QUESTION = "How do I export a dashboard?"


def redis_reachable() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


@dataclass
class Deployment:
    """The replicas, nginx in front of them, the model behind them and their database."""

    replicas: dict[str, ServiceProcess]
    nginx: Nginx
    model: SlowModel
    database_url: str

    def ensure_running(self) -> None:
        for replica in self.replicas.values():
            if replica.process is None or replica.process.poll() is not None:
                replica.start()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    require(redis_reachable(), f"Redis at {REDIS_URL}")
    root = tmp_path_factory.mktemp("deploy")
    model = SlowModel()
    with postgres_database() as database_url, serving(model.app(), lifespan="off") as model_base:
        shared = {"SUPPORTBOT_DATABASE_URL": database_url, "SUPPORTBOT_OPENAI_API_KEY": "sk-test",
                  "SUPPORTBOT_SECRET_KEY": "deploy-test-secret-key-0123456789",
                  "SUPPORTBOT_ADMIN_TOKEN": "deploy-test-admin-token-0123456789",
                  "SUPPORTBOT_RATE_LIMIT_STORAGE": REDIS_URL, "SUPPORTBOT_TRUSTED_PROXIES": "127.0.0.1",
                  # Live events through the database's NOTIFY: its own database, so no other test hears them
                  # (Redis pub/sub channels are server-wide).
                  "SUPPORTBOT_EVENTS": "postgres",
                  "SUPPORTBOT_RATE_LIMIT_PER_IP": "100000/minute", "SUPPORTBOT_RATE_LIMIT_PER_VISITOR": "10000/minute",
                  "SUPPORTBOT_RATE_LIMIT_CONVERSATIONS_PER_IP": "100000/minute", "SUPPORTBOT_MAX_TURNS": "100000",
                  "SUPPORTBOT_SHUTDOWN_GRACE_SECONDS": "20", "SUPPORTBOT_LOG_LEVEL": "WARNING"}
        replicas = {}
        for name in REPLICAS:
            (root / name).mkdir()
            replicas[name] = ServiceProcess(root / name, SUPPORTBOT_OPENAI_BASE_URL=f"{model_base}/{name}/v1",
                                            **shared)
        replicas["r1"].migrate()
        nginx = Nginx(root / "nginx", [f"127.0.0.1:{r.port}" for r in replicas.values()])
        try:
            # One after another: on a machine of two cores, three loading at once take longer than each alone.
            for replica in replicas.values():
                replica.start()
            nginx.start()
            yield Deployment(replicas, nginx, model, database_url)
        finally:
            nginx.stop()
            for replica in replicas.values():
                replica.stop()


@pytest.fixture
def running(deployment: Deployment) -> Deployment:
    """The deployment with every replica up (a test before may have stopped one) and a fast model."""
    deployment.ensure_running()
    deployment.model.chunks, deployment.model.interval = 3, 0.01
    return deployment


def start_conversation(client: httpx.Client) -> tuple[str, dict[str, str]]:
    created = client.post("/api/conversations")
    assert created.status_code == 201, created.text
    body = created.json()
    return body["conversation_id"], {"Authorization": f"Bearer {body['token']}"}


def stored_turn(database_url: str, client_message_id: str) -> tuple[list[str], list[str]]:
    """(contents of the user messages with this id, statuses of the replies to them)."""
    engine = create_engine(database_url)
    with engine.connect() as connection:
        asked = connection.execute(select(Message.id, Message.content).where(
            Message.client_message_id == client_message_id)).all()
        replies = connection.execute(select(Message.status).where(
            Message.reply_to_id.in_([row.id for row in asked]))).scalars().all()
    engine.dispose()
    return [row.content for row in asked], list(replies)


@dataclass
class StreamTiming:
    """When the visitor got the first and last words of a streamed reply, and when the model wrote its last."""

    first_delta: float
    last_delta: float
    model_last_chunk: float
    last_event: str


def timed_stream(base: str, model: SlowModel) -> StreamTiming:
    """One streamed turn through `base` with a model writing for about 3 s."""
    model.chunks, model.interval = 12, 0.25
    arrivals: list[tuple[float, bytes]] = []
    with httpx.Client(base_url=base, timeout=30) as client:
        conversation_id, auth = start_conversation(client)
        with client.stream("POST", f"/api/conversations/{conversation_id}/messages",
                           headers={**auth, "Accept": "text/event-stream"},
                           json={"content": QUESTION, "client_message_id": uuid.uuid4().hex}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            for piece in response.iter_bytes():
                arrivals.append((time.monotonic(), piece))
    deltas = [at for at, piece in arrivals if b"event: delta" in piece]
    last_chunk = model.calls[-1].last_chunk
    assert deltas and last_chunk is not None
    events = parse_sse(b"".join(piece for _, piece in arrivals).decode())
    return StreamTiming(deltas[0], deltas[-1], last_chunk, events[-1][0])


def test_a_stream_reaches_the_visitor_through_nginx_while_the_model_still_writes(running: Deployment) -> None:
    timing = timed_stream(running.nginx.base, running.model)

    assert timing.last_event == "done"
    assert timing.first_delta < timing.model_last_chunk - 1.0, "the first words came only once the model had finished"
    assert timing.last_delta - timing.first_delta > 1.5, "the words came spread over the model's ~3 s, not in a burst"


def test_the_stream_check_sees_a_proxy_that_holds_the_words(running: Deployment, tmp_path: Path) -> None:
    # The usual mistake: the stream location buffered and compressed like any other response.
    shipped = NGINX_CONF.read_text(encoding="utf-8")
    holding = shipped.replace("proxy_buffering off;", "proxy_buffering on; proxy_ignore_headers X-Accel-Buffering;", 1)
    holding = holding.replace("gzip off;", "gzip on; gzip_types text/event-stream;", 1)
    assert holding.count("proxy_buffering on;") == holding.count("gzip on;") == 1
    nginx = Nginx(tmp_path, [f"127.0.0.1:{r.port}" for r in running.replicas.values()], conf=holding)
    nginx.start()
    try:
        timing = timed_stream(nginx.base, running.model)
    finally:
        nginx.stop()

    assert timing.last_event == "done"
    assert timing.first_delta >= timing.model_last_chunk, "the proxy held the words until the model had finished"


def test_a_replica_killed_mid_stream_keeps_the_message_and_a_resend_is_answered_once(running: Deployment) -> None:
    running.model.chunks, running.model.interval = 400, 0.05  # 20 s: the replica dies long before the end
    message_id = uuid.uuid4().hex
    received = b""
    killed: str | None = None
    with httpx.Client(base_url=running.nginx.base, timeout=30) as client:
        conversation_id, auth = start_conversation(client)
        send = {"content": QUESTION, "client_message_id": message_id}
        with pytest.raises(httpx.RemoteProtocolError), client.stream(  # noqa: PT012 - the read is what breaks
                "POST", f"/api/conversations/{conversation_id}/messages",
                headers={**auth, "Accept": "text/event-stream"}, json=send) as response:
            assert response.status_code == 200
            for piece in response.iter_raw():
                received += piece
                if killed is None and b"event: delta" in received:
                    killed = running.model.calls[-1].replica
                    running.replicas[killed].signal(signal.SIGKILL)
        assert killed is not None and b"event: done" not in received

        asked, replies = stored_turn(running.database_url, message_id)
        assert asked == [QUESTION], "the visitor's message was committed before the model was asked"
        assert replies == [], "nothing was stored for the reply the replica never finished"

        # The widget sends again with the same client_message_id: another replica answers the stored message.
        running.model.chunks, running.model.interval = 3, 0.01
        again = client.post(f"/api/conversations/{conversation_id}/messages", headers=auth, json=send)
        transcript = client.get(f"/api/conversations/{conversation_id}", headers=auth)

    assert again.status_code == 200, again.text
    assert again.json()["reply"]["status"] == "ok"
    assert running.model.calls[-1].replica != killed
    assert stored_turn(running.database_url, message_id) == ([QUESTION], ["ok"]), "stored once, answered once"
    assert [m["role"] for m in transcript.json()["messages"]] == ["user", "assistant"]


async def _keep_sending(base: str, stop: threading.Event, outcomes: Counter[str], failures: list[str]) -> None:
    """A visitor: new conversation, then messages (JSON and streamed), until told to stop; every result counted."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        while not stop.is_set():
            try:
                created = await client.post("/api/conversations")
                outcomes[f"create {created.status_code}"] += 1
                if created.status_code != 201:
                    failures.append(f"create: {created.status_code} {created.text[:200]}")
                    continue
                body = created.json()
                path = f"/api/conversations/{body['conversation_id']}/messages"
                headers = {"Authorization": f"Bearer {body['token']}"}
                for n in range(4):
                    streamed = n % 2 == 1
                    response = await client.post(
                        path, json={"content": QUESTION, "client_message_id": uuid.uuid4().hex},
                        headers={**headers, "Accept": "text/event-stream" if streamed else "application/json"})
                    finished = response.status_code == 200 and (parse_sse(response.text)[-1][0] == "done" if streamed
                                                                 else response.json()["reply"]["status"] == "ok")
                    outcomes[f"message {response.status_code}"] += 1
                    if not finished:
                        failures.append(f"message: {response.status_code} {response.text[-200:]}")
            except httpx.HTTPError as error:
                failures.append(f"{type(error).__name__}: {error}")


def test_rolling_restarts_behind_nginx_drop_no_request(running: Deployment) -> None:
    stop = threading.Event()
    outcomes: Counter[str] = Counter()
    failures: list[str] = []

    async def visitors() -> None:
        await asyncio.gather(*(_keep_sending(running.nginx.base, stop, outcomes, failures) for _ in range(2)))

    sender = threading.Thread(target=asyncio.run, args=(visitors(),))
    sender.start()
    restarts = []
    try:
        for name, replica in running.replicas.items():
            before = sum(outcomes.values())
            code = replica.signal(signal.SIGTERM, timeout=60)
            replica.start()
            calls = running.model.calls_from(name)
            deadline = time.monotonic() + 30
            while running.model.calls_from(name) == calls and time.monotonic() < deadline:
                time.sleep(0.05)  # nginx sends the restarted replica traffic again
            restarts.append((name, code, sum(outcomes.values()) - before, running.model.calls_from(name) - calls))
    finally:
        stop.set()
        sender.join(timeout=60)

    assert failures == [], f"{len(failures)} requests failed: {failures[:5]}"
    assert all(code in (0, -signal.SIGTERM) for _, code, _, _ in restarts), restarts
    assert all(served > 0 for _, _, served, _ in restarts), f"traffic kept flowing during each restart: {restarts}"
    assert all(after > 0 for _, _, _, after in restarts), f"each restarted replica served again: {restarts}"
    assert set(outcomes) <= {"create 201", "message 200"}, outcomes


def test_metrics_are_scraped_from_each_replica_not_through_nginx(running: Deployment) -> None:
    outside = httpx.get(f"{running.nginx.base}/metrics", timeout=10)
    replica = next(iter(running.replicas.values()))
    inside = httpx.get(f"{replica.base}/metrics", timeout=10,
                       headers={"Authorization": f"Bearer {replica.env['SUPPORTBOT_ADMIN_TOKEN']}"})

    assert outside.status_code == 404
    assert inside.status_code == 200 and "supportbot_turns_total" in inside.text


def test_the_shipped_config_runs_with_fewer_replicas_than_it_lists(tmp_path: Path) -> None:
    """bench.run puts two replicas behind the config written for three: the third server line is left out, and
    nginx itself accepts the result; more replicas than the config lists is a clear error."""
    binary = nginx_binary()
    require(binary is not None, "nginx (scripts/ensure-nginx.sh installs Debian's)")
    assert binary is not None
    shipped = NGINX_CONF.read_text(encoding="utf-8")
    conf = render_nginx_conf(shipped, tmp_path, 18080, ["127.0.0.1:18001", "127.0.0.1:18002"])
    servers = [line.split()[1] for line in conf.splitlines() if line.split()[:1] == ["server"] and "{" not in line]
    assert servers == ["127.0.0.1:18001", "127.0.0.1:18002"]
    assert "supportbot-" not in conf and "listen 127.0.0.1:18080;" in conf
    (tmp_path / "nginx.conf").write_text(conf, encoding="utf-8")
    checked = subprocess.run([*nginx_command(binary, tmp_path)[:-2], "-t"], capture_output=True, text=True,
                             timeout=30)
    assert checked.returncode == 0, checked.stderr
    with pytest.raises(ValueError, match="lists 3 replicas; cannot run 4"):
        render_nginx_conf(shipped, tmp_path, 18080, [f"127.0.0.1:{port}" for port in range(18001, 18005)])
