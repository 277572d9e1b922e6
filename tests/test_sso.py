"""Single sign-on through HTTP: the app (ASGI) and a fake OpenID provider (real HTTP), on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from playwright.sync_api import Page, expect
from sqlalchemy import func, select

from service.api import create_app
from service.auth import AdminSessions
from service.db import transaction
from service.models import AdminSession, AuditEntry, User, utcnow
from service.runtime import Runtime
from service.sso import PENDING_COOKIE

from .conftest import make_settings
from .fake_idp import FakeIdP, SigningKey, running_idp
from .upstream_server import serving

APP = "http://supportbot.test"


@pytest.fixture(scope="module")
def idp_server() -> Iterator[FakeIdP]:
    with running_idp() as provider:
        yield provider


@pytest.fixture
def idp(idp_server: FakeIdP) -> FakeIdP:
    idp_server.reset()
    return idp_server


@pytest.fixture
def sso_runtime(tmp_path: Path, database_url: str, idp: FakeIdP) -> Runtime:
    settings = make_settings(tmp_path, database_url, oidc_issuer=idp.issuer, oidc_client_id=idp.client_id,
                             oidc_client_secret=idp.client_secret, public_url=APP,
                             oidc_button_label="Sign in with Example ID", language_detection="fast")
    return Runtime.build(settings)


@asynccontextmanager
async def browser_like_client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """One cookie jar for both sites, redirects followed between them: the app in process, the provider over HTTP."""
    app = httpx.ASGITransport(app=create_app(runtime=runtime))
    try:
        async with httpx.AsyncClient(base_url=APP, mounts={APP: app}, follow_redirects=True, timeout=10) as client:
            yield client
    finally:
        await runtime.aclose()


@pytest.fixture
async def browser_like(sso_runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    async with browser_like_client(sso_runtime) as client:
        yield client


def add_person(runtime: Runtime, email: str = "ana@example.com", name: str = "Ana Agent", role: str = "agent",
               disabled: bool = False) -> None:
    with transaction(runtime.log.sessions) as db:
        db.add(User(email=email, name=name, role=role, disabled_at=utcnow() if disabled else None))


def audit(runtime: Runtime, action: str) -> list[AuditEntry]:
    return [entry for entry in runtime.review.audit_log(100, None) if entry.action == action]


def count(runtime: Runtime, model: type[User] | type[AdminSession]) -> int:
    with runtime.log.sessions() as db:
        return int(db.scalar(select(func.count()).select_from(model)) or 0)


def assert_no_session(runtime: Runtime, client: httpx.AsyncClient) -> None:
    assert AdminSessions.COOKIE not in client.cookies
    assert count(runtime, AdminSession) == 0


async def test_known_person_signs_in_and_the_session_works(
        browser_like: httpx.AsyncClient, sso_runtime: Runtime, idp: FakeIdP) -> None:
    add_person(sso_runtime)
    page = await browser_like.get("/admin/login/sso", params={"next": "/admin/prompts"})
    assert page.status_code == 200, page.text
    assert 'content="0; url=/admin/prompts"' in page.text
    session = next(value for value in page.headers.get_list("set-cookie") if value.startswith("sb_admin="))
    assert "HttpOnly" in session and "SameSite=strict" in session and "Path=/admin" in session
    assert browser_like.cookies.get(AdminSessions.COOKIE)
    assert PENDING_COOKIE not in browser_like.cookies  # one use
    inbox = await browser_like.get("/admin", follow_redirects=False)
    assert inbox.status_code == 200 and "Ana Agent · agent" in inbox.text
    [login] = audit(sso_runtime, "login")
    assert (login.actor, login.details) == ("ana@example.com", {"method": "sso"})
    # What was sent: the authorization code flow with PKCE (S256) and a nonce; the verifier and the
    # client's secret at the token endpoint (HTTP Basic).
    [asked] = idp.authorize_requests
    assert asked["code_challenge_method"] == "S256" and asked["nonce"] and asked["state"]
    assert asked["redirect_uri"] == f"{APP}/admin/login/sso/callback"
    [token] = idp.token_requests
    assert token["code_verifier"] and token["authorization"].startswith("Basic ")
    assert "client_secret" not in token


async def test_a_public_client_signs_in_with_pkce_alone(tmp_path: Path, database_url: str, idp: FakeIdP) -> None:
    idp.client_secret = ""
    runtime = Runtime.build(make_settings(tmp_path, database_url, oidc_issuer=idp.issuer,
                                          oidc_client_id=idp.client_id, public_url=APP))
    add_person(runtime)
    async with browser_like_client(runtime) as client:
        assert (await client.get("/admin/login/sso")).status_code == 200
        assert (await client.get("/admin", follow_redirects=False)).status_code == 200
    [token] = idp.token_requests
    assert token["code_verifier"] and token["client_id"] == idp.client_id and not token["authorization"]


async def test_discovery_is_fetched_once_for_several_sign_ins(
        sso_runtime: Runtime, idp: FakeIdP) -> None:
    add_person(sso_runtime)
    app = create_app(runtime=sso_runtime)
    for _ in range(2):
        async with httpx.AsyncClient(base_url=APP, mounts={APP: httpx.ASGITransport(app=app)},
                                     follow_redirects=True) as client:
            assert (await client.get("/admin/login/sso")).status_code == 200
    assert idp.discovery_requests == 1
    assert count(sso_runtime, AdminSession) == 2
    await sso_runtime.aclose()


@pytest.mark.parametrize(("disabled", "reason"), [(None, "unknown user"), (True, "disabled user")])
async def test_person_without_an_enabled_account_is_refused(
        browser_like: httpx.AsyncClient, sso_runtime: Runtime, disabled: bool | None, reason: str) -> None:
    if disabled:
        add_person(sso_runtime, disabled=True)
    users_before = count(sso_runtime, User)
    page = await browser_like.get("/admin/login/sso")
    assert page.status_code == 401
    assert "ana@example.com has no enabled account here" in page.text
    assert_no_session(sso_runtime, browser_like)
    assert count(sso_runtime, User) == users_before  # nobody is created by signing in
    [refused] = audit(sso_runtime, "sso_refused")
    assert (refused.actor, refused.target, refused.details) == ("anonymous", "ana@example.com", {"reason": reason})
    assert audit(sso_runtime, "login") == []


@pytest.mark.parametrize(("knob", "value", "reason", "target"), [
    ("audience", "another-client", "id_token claim aud wrong or missing", None),
    ("expired", True, "id_token expired", None),
    ("wrong_nonce", True, "id_token claim nonce wrong or missing", None),
    ("foreign_key", True, "id_token signature or format invalid", None),
    ("email_verified", False, "email not verified", "ana@example.com"),
    ("deny", True, "provider error access_denied", None),
])
async def test_a_misbehaving_provider_signs_nobody_in(
        browser_like: httpx.AsyncClient, sso_runtime: Runtime, idp: FakeIdP, knob: str, value: object,
        reason: str, target: str | None) -> None:
    add_person(sso_runtime)
    setattr(idp, knob, value)
    page = await browser_like.get("/admin/login/sso")
    assert page.status_code == 401, page.text
    assert 'role="alert"' in page.text
    assert_no_session(sso_runtime, browser_like)
    [refused] = audit(sso_runtime, "sso_refused")
    assert (refused.target, refused.details) == (target, {"reason": reason})
    assert (await browser_like.get("/admin", follow_redirects=False)).status_code == 303


@pytest.mark.parametrize("state", ["someone-elses-state", "état-étranger"])
async def test_a_callback_with_another_state_is_refused(browser_like: httpx.AsyncClient,
                                                        sso_runtime: Runtime, idp: FakeIdP, state: str) -> None:
    add_person(sso_runtime)
    to_idp = await browser_like.get("/admin/login/sso", follow_redirects=False)
    assert to_idp.status_code == 303 and to_idp.headers["location"].startswith(f"{idp.issuer}/authorize?")
    # Lax: the cookie must come back with the provider's redirect; readable by no script; sent to SSO paths only.
    pending = to_idp.headers["set-cookie"]
    assert "HttpOnly" in pending and "SameSite=lax" in pending and "Path=/admin/login/sso" in pending
    back = await browser_like.get(to_idp.headers["location"], follow_redirects=False)
    callback = httpx.URL(back.headers["location"])
    forged = callback.copy_set_param("state", state)
    page = await browser_like.get(str(forged))
    assert page.status_code == 401
    assert_no_session(sso_runtime, browser_like)
    assert audit(sso_runtime, "sso_refused")[0].details == {"reason": "state mismatch"}
    assert idp.token_requests == []  # the code was never exchanged


@pytest.mark.parametrize(("cookie", "reason"), [(None, "no sign-in in progress"),
                                                ("forged.value.here", "bad sign-in cookie")])
async def test_a_callback_without_a_genuine_sign_in_cookie_is_refused(
        browser_like: httpx.AsyncClient, sso_runtime: Runtime, cookie: str | None, reason: str) -> None:
    add_person(sso_runtime)
    to_idp = await browser_like.get("/admin/login/sso", follow_redirects=False)
    back = await browser_like.get(to_idp.headers["location"], follow_redirects=False)
    browser_like.cookies.clear()
    if cookie:
        browser_like.cookies.set(PENDING_COOKIE, cookie, domain="supportbot.test", path="/admin/login/sso")
    page = await browser_like.get(back.headers["location"])
    assert page.status_code == 401
    assert_no_session(sso_runtime, browser_like)
    assert audit(sso_runtime, "sso_refused")[0].details == {"reason": reason}


async def test_a_code_cannot_be_used_twice(browser_like: httpx.AsyncClient, sso_runtime: Runtime) -> None:
    add_person(sso_runtime)
    to_idp = await browser_like.get("/admin/login/sso", follow_redirects=False)
    pending = browser_like.cookies[PENDING_COOKIE]
    back = await browser_like.get(to_idp.headers["location"], follow_redirects=False)
    assert (await browser_like.get(back.headers["location"])).status_code == 200
    browser_like.cookies.clear()
    browser_like.cookies.set(PENDING_COOKIE, pending, domain="supportbot.test", path="/admin/login/sso")
    replay = await browser_like.get(back.headers["location"])
    assert replay.status_code == 401
    assert AdminSessions.COOKIE not in browser_like.cookies
    assert count(sso_runtime, AdminSession) == 1
    assert audit(sso_runtime, "sso_refused")[0].details == {"reason": "token endpoint refused: invalid_grant"}


async def test_keys_rotated_by_the_provider_are_fetched_again(
        browser_like: httpx.AsyncClient, sso_runtime: Runtime, idp: FakeIdP) -> None:
    add_person(sso_runtime)
    assert (await browser_like.get("/admin/login/sso")).status_code == 200
    idp.key = SigningKey(rsa.generate_private_key(65537, 2048))  # a new key with a new kid
    browser_like.cookies.clear()
    assert (await browser_like.get("/admin/login/sso")).status_code == 200
    assert idp.discovery_requests == 2
    assert len(audit(sso_runtime, "login")) == 2


async def test_a_provider_gone_before_the_callback_is_a_503_without_a_session(
        tmp_path: Path, database_url: str) -> None:
    async with AsyncExitStack() as stack:
        with running_idp() as provider:
            runtime = Runtime.build(make_settings(tmp_path, database_url, oidc_issuer=provider.issuer,
                                                  oidc_client_id=provider.client_id,
                                                  oidc_client_secret=provider.client_secret, public_url=APP))
            add_person(runtime)
            client = await stack.enter_async_context(browser_like_client(runtime))
            to_idp = await client.get("/admin/login/sso", follow_redirects=False)
            back = await client.get(to_idp.headers["location"], follow_redirects=False)
        page = await client.get(back.headers["location"])
        assert page.status_code == 503
        assert "the identity provider cannot be reached" in page.text
        assert_no_session(runtime, client)
        assert audit(runtime, "sso_refused") == [] and audit(runtime, "login") == []


async def test_login_page_offers_single_sign_on_when_configured(browser_like: httpx.AsyncClient) -> None:
    page = await browser_like.get("/admin/login", params={"next": "/admin/report"})
    assert 'href="/admin/login/sso?next=/admin/report">Sign in with Example ID</a>' in page.text


async def test_without_configuration_single_sign_on_is_not_found(client: httpx.AsyncClient) -> None:
    for path in ("/admin/login/sso", "/admin/login/sso/callback?code=x&state=y"):
        response = await client.get(path)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert "/admin/login/sso" not in (await client.get("/admin/login")).text


async def test_an_unreachable_provider_is_a_clear_503(tmp_path: Path, database_url: str) -> None:
    with running_idp() as gone:
        issuer = gone.issuer
    runtime = Runtime.build(make_settings(tmp_path, database_url, oidc_issuer=issuer, oidc_client_id="x",
                                          public_url=APP))
    async with browser_like_client(runtime) as client:
        page = await client.get("/admin/login/sso")
        assert page.status_code == 503
        assert "Single sign-on is unavailable: the identity provider cannot be reached" in page.text


def test_a_browser_signs_in_through_a_provider_on_another_site(page: Page, tmp_path: Path, sqlite_url: str) -> None:
    # localhost and 127.0.0.1 are two sites to a browser, and the way back starts on the provider's page: a
    # cross-site navigation, in which a browser withholds the SameSite=Strict session cookie from any further
    # redirect (so the signed-in page moves on by itself, a navigation started on this site).
    with running_idp(host="localhost", consent_page=True) as provider:
        runtime = Runtime.build(make_settings(tmp_path, sqlite_url, oidc_issuer=provider.issuer,
                                              oidc_client_id=provider.client_id,
                                              oidc_client_secret=provider.client_secret,
                                              oidc_button_label="Sign in with Example ID",
                                              language_detection="fast"))
        add_person(runtime)
        with serving(create_app(runtime=runtime)) as base:
            runtime.settings.public_url = base  # the port is known only now; read at the first sign-in
            page.goto(f"{base}/admin/login?next=/admin/prompts")
            page.get_by_role("link", name="Sign in with Example ID").click()
            page.get_by_role("link", name="Continue").click()
            expect(page).to_have_url(f"{base}/admin/prompts")
            expect(page.locator(".who")).to_have_text("Ana Agent · agent")
        assert provider.authorize_requests[0]["redirect_uri"] == f"{base}/admin/login/sso/callback"
