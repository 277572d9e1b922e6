"""Admin sessions: revocable server-side, ended by a new admin token, shared by replicas; sign-in guessing limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from service.api import create_app
from service.config import Settings
from service.models import AuditEntry
from service.runtime import Runtime

from .conftest import make_settings
from .test_admin_pages import csrf_of, sign_in

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


async def test_a_replica_on_the_same_database_refuses_a_logged_out_session(settings: Settings) -> None:
    async with replica(settings) as (first, runtime), replica(settings) as (second, _):
        cookie = await signed_in_cookie(first, runtime)
        assert await opens_inbox(second, cookie), "the other replica knows the session"
        page = await first.get("/admin")
        await first.post("/admin/logout", data={"csrf": csrf_of(page.text)})

        assert not await opens_inbox(second, cookie)


async def test_a_new_admin_token_ends_sessions_made_with_the_old_one(tmp_path: Path, database_url: str) -> None:
    old = make_settings(tmp_path, database_url, admin_token="old-admin-token-0123456789abcdef")
    new = make_settings(tmp_path, database_url, admin_token="new-admin-token-0123456789abcdef")
    async with replica(old) as (client, runtime):
        cookie = await signed_in_cookie(client, runtime)
        assert await opens_inbox(client, cookie)

    async with replica(new) as (restarted, runtime):
        assert not await opens_inbox(restarted, cookie), "restarted with another token: the old session is over"
        assert await opens_inbox(restarted, await signed_in_cookie(restarted, runtime))


async def test_wrong_sign_ins_lock_out_that_network_only(runtime: Runtime) -> None:
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
