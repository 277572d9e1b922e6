"""Rate limits per visitor and per IP: memory and the real Redis, proxies, the 429 shape."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import httpx
import pytest
import redis

from service.api import create_app
from service.runtime import Runtime

from .conftest import IN_CI, make_settings
from .factories import send, start_conversation

REDIS_URL = os.environ.get("SUPPORTBOT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _redis_available() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def storage(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    if not _redis_available():
        if IN_CI:
            pytest.fail(f"Redis is required under CI=true but {REDIS_URL} is unreachable")
        pytest.skip("Redis not reachable")
    return REDIS_URL


def _client(runtime: Runtime, peer: str = "203.0.113.9") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(runtime=runtime), client=(peer, 4321))
    return httpx.AsyncClient(transport=transport, base_url="http://t")


async def test_per_visitor_limit_answers_429_with_retry_after(tmp_path: Path, sqlite_url: str, storage: str) -> None:
    runtime = Runtime.build(make_settings(tmp_path, sqlite_url, rate_limit_per_visitor="3/minute",
                                          rate_limit_storage=storage))
    async with _client(runtime) as client:
        conversation_id, auth = await start_conversation(client)
        statuses = [(await send(client, conversation_id, auth, "How do I reset my password?")).status_code
                    for _ in range(4)]
        limited = await send(client, conversation_id, auth, "How do I reset my password?")
        other_id, other_auth = await start_conversation(client)
        other = await send(client, other_id, other_auth, "How do I reset my password?")

    assert statuses == [200, 200, 200, 429]
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert other.status_code == 200, "another visitor is not affected"
    await runtime.aclose()


async def test_per_ip_limit_and_forwarded_for_only_from_trusted_proxies(
    tmp_path: Path, sqlite_url: str, storage: str
) -> None:
    runtime = Runtime.build(make_settings(tmp_path, sqlite_url, rate_limit_per_ip="2/minute",
                                          rate_limit_storage=storage, trusted_proxies="10.0.0.0/8"))
    visitor = f"198.51.100.{uuid.uuid4().int % 250}"
    async with _client(runtime, peer="10.1.2.3") as proxied, _client(runtime, peer=visitor) as direct:
        through_proxy = [(await proxied.post("/api/conversations",
                                             headers={"X-Forwarded-For": f"{visitor}, 10.9.9.9"})).status_code
                         for _ in range(3)]
        spoofed = [(await direct.post("/api/conversations", headers={"X-Forwarded-For": "192.0.2.77"})).status_code
                   for _ in range(1)]

    # three requests for the same client address through the proxy: the third is refused;
    # the direct client cannot pick another address by sending the header: it is the same visitor
    assert through_proxy == [201, 201, 429]
    assert spoofed == [429]
    await runtime.aclose()


async def test_zero_switches_limits_off(tmp_path: Path, sqlite_url: str) -> None:
    runtime = Runtime.build(make_settings(tmp_path, sqlite_url, rate_limit_per_visitor="0", rate_limit_per_ip="0"))
    async with _client(runtime) as client:
        conversation_id, auth = await start_conversation(client)
        statuses = {(await send(client, conversation_id, auth, "hi")).status_code for _ in range(30)}

    assert statuses == {200}
    await runtime.aclose()


def test_bad_rate_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is not a rate like"):
        make_settings(tmp_path, "sqlite://", rate_limit_per_ip="lots")


async def test_unreachable_storage_fails_open(tmp_path: Path, sqlite_url: str) -> None:
    runtime = Runtime.build(make_settings(tmp_path, sqlite_url, rate_limit_per_visitor="1/minute",
                                          rate_limit_storage="redis://127.0.0.1:9/0"))
    async with _client(runtime) as client:
        conversation_id, auth = await start_conversation(client)
        statuses = [(await send(client, conversation_id, auth, "hi")).status_code for _ in range(2)]

    assert statuses == [200, 200]
    await runtime.aclose()
