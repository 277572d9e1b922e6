"""Canned replies: admins write them (API and page), agents read them and send one from the reply box."""

from __future__ import annotations

import html
import re
from typing import Any

import httpx
from sqlalchemy import select

from service.auth import AdminSessions
from service.config import secret_key
from service.models import ApiToken, AuditEntry, CannedReply, Message, Role, StaffRole, User
from service.people import API_TOKEN, new_token, token_sha256
from service.runtime import Runtime

from .factories import start_conversation

REFUND = {"shortcut": "/refund", "title": "Refund on its way", "content": "Your refund is on its way: 3-5 days."}


def add_person(runtime: Runtime, email: str, role: StaffRole) -> tuple[User, str]:
    """A person with a personal API token."""
    token = new_token()
    with runtime.log.sessions.begin() as db:
        user = User(email=email, name=email.split("@")[0].title(), role=role)
        db.add(user)
        db.flush()
        db.add(ApiToken(user_id=user.id, kind=API_TOKEN, token_sha256=token_sha256(token)))
        db.expunge(user)
    return user, token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def saved(runtime: Runtime) -> list[tuple[str, str, str, str]]:
    with runtime.log.sessions() as db:
        return [(r.shortcut, r.title, r.content, r.updated_by)
                for r in db.scalars(select(CannedReply).order_by(CannedReply.id))]


def audited(runtime: Runtime) -> list[tuple[str, str, str | None, dict[str, Any] | None]]:
    with runtime.log.sessions() as db:
        rows = db.scalars(select(AuditEntry).where(AuditEntry.action.like("canned.%")).order_by(AuditEntry.id))
        return [(r.actor, r.action, r.target, r.details) for r in rows]


def sign_in_as(client: httpx.AsyncClient, runtime: Runtime, user: User) -> None:
    """A browser session for `user`, as the sign-in form would start it."""
    helper = AdminSessions(secret_key(runtime.settings), runtime.admin_token, runtime.log.sessions)
    client.cookies.set(AdminSessions.COOKIE, helper.issue(user), domain="supportbot.test", path="/admin")


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert match, "every form carries a CSRF token"
    return match.group(1)


async def test_admins_create_edit_and_delete_canned_replies(client: httpx.AsyncClient, runtime: Runtime) -> None:
    _, lead = add_person(runtime, "lead@team.example", StaffRole.ADMIN)
    _, agent = add_person(runtime, "dana@team.example", StaffRole.AGENT)

    created = await client.post("/admin/api/canned-replies", headers=bearer(lead), json=REFUND)
    reply_id = created.json()["id"]
    patched = await client.patch(f"/admin/api/canned-replies/{reply_id}", headers=bearer(lead),
                                 json={"title": "Refund sent", "shortcut": "Refund-Sent"})
    listed = await client.get("/admin/api/canned-replies", headers=bearer(agent))

    assert created.status_code == 201, created.text
    assert created.json()["shortcut"] == "refund", "stored without the slash"
    assert patched.status_code == 200 and patched.json()["title"] == "Refund sent"
    assert [(r["shortcut"], r["title"], r["content"], r["updated_by"]) for r in listed.json()] == [
        ("refund-sent", "Refund sent", REFUND["content"], "lead@team.example")]

    deleted = await client.delete(f"/admin/api/canned-replies/{reply_id}", headers=bearer(runtime.admin_token))
    assert deleted.status_code == 204 and saved(runtime) == []
    assert audited(runtime) == [
        ("lead@team.example", "canned.create", f"canned:{reply_id}", {"shortcut": "refund"}),
        ("lead@team.example", "canned.update", f"canned:{reply_id}",
         {"shortcut": "refund-sent", "fields": ["shortcut", "title"]}),
        ("token:admin", "canned.delete", f"canned:{reply_id}", {"shortcut": "refund-sent"}),
    ], "the shortcut is audited, never the text"


async def test_only_admins_write_and_reviewers_do_not_read(client: httpx.AsyncClient, runtime: Runtime) -> None:
    _, agent = add_person(runtime, "dana@team.example", StaffRole.AGENT)
    _, reviewer = add_person(runtime, "rita@team.example", StaffRole.REVIEWER)
    reply_id = (await client.post("/admin/api/canned-replies", headers=bearer(runtime.admin_token),
                                  json=REFUND)).json()["id"]
    before = saved(runtime)

    statuses = {
        "agent creates": (await client.post("/admin/api/canned-replies", headers=bearer(agent),
                                            json={**REFUND, "shortcut": "mine"})).status_code,
        "agent edits": (await client.patch(f"/admin/api/canned-replies/{reply_id}", headers=bearer(agent),
                                           json={"content": "free money"})).status_code,
        "agent deletes": (await client.delete(f"/admin/api/canned-replies/{reply_id}",
                                              headers=bearer(agent))).status_code,
        "reviewer lists": (await client.get("/admin/api/canned-replies", headers=bearer(reviewer))).status_code,
        "nobody lists": (await client.get("/admin/api/canned-replies")).status_code,
    }

    assert statuses == {"agent creates": 403, "agent edits": 403, "agent deletes": 403, "reviewer lists": 403,
                        "nobody lists": 401}
    assert saved(runtime) == before


