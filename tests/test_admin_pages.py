"""The review UI in /admin: sign-in, session, CSRF on every form, the pages reviewers use."""

from __future__ import annotations

import re

import httpx
import pytest
from sqlalchemy import select

from service.models import AuditEntry, Correction, Message
from service.runtime import Runtime

from .factories import build_logged_dataset, send, start_conversation


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert match, "every form carries a CSRF token"
    return match.group(1)


async def sign_in(client: httpx.AsyncClient, runtime: Runtime) -> None:
    form = await client.get("/admin/login")
    response = await client.post("/admin/login", data={"token": runtime.admin_token, "csrf": csrf_of(form.text),
                                                       "next": "/admin"})
    assert response.status_code == 303 and response.headers["location"] == "/admin"


async def test_pages_redirect_to_sign_in_without_a_session(client: httpx.AsyncClient) -> None:
    for path in ["/admin", "/admin/prompts", "/admin/audit", "/admin/conversations/abc"]:
        response = await client.get(path)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/admin/login?next=")


async def test_sign_in_sets_a_strict_http_only_session(client: httpx.AsyncClient, runtime: Runtime) -> None:
    form = await client.get("/admin/login")
    wrong = await client.post("/admin/login", data={"token": "nope", "csrf": csrf_of(form.text)})
    no_csrf = await client.post("/admin/login", data={"token": runtime.admin_token, "csrf": "0" * 64})
    right = await client.post("/admin/login", data={"token": runtime.admin_token, "csrf": csrf_of(form.text),
                                                    "next": "https://evil.example/"})

    assert wrong.status_code == 401 and "not the admin token" in wrong.text
    assert no_csrf.status_code == 400
    assert right.status_code == 303 and right.headers["location"] == "/admin", "never an open redirect"
    cookie = right.headers["set-cookie"].lower()
    assert "sb_admin=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    with runtime.log.sessions() as session:
        actions = [e.action for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert actions == ["login.failed", "login"]


async def test_inbox_page_filters_and_security_headers(client: httpx.AsyncClient, runtime: Runtime) -> None:
    data = await build_logged_dataset(client, runtime.admin_token)
    await sign_in(client, runtime)

    everything = await client.get("/admin")
    thumbs = await client.get("/admin", params={"view": "thumbs_down"})
    searched = await client.get("/admin", params={"q": "nonprofits"})

    assert everything.status_code == 200
    assert "default-src 'none'" in everything.headers["content-security-policy"]
    assert everything.headers["x-frame-options"] == "DENY"
    assert "<script" not in everything.text
    assert all(f"/admin/conversations/{entry['id']}" in everything.text for entry in data.values())
    assert f"/admin/conversations/{data['disliked']['id']}" in thumbs.text
    assert f"/admin/conversations/{data['liked']['id']}" not in thumbs.text
    assert "Is there a discount for nonprofits?" in searched.text and "reset my password" not in searched.text


async def test_conversation_page_shows_reply_details_and_correction_form_works(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    conversation_id, auth = await start_conversation(client)
    turn = (await send(client, conversation_id, auth, "How do I reset my password?")).json()
    reply_id = turn["reply"]["message_id"]
    await sign_in(client, runtime)

    page = await client.get(f"/admin/conversations/{conversation_id}")
    assert "support@v2" in page.text and "offline" in page.text and " ms" in page.text
    saved = await client.post(f"/admin/messages/{reply_id}/correction",
                              data={"content": "Use Settings > Security > Reset.", "csrf": csrf_of(page.text)})
    forged = await client.post(f"/admin/messages/{reply_id}/correction",
                               data={"content": "evil", "csrf": "f" * 64})
    after = await client.get(f"/admin/conversations/{conversation_id}")

    assert saved.status_code == 303
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "csrf_failed"
    with runtime.log.sessions() as session:
        assert [c.content for c in session.scalars(select(Correction))] == ["Use Settings &gt; Security &gt; Reset."
                                                                           .replace("&gt;", ">")]
    assert "Use Settings &gt; Security &gt; Reset." in after.text, "shown, HTML-escaped"


async def test_review_exclude_reply_and_resolve_forms(client: httpx.AsyncClient, runtime: Runtime) -> None:
    conversation_id, auth = await start_conversation(client)
    turn = (await send(client, conversation_id, auth, "get me a human")).json()
    assert turn["escalated"] is True
    first = (await send(client, str(conversation_id), auth, "hello?")).json()
    await sign_in(client, runtime)
    csrf = csrf_of((await client.get(f"/admin/conversations/{conversation_id}")).text)

    replied = await client.post(f"/admin/conversations/{conversation_id}/reply",
                                data={"content": "Hi, Dana here. How can I help?", "author": "Dana", "csrf": csrf})
    excluded = await client.post(f"/admin/conversations/{conversation_id}/exclude",
                                 data={"excluded": "true", "csrf": csrf})
    resolved = await client.post(f"/admin/conversations/{conversation_id}/resolve", data={"csrf": csrf})

    assert replied.status_code == excluded.status_code == resolved.status_code == 303
    transcript = (await client.get(f"/api/conversations/{conversation_id}", headers=auth)).json()
    assert transcript["status"] == "resolved"
    assert transcript["messages"][-1]["role"] == "agent"
    with runtime.log.sessions() as session:
        agent = session.scalars(select(Message).where(Message.role == "agent")).one()
    assert agent.author == "Dana" and agent.corrects_id == first["reply"]["message_id"]
    assert runtime.log.get_conversation(conversation_id).exclude_from_training is True


async def test_prompt_pages(client: httpx.AsyncClient, runtime: Runtime) -> None:
    await sign_in(client, runtime)

    listing = await client.get("/admin/prompts")
    one = await client.get("/admin/prompts/support@v1")
    diff = await client.get("/admin/prompts/diff", params={"a": "support@v1", "b": "support@v2"})
    missing = await client.get("/admin/prompts/support@v7")

    assert "support@v1" in listing.text and "support@v2" in listing.text and "production" in listing.text
    assert "You are a helpful support agent for Acme Analytics." in one.text and "sha256" in one.text
    assert '<span class="add">+' in diff.text and '<span class="del">-' in diff.text
    assert missing.status_code == 404


@pytest.mark.parametrize("cookie", ["garbage", ""])
async def test_tampered_session_is_refused(client: httpx.AsyncClient, cookie: str) -> None:
    client.cookies.set("sb_admin", cookie, path="/admin")

    assert (await client.get("/admin")).status_code == 303
    assert (await client.post("/admin/logout", data={"csrf": "x"})).status_code == 401
