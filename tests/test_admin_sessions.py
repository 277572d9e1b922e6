"""Admin sessions: revocable server-side, ended by a new admin token, shared by replicas; sign-in guessing limits."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from service.api import create_app
from service.config import Settings
from service.models import AdminSession, AuditEntry, utcnow
from service.runtime import Runtime

from .conftest import IN_CI, make_settings
from .test_admin_pages import csrf_of, sign_in
from .test_ratelimit import REDIS_URL, _redis_available

BASE = "http://supportbot.test"


@asynccontextmanager
async def replica(settings: Settings, client_ip: str = "127.0.0.1") -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    """One process of the service (its own runtime and app) on the given settings' database."""
    runtime = Runtime.build(settings)
    transport = httpx.ASGITransport(app=create_app(runtime=runtime), client=(client_ip, 50000))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield client, runtime
    await runtime.aclose()


@asynccontextmanager
async def client_at(app: FastAPI, client_ip: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of `app` whose requests come from `client_ip`."""
    transport = httpx.ASGITransport(app=app, client=(client_ip, 50000))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        yield client


def audit_actions(runtime: Runtime) -> list[str]:
    with runtime.log.sessions() as session:
        return [e.action for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]


async def signed_in_cookie(client: httpx.AsyncClient, runtime: Runtime) -> str:
    await sign_in(client, runtime)
    cookie = client.cookies.get("sb_admin")
    assert cookie
    return cookie


async def opens_inbox(client: httpx.AsyncClient, cookie: str) -> bool:
    client.cookies.set("sb_admin", cookie, domain="supportbot.test", path="/admin")
    return (await client.get("/admin")).status_code == 200


async def test_a_logged_out_session_cookie_is_refused(settings: Settings) -> None:
    async with replica(settings) as (client, runtime):
        cookie = await signed_in_cookie(client, runtime)
        page = await client.get("/admin")
        logout = await client.post("/admin/logout", data={"csrf": csrf_of(page.text)})
        assert logout.status_code == 303

        assert not await opens_inbox(client, cookie), "a copy of the cookie kept before logout is dead"


async def test_a_replica_on_the_same_database_refuses_a_logged_out_session(
        settings: Settings, reliability: list[dict[str, object]]) -> None:
    async with replica(settings) as (first, runtime), replica(settings) as (second, _):
        cookie = await signed_in_cookie(first, runtime)
        assert await opens_inbox(second, cookie), "the other replica knows the session"
        page = await first.get("/admin")
        await first.post("/admin/logout", data={"csrf": csrf_of(page.text)})

        assert not await opens_inbox(second, cookie)
    reliability.append({"section": "attacks", "item": "admin session cookie replayed after logout, on another replica "
                        f"({runtime.log.engine.dialect.name})", "result": "refused (the session row is revoked)"})


async def test_a_new_admin_token_ends_sessions_made_with_the_old_one(tmp_path: Path, database_url: str) -> None:
    old = make_settings(tmp_path, database_url, admin_token="old-admin-token-0123456789abcdef")
    new = make_settings(tmp_path, database_url, admin_token="new-admin-token-0123456789abcdef")
    async with replica(old) as (client, runtime):
        cookie = await signed_in_cookie(client, runtime)
        assert await opens_inbox(client, cookie)

    async with replica(new) as (restarted, runtime):
        assert not await opens_inbox(restarted, cookie), "restarted with another token: the old session is over"
        assert await opens_inbox(restarted, await signed_in_cookie(restarted, runtime))


async def test_wrong_sign_ins_lock_out_that_network_only(runtime: Runtime,
                                                        reliability: list[dict[str, object]]) -> None:
    app = create_app(runtime=runtime)
    async with client_at(app, "203.0.113.7") as attacker, client_at(app, "198.51.100.9") as colleague:
        csrf = csrf_of((await attacker.get("/admin/login")).text)
        guesses = [await attacker.post("/admin/login", data={"token": f"guess-{n}", "csrf": csrf}) for n in range(20)]
        right = await attacker.post("/admin/login", data={"token": runtime.admin_token, "csrf": csrf})

        assert guesses[0].status_code == 401 and guesses[-1].status_code == 429
        assert int(guesses[-1].headers["retry-after"]) >= 1
        # Decided: while locked out, the right token from that network waits too (else guessing goes on).
        assert right.status_code == 429 and int(right.headers["retry-after"]) >= 1
        await sign_in(colleague, runtime)
    actions = audit_actions(runtime)
    assert actions.count("admin.locked_out") == 1, "one row per lockout, not one per failed guess"
    assert actions == ["admin.locked_out", "login"]
    first_refusal = [g.status_code for g in guesses].index(429) + 1
    reliability.append({"section": "attacks",
                        "item": f"20 wrong sign-ins from one IP ({runtime.log.engine.dialect.name})",
                        "result": f"429 with Retry-After from attempt {first_refusal}, the right token refused "
                                  "while locked out, other IPs unaffected, one audit row"})


async def test_wrong_admin_bearer_tokens_lock_out_that_network_only(runtime: Runtime) -> None:
    app = create_app(runtime=runtime)
    async with client_at(app, "2001:db8:1:2::7") as attacker, client_at(app, "2001:db8:9:9::1") as colleague:
        guesses = [await attacker.get("/admin/api/escalations", headers={"Authorization": f"Bearer guess-{n}"})
                   for n in range(20)]
        right = await attacker.get("/admin/api/escalations", headers={"Authorization": f"Bearer {runtime.admin_token}"})
        elsewhere = await colleague.get("/admin/api/escalations",
                                        headers={"Authorization": f"Bearer {runtime.admin_token}"})

    assert guesses[0].status_code == 401 and guesses[-1].status_code == 429
    assert int(guesses[-1].headers["retry-after"]) >= 1 and guesses[-1].json()["error"]["code"] == "rate_limited"
    assert right.status_code == 429
    assert elsewhere.status_code == 200
    assert audit_actions(runtime).count("admin.locked_out") == 1


async def test_an_anonymous_csrf_pair_does_not_work_with_a_signed_in_session(runtime: Runtime) -> None:
    app = create_app(runtime=runtime)
    async with client_at(app, "203.0.113.7") as attacker:
        anonymous_token = csrf_of((await attacker.get("/admin/login")).text)
        anonymous_nonce = attacker.cookies["sb_csrf"]
    async with client_at(app, "198.51.100.9") as admin:
        await sign_in(admin, runtime)
        admin.cookies.set("sb_csrf", anonymous_nonce, domain="supportbot.test", path="/admin")
        planted = await admin.post("/admin/logout", data={"csrf": anonymous_token})

        assert planted.status_code == 401 and planted.json()["error"]["code"] == "csrf_failed"
        assert (await admin.get("/admin")).status_code == 200, "still signed in"


async def test_an_admin_form_posted_from_another_site_is_refused(runtime: Runtime) -> None:
    async with client_at(create_app(runtime=runtime), "198.51.100.9") as admin:
        await sign_in(admin, runtime)
        csrf = csrf_of((await admin.get("/admin")).text)
        foreign = await admin.post("/admin/logout", data={"csrf": csrf}, headers={"Origin": "https://evil.example"})
        opaque = await admin.post("/admin/logout", data={"csrf": csrf}, headers={"Origin": "null"})
        referred = await admin.post("/admin/logout", data={"csrf": csrf},
                                    headers={"Referer": "https://evil.example/page"})
        sign_in_form = await admin.post("/admin/login", data={"token": runtime.admin_token, "csrf": csrf},
                                        headers={"Origin": "https://evil.example"})
        assert [r.status_code for r in (foreign, opaque, referred, sign_in_form)] == [403] * 4
        assert foreign.json()["error"]["code"] == "foreign_origin"
        assert (await admin.get("/admin")).status_code == 200, "none of them signed the admin out"

        own = await admin.post("/admin/logout", data={"csrf": csrf}, headers={"Origin": "http://supportbot.test"})
        assert own.status_code == 303


async def test_session_cookie_is_secure_behind_a_trusted_tls_proxy_only(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path, database_url, trusted_proxies=["10.0.0.5"])
    runtime = Runtime.build(settings)
    app = create_app(runtime=runtime)
    set_cookies = {}
    for peer in ["10.0.0.5", "203.0.113.7"]:
        async with client_at(app, peer) as client:
            client.headers["X-Forwarded-Proto"] = "https"
            form = await client.get("/admin/login")
            # The client's side of the proxy is https: it sends the (Secure) nonce cookie back.
            sign_in_form = {"token": runtime.admin_token, "csrf": csrf_of(form.text)}
            response = await client.post("/admin/login", data=sign_in_form,
                                         headers={"Cookie": f"sb_csrf={form.cookies['sb_csrf']}"})
            assert response.status_code == 303
            set_cookies[peer] = form.headers["set-cookie"].lower() + " | " + response.headers["set-cookie"].lower()
    await runtime.aclose()

    assert "sb_admin=" in set_cookies["10.0.0.5"] and set_cookies["10.0.0.5"].count("; secure") == 2
    assert "sb_admin=" in set_cookies["203.0.113.7"] and "secure" not in set_cookies["203.0.113.7"], \
        "X-Forwarded-Proto from an untrusted client is ignored"


async def test_replicas_sharing_redis_count_failures_together(tmp_path: Path, sqlite_url: str) -> None:
    if not _redis_available():
        if IN_CI:
            pytest.fail(f"Redis is required under CI=true but {REDIS_URL} is unreachable")
        pytest.skip("Redis not reachable")
    settings = make_settings(tmp_path, sqlite_url, rate_limit_storage=REDIS_URL)
    # A network of its own per run: the day tier outlives the test in the shared Redis.
    attacker = f"2001:db8:{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}::1"
    async with replica(settings, attacker) as (first, _), replica(settings, attacker) as (second, _):
        statuses = []
        for n in range(12):
            client = first if n % 2 else second
            response = await client.get("/admin/api/escalations", headers={"Authorization": f"Bearer guess-{n}"})
            statuses.append(response.status_code)

    assert statuses[:9] == [401] * 9 and statuses[-1] == 429, "failures on either replica count together"


async def test_signing_in_sweeps_expired_sessions(settings: Settings) -> None:
    async with replica(settings) as (client, runtime):
        await signed_in_cookie(client, runtime)
        with runtime.log.sessions() as session, session.begin():
            old = session.scalars(select(AdminSession)).one()
            old.expires_at = utcnow() - timedelta(seconds=1)
            old_id = old.id
        client.cookies.clear()
        await signed_in_cookie(client, runtime)

        with runtime.log.sessions() as session:
            ids = list(session.scalars(select(AdminSession.id)))
    assert len(ids) == 1 and old_id not in ids