async def test_bad_canned_replies_are_refused_and_change_nothing(client: httpx.AsyncClient, runtime: Runtime) -> None:
    admin = bearer(runtime.admin_token)
    reply_id = (await client.post("/admin/api/canned-replies", headers=admin, json=REFUND)).json()["id"]
    other_id = (await client.post("/admin/api/canned-replies", headers=admin,
                                  json={**REFUND, "shortcut": "hello"})).json()["id"]
    before = saved(runtime)

    attempts = {
        "spaces in shortcut": await client.post("/admin/api/canned-replies", headers=admin,
                                                json={**REFUND, "shortcut": "my refund"}),
        "shortcut too long": await client.post("/admin/api/canned-replies", headers=admin,
                                               json={**REFUND, "shortcut": "x" * 51}),
        "taken shortcut": await client.post("/admin/api/canned-replies", headers=admin,
                                            json={**REFUND, "shortcut": "/REFUND"}),
        "empty title": await client.post("/admin/api/canned-replies", headers=admin,
                                         json={**REFUND, "shortcut": "new", "title": "  "}),
        "renamed onto another": await client.patch(f"/admin/api/canned-replies/{other_id}", headers=admin,
                                                   json={"shortcut": "refund"}),
        "emptied content": await client.patch(f"/admin/api/canned-replies/{reply_id}", headers=admin,
                                              json={"content": ""}),
        "unknown field": await client.patch(f"/admin/api/canned-replies/{reply_id}", headers=admin,
                                            json={"body": "x"}),
        "unknown id": await client.patch("/admin/api/canned-replies/999999", headers=admin, json={"title": "x"}),
        "id too large": await client.delete(f"/admin/api/canned-replies/{2**63}", headers=admin),
    }

    codes = {name: (r.status_code, r.json()["error"]["code"]) for name, r in attempts.items()}
    assert codes == {
        "spaces in shortcut": (422, "invalid_shortcut"),
        "shortcut too long": (422, "invalid_shortcut"),
        "taken shortcut": (409, "duplicate_shortcut"),
        "empty title": (422, "empty_title"),
        "renamed onto another": (409, "duplicate_shortcut"),
        "emptied content": (422, "empty_content"),
        "unknown field": (422, "validation_error"),
        "unknown id": (404, "not_found"),
        "id too large": (422, "validation_error"),
    }
    assert saved(runtime) == before
    assert [a[1] for a in audited(runtime)] == ["canned.create", "canned.create"]


async def test_an_agent_sends_a_canned_reply_from_the_reply_box(client: httpx.AsyncClient, runtime: Runtime) -> None:
    await client.post("/admin/api/canned-replies", headers=bearer(runtime.admin_token), json=REFUND)
    agent, _ = add_person(runtime, "dana@team.example", StaffRole.AGENT)
    conversation_id, auth = await start_conversation(client)
    await client.post(f"/api/conversations/{conversation_id}/handoff", headers=auth, json={})
    sign_in_as(client, runtime, agent)

    page = await client.get(f"/admin/conversations/{conversation_id}")
    csrf = csrf_of(page.text)
    url = f"/admin/conversations/{conversation_id}/reply"
    canned_only = await client.post(url, data={"content": "", "canned": "refund", "csrf": csrf})
    typed_wins = await client.post(url, data={"content": "Let me check that.", "canned": "/refund", "csrf": csrf})
    unknown = await client.post(url, data={"content": "", "canned": "nope", "csrf": csrf})
    forged = await client.post(url, data={"content": "", "canned": "refund", "csrf": "0" * 64})

    assert page.status_code == 200
    assert '<select name="canned">' in page.text and "/refund · Refund on its way" in html.unescape(page.text)
    assert canned_only.status_code == 303 and typed_wins.status_code == 303
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "unknown_canned_reply"
    assert forged.status_code == 401
    with runtime.log.sessions() as db:
        replies = [(m.content, m.author) for m in db.scalars(
            select(Message).where(Message.conversation_id == conversation_id, Message.role == Role.AGENT)
            .order_by(Message.id))]
    assert replies == [(REFUND["content"], "Dana"), ("Let me check that.", "Dana")]
    transcript = await client.get(f"/api/conversations/{conversation_id}", headers=auth)
    assert REFUND["content"] in transcript.text, "the visitor sees the canned text"


async def test_the_canned_replies_page_adds_edits_and_deletes(client: httpx.AsyncClient, runtime: Runtime) -> None:
    lead, _ = add_person(runtime, "lead@team.example", StaffRole.ADMIN)
    agent, _ = add_person(runtime, "dana@team.example", StaffRole.AGENT)
    sign_in_as(client, runtime, lead)
    csrf = csrf_of((await client.get("/admin/canned")).text)

    added = await client.post("/admin/canned", data={**REFUND, "csrf": csrf})
    reply_id = saved_ids(runtime)[0]
    edited = await client.post(f"/admin/canned/{reply_id}", data={"shortcut": "refund", "title": "Refund",
                                                                   "content": "On its way.", "csrf": csrf})
    shown = await client.get("/admin/canned")
    after_edit = saved(runtime)
    removed = await client.post(f"/admin/canned/{reply_id}/delete", data={"csrf": csrf})

    assert added.status_code == 303 and edited.status_code == 303 and removed.status_code == 303
    assert after_edit == [("refund", "Refund", "On its way.", "lead@team.example")]
    assert 'value="refund"' in shown.text and "On its way." in shown.text
    assert saved(runtime) == []

    sign_in_as(client, runtime, agent)
    refused = await client.get("/admin/canned")
    assert refused.status_code == 403, "agents use canned replies; admins write them"


def saved_ids(runtime: Runtime) -> list[int]:
    with runtime.log.sessions() as db:
        return list(db.scalars(select(CannedReply.id).order_by(CannedReply.id)))
