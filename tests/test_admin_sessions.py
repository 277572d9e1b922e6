"""Admin sessions: revocable server-side, ended by a new admin token, shared by replicas; sign-in guessing limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from service.api import create_app
from service.config import Settings
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
