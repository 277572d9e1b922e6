"""Rate limits per visitor and per IP: memory and the real Redis, proxies, the 429 shape."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import httpx
import pytest
import redis

from service.api import create_app
from service.ratelimit import RateLimits, limit_key
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


@pytest.mark.parametrize(("address", "key"), [
    ("203.0.113.9", "203.0.113.9"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
    ("::ffff:203.0.113.9", "203.0.113.9"),
    ("unknown", "unknown"),
])
def test_ipv6_clients_count_by_their_64_and_ipv4_by_address(address: str, key: str) -> None:
    assert limit_key(address) == key


async def test_addresses_in_one_ipv6_64_share_the_per_ip_limit(
    tmp_path: Path, sqlite_url: str, storage: str, reliability: list[dict[str, object]]
) -> None:
    runtime = Runtime.build(make_settings(tmp_path, sqlite_url, rate_limit_per_ip="2/minute",
                                          rate_limit_storage=storage, trusted_proxies="10.0.0.0/8"))
    # a fresh /64 per run: the Redis store outlives the test
    prefix = f"2001:db8:{uuid.uuid4().int % 0xffff:x}:{uuid.uuid4().int % 0xffff:x}"
    async with _client(runtime, peer="10.1.2.3") as proxy, _client(runtime, peer=f"{prefix}::7") as direct:
        async def create(client: httpx.AsyncClient, address: str | None = None) -> int:
            headers = {"X-Forwarded-For": address} if address else {}
            return (await client.post("/api/conversations", headers=headers)).status_code

        rotated = [await create(proxy, f"{prefix}:{n:x}::1") for n in (1, 2, 3)]
        rotated_direct = await create(direct)
        neighbour = await create(proxy, f"2001:db8:ffff:{uuid.uuid4().int % 0xffff:x}::1")

    # three different addresses of one /64 through the proxy: one client, the third is refused;
    # a peer of that /64 connecting directly is the same client too
    assert rotated == [201, 201, 429]
    assert rotated_direct == 429
    assert neighbour == 201, "another /64 has its own budget"
    reliability.append({"section": "attacks", "item": f"rotating IPv6 addresses within one /64 ({storage})",
                        "result": "counted as one client; another /64 keeps its own budget"})
    await runtime.aclose()


def test_a_trusted_proxy_seen_through_a_dual_stack_socket_is_still_trusted(tmp_path: Path) -> None:
    limits = RateLimits(make_settings(tmp_path, "sqlite://", trusted_proxies="10.0.0.0/8"))

    assert limits.client_ip("::ffff:10.1.2.3", "2001:db8::5") == "2001:db8::5"
    assert limits.client_ip("::ffff:198.51.100.4", "2001:db8::5") == "::ffff:198.51.100.4"


async def test_starting_conversations_has_its_own_per_ip_limit(
    tmp_path: Path, sqlite_url: str, storage: str, reliability: list[dict[str, object]]
) -> None:
    runtime = Runtime.build(make_settings(tmp_path, sqlite_url, rate_limit_conversations_per_ip="30/minute",
                                          rate_limit_storage=storage))
    visitor = f"198.51.100.{uuid.uuid4().int % 250}"
    other = f"192.0.2.{uuid.uuid4().int % 250}"
    async with _client(runtime, peer=visitor) as flooder, _client(runtime, peer=other) as neighbour:
        statuses = [(await flooder.post("/api/conversations")).status_code for _ in range(31)]
        refused = await flooder.post("/api/conversations")
        conversation_id, auth = await start_conversation(neighbour)
        still_talking = await send(neighbour, conversation_id, auth, "How do I reset my password?")

    # 30 conversations a minute from one address, far below the 600 requests a minute it may send
    assert statuses == [201] * 30 + [429]
    assert (refused.status_code, refused.json()["error"]["code"]) == (429, "rate_limited")
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert still_talking.status_code == 200, "another address still starts and uses a conversation"
    reliability.append({"section": "attacks", "item": f"31 conversations in a minute from one IP ({storage})",
                        "result": "the 31st gets 429 with Retry-After; another IP still starts one"})
    await runtime.aclose()


async def test_conversation_limit_zero_switches_it_off(tmp_path: Path, sqlite_url: str) -> None:
    runtime = Runtime.build(make_settings(tmp_path, sqlite_url, rate_limit_conversations_per_ip="0"))
    async with _client(runtime) as client:
        statuses = {(await client.post("/api/conversations")).status_code for _ in range(40)}

    assert statuses == {201}
    await runtime.aclose()
