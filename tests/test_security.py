"""Who can read what: conversation tokens (property-based), every admin route, secrets in editable files."""

from __future__ import annotations

import re
import shutil
import string
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.api import create_app
from service.auth import VisitorTokens
from service.config import PROJECT_ROOT
from service.errors import Unauthorized
from service.runtime import Runtime

from .test_cli import run

TOKENS = VisitorTokens("property-test-secret-0123456789", max_age_seconds=3600)
ids = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)


@given(ids, ids)
def test_a_token_names_exactly_one_conversation(mine: str, other: str) -> None:
    token = TOKENS.issue(mine)

    assert TOKENS.conversation_id(token) == mine
    if other != mine:
        assert TOKENS.conversation_id(token) != other


@given(ids, st.integers(min_value=0), st.sampled_from(string.ascii_letters + string.digits + "-_."))
def test_any_tampered_token_is_refused(conversation_id: str, position: int, replacement: str) -> None:
    token = TOKENS.issue(conversation_id)
    index = position % len(token)
    tampered = token[:index] + replacement + token[index + 1:]
    if tampered == token:
        return
    try:
        assert TOKENS.conversation_id(tampered) == conversation_id  # only if the change did not matter
    except Unauthorized:
        pass


@given(ids)
def test_tokens_from_another_deployment_are_refused(conversation_id: str) -> None:
    foreign = VisitorTokens("some-other-deployment-secret-9876", 3600).issue(conversation_id)

    with pytest.raises(Unauthorized):
        TOKENS.conversation_id(foreign)


def test_expired_tokens_are_refused() -> None:
    token = TOKENS.issue("a" * 32)

    with pytest.raises(Unauthorized) as raised:
        VisitorTokens("property-test-secret-0123456789", max_age_seconds=-1).conversation_id(token)
    assert raised.value.code == "token_expired"


# Sharing the runtime between examples is intended: each example makes its own conversations.
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
async def test_over_http_no_token_reads_or_writes_another_conversation(runtime: Runtime, data: st.DataObject) -> None:
    transport = httpx.ASGITransport(app=create_app(runtime=runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        owners = [(await client.post("/api/conversations")).json() for _ in range(2)]
        target = data.draw(st.sampled_from(owners))
        intruder = data.draw(st.sampled_from([o for o in owners if o is not target]))
        headers = {"Authorization": f"Bearer {intruder['token']}"}
        read = await client.get(f"/api/conversations/{target['conversation_id']}", headers=headers)
        write = await client.post(f"/api/conversations/{target['conversation_id']}/messages", headers=headers,
                                  json={"content": "let me in"})
    assert read.status_code == 404 and write.status_code == 404


# Sign-in pages and static files; single sign-on's routes are sign-in too (404 while it is not configured).
PUBLIC_ADMIN = {("GET", "/admin/login"), ("GET", "/admin/static/admin.css"), ("GET", "/admin/static/admin-live.js"),
                ("GET", "/admin/login/sso"), ("GET", "/admin/login/sso/callback")}


def app_routes(routes: list[Any]) -> list[APIRoute]:
    """Every endpoint of the app, descending into included routers (FastAPI nests them)."""
    found: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        nested = getattr(route, "original_router", None)
        if nested is not None:
            found += app_routes(list(nested.routes))
    return found


async def test_every_admin_route_refuses_without_credentials(runtime: Runtime,
                                                             reliability: list[dict[str, object]]) -> None:
    app = create_app(runtime=runtime)
    routes = [(method, route.path) for route in app_routes(list(app.routes))
              if route.path.startswith("/admin") for method in sorted(route.methods)]
    refused = []
    for n, (method, path) in enumerate(routes):
        if (method, path) in PUBLIC_ADMIN:
            continue
        url = re.sub(r"\{[^}]+\}", "1", path)
        # Each route from its own address: wrong tokens lock an address out (429), which would hide the route's check.
        transport = httpx.ASGITransport(app=app, client=(f"10.13.{n // 250}.{n % 250 + 1}", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            response = await client.request(method, url, headers={"Authorization": "Bearer not-the-admin-token"})
            redirected = response.status_code == 303 and response.headers["location"].startswith("/admin/login")
            assert response.status_code in {400, 401} or redirected, f"{method} {path}: {response.status_code}"
            refused.append(path)

    assert len(refused) >= 30, "the test must see the whole admin area"
    reliability.append({"section": "attacks", "item": f"every /admin route without credentials "
                        f"({runtime.log.engine.dialect.name})",
                        "result": f"{len(refused)} method+path pairs, all refused (401 or sign-in redirect)"})


def test_prompt_check_fails_on_key_like_strings(tmp_path: Path) -> None:
    shutil.copytree(PROJECT_ROOT / "prompts", tmp_path / "prompts")
    shutil.copytree(PROJECT_ROOT / "knowledge", tmp_path / "knowledge")
    with (tmp_path / "knowledge" / "api.md").open("a") as handle:
        handle.write("\n## Test key\nkeywords: key\n\nUse sk-proj-abcdefghijklmnop1234567890 to try the API.\n")

    result = run(["prompt", "check"], tmp_path, SUPPORTBOT_PROMPTS_DIR=str(tmp_path / "prompts"),
                 SUPPORTBOT_KNOWLEDGE_DIR=str(tmp_path / "knowledge"))

    assert result.returncode == 1
    assert "api.md" in result.stderr and "looks like a secret (sk-pro...90)" in result.stderr
