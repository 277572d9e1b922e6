"""Erasure and access on request: a conversation or a person (verified user id or contact e-mail) erased with
every row about them, audited without content; unknown ones are 404 and audited; admins only; export as JSON."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from service.api import create_app
from service.auth import user_hash
from service.models import AuditEntry, PromptSnapshot, StaffRole
from service.runtime import Runtime

from .conftest import make_settings
from .privacy_data import Footprint, census, leave_footprint
from .test_roles import add_person

IDENTITY_SECRET = "identity-secret-for-tests"
ADA, BOB = "ada@example.com", "bob@example.com"


@pytest.fixture
def privacy_runtime(tmp_path: Path, database_url: str) -> Runtime:
    return Runtime.build(make_settings(tmp_path, database_url, handoff_webhook_url="http://hooks.test/handoff",
                                       admin_token="admin-token-for-tests-0123", identity_secret=IDENTITY_SECRET))


@pytest.fixture
async def api(privacy_runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(runtime=privacy_runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://supportbot.test") as client:
        yield client
    await privacy_runtime.aclose()


def _admin(runtime: Runtime) -> dict[str, str]:
    return {"Authorization": f"Bearer {runtime.admin_token}"}


async def _verified(api: httpx.AsyncClient, user_id: str) -> Footprint:
    """A conversation with a verified widget identity and one answered message."""
    created = await api.post("/api/conversations", json={"metadata": {
        "user_id": user_id, "user_hash": user_hash(IDENTITY_SECRET, user_id)}})
    assert created.status_code == 201
    conversation_id = created.json()["conversation_id"]
    auth = {"Authorization": f"Bearer {created.json()['token']}"}
    sent = await api.post(f"/api/conversations/{conversation_id}/messages", headers=auth,
                          json={"content": f"How do I export a report to CSV? I am {user_id}"})
    assert sent.status_code == 200
    return Footprint(conversation_id, sent.json()["reply"]["message_id"], auth)


def _audits(runtime: Runtime, action: str) -> list[AuditEntry]:
    with runtime.log.sessions() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)))


def _no_content(entry: AuditEntry, *secrets: str) -> None:
    text = json.dumps({"target": entry.target, "details": entry.details})
    for secret in secrets:
        assert secret not in text, f"the audit row holds {secret!r}"


async def test_deleting_a_conversation_removes_every_row_about_it_and_audits_the_counts(
        api: httpx.AsyncClient, privacy_runtime: Runtime) -> None:
    ada = await leave_footprint(api, _admin(privacy_runtime), email=ADA, corrected=True)
    bob = await leave_footprint(api, _admin(privacy_runtime), email=BOB)
    sessions = privacy_runtime.log.sessions
    before, bob_before = census(sessions, ada.conversation_id), census(sessions, bob.conversation_id)
    with sessions() as session:
        snapshots = session.scalar(select(func.count()).select_from(PromptSnapshot))

    response = await api.delete(f"/admin/api/conversations/{ada.conversation_id}", headers=_admin(privacy_runtime))

    assert response.status_code == 200, response.text
    assert response.json() == {"conversations": [ada.conversation_id], "deleted": before}
    assert set(census(sessions, ada.conversation_id).values()) == {0}
    assert census(sessions, bob.conversation_id) == bob_before
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(PromptSnapshot)) == snapshots, "snapshots stay"
    (entry,) = _audits(privacy_runtime, "erasure.conversation")
    assert entry.actor == "token:admin" and entry.created_at is not None
    assert entry.details == {"found": True, "rows": before}
    _no_content(entry, ADA, "CSV", "4111", "Refunds")
    assert (await api.get(f"/api/conversations/{ada.conversation_id}", headers=ada.auth)).status_code in {401, 404}


async def test_an_unknown_conversation_is_404_and_audited(api: httpx.AsyncClient, privacy_runtime: Runtime) -> None:
    response = await api.delete("/admin/api/conversations/" + "0" * 32, headers=_admin(privacy_runtime))

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    (entry,) = _audits(privacy_runtime, "erasure.conversation")
    assert entry.details == {"found": False, "rows": {}}


async def test_erasure_by_verified_user_id_takes_all_of_theirs_and_nothing_else(
        api: httpx.AsyncClient, privacy_runtime: Runtime) -> None:
    first = await _verified(api, "customer-42")
    second = await _verified(api, "customer-42")
    other = await _verified(api, "customer-7")
    sessions = privacy_runtime.log.sessions
    other_before = census(sessions, other.conversation_id)

    response = await api.post("/admin/api/erasure", headers=_admin(privacy_runtime), json={"user_id": "customer-42"})

    assert response.status_code == 200, response.text
    assert sorted(response.json()["conversations"]) == sorted([first.conversation_id, second.conversation_id])
    assert response.json()["deleted"]["messages"] == 4
    for footprint in (first, second):
        assert set(census(sessions, footprint.conversation_id).values()) == {0}
    assert census(sessions, other.conversation_id) == other_before
    (entry,) = _audits(privacy_runtime, "erasure.person")
    assert entry.details == {"by": "user_id", "found": True, "conversations": 2, "rows": response.json()["deleted"]}
    _no_content(entry, "customer-42", ADA)


async def test_erasure_by_contact_email_finds_the_handoffs_contact(
        api: httpx.AsyncClient, privacy_runtime: Runtime) -> None:
    ada = await leave_footprint(api, _admin(privacy_runtime), email=ADA, corrected=True)
    bob = await leave_footprint(api, _admin(privacy_runtime), email=BOB)
    sessions = privacy_runtime.log.sessions
    ada_rows, bob_rows = census(sessions, ada.conversation_id), census(sessions, bob.conversation_id)

    response = await api.post("/admin/api/erasure", headers=_admin(privacy_runtime), json={"email": "Ada@Example.com"})

    assert response.status_code == 200, response.text
    assert response.json() == {"conversations": [ada.conversation_id], "deleted": ada_rows}
    assert {"messages", "feedback", "corrections", "escalations", "conversation_ratings", "outbox"} <= set(ada_rows)
    assert census(sessions, bob.conversation_id) == bob_rows
    (entry,) = _audits(privacy_runtime, "erasure.person")
    _no_content(entry, ADA.split("@")[0], "Ada")


async def test_an_unknown_person_is_404_and_audited(api: httpx.AsyncClient, privacy_runtime: Runtime) -> None:
    response = await api.post("/admin/api/erasure", headers=_admin(privacy_runtime), json={"email": "nobody@x.org"})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "person_not_found"
    (entry,) = _audits(privacy_runtime, "erasure.person")
    assert entry.actor == "token:admin"
    assert entry.details == {"by": "email", "found": False, "conversations": 0, "rows": {}}
    _no_content(entry, "nobody")


@pytest.mark.parametrize("body", [{}, {"user_id": "a", "email": "b@c.de"}, {"name": "Ada"}])
async def test_erasure_needs_exactly_one_way_to_name_the_person(
        api: httpx.AsyncClient, privacy_runtime: Runtime, body: dict[str, str]) -> None:
    response = await api.post("/admin/api/erasure", headers=_admin(privacy_runtime), json=body)

    assert response.status_code == 422


async def test_only_admins_may_erase_or_export(api: httpx.AsyncClient, privacy_runtime: Runtime) -> None:
    ada = await leave_footprint(api, _admin(privacy_runtime), email=ADA)
    for role in (StaffRole.AGENT, StaffRole.REVIEWER):
        _, token = add_person(privacy_runtime, role)
        headers = {"Authorization": f"Bearer {token}"}
        assert (await api.delete(f"/admin/api/conversations/{ada.conversation_id}", headers=headers)
                ).status_code == 403
        assert (await api.post("/admin/api/erasure", headers=headers, json={"email": ADA})).status_code == 403
        assert (await api.get("/admin/api/visitors/export", headers=headers, params={"email": ADA})
                ).status_code == 403
    assert (await api.post("/admin/api/erasure", json={"email": ADA})).status_code == 401
    assert census(privacy_runtime.log.sessions, ada.conversation_id)["messages"] > 0
    _, admin_token = add_person(privacy_runtime, StaffRole.ADMIN)
    response = await api.post("/admin/api/erasure", headers={"Authorization": f"Bearer {admin_token}"},
                              json={"email": ADA})
    assert response.status_code == 200
    (entry,) = _audits(privacy_runtime, "erasure.person")
    assert entry.actor == "admin@team.example"


async def test_export_gives_everything_stored_about_a_person(
        api: httpx.AsyncClient, privacy_runtime: Runtime) -> None:
    await leave_footprint(api, _admin(privacy_runtime), email=ADA, corrected=True)
    ada = await _verified(api, "customer-42")
    handoff = await api.post(f"/api/conversations/{ada.conversation_id}/handoff", headers=ada.auth,
                             json={"contact": ADA})
    assert handoff.status_code == 200

    by_id = await api.get("/admin/api/visitors/export", headers=_admin(privacy_runtime),
                          params={"user_id": "customer-42"})
    by_email = await api.get("/admin/api/visitors/export", headers=_admin(privacy_runtime), params={"email": ADA})

    assert by_id.status_code == 200, by_id.text
    (conversation,) = by_id.json()["conversations"]
    assert conversation["id"] == ada.conversation_id
    assert conversation["visitor"] == {"user_id": "customer-42", "verified": True}
    assert [m["content"] for m in conversation["messages"]][0] == "How do I export a report to CSV? I am customer-42"
    assert conversation["escalations"][0]["contact"] == ADA and conversation["notifications"]
    assert ada.conversation_id in {c["id"] for c in by_email.json()["conversations"]}
    assert len(by_email.json()["conversations"]) == 2, "the verified one and the one with the same handoff contact"
    first = next(c for c in by_email.json()["conversations"] if c["id"] != ada.conversation_id)
    assert first["feedback"][0]["comment"] == f"write to {ADA}" and first["rating"][0]["score"] == 2
    assert first["corrections"][0]["content"].startswith("Refunds take 5 days")
    assert "4111 1111 1111 1111" not in by_email.text, "the card number was never stored"
    entries = _audits(privacy_runtime, "visitor.export")
    assert [e.details for e in entries] == [{"by": "user_id", "found": True, "conversations": 1},
                                           {"by": "email", "found": True, "conversations": 2}]


async def test_export_of_an_unknown_person_is_404(api: httpx.AsyncClient, privacy_runtime: Runtime) -> None:
    response = await api.get("/admin/api/visitors/export", headers=_admin(privacy_runtime),
                             params={"user_id": "nobody"})
    none_given = await api.get("/admin/api/visitors/export", headers=_admin(privacy_runtime))

    assert response.status_code == 404 and none_given.status_code == 422


async def test_a_notification_erased_while_it_is_being_delivered_is_let_go(
        api: httpx.AsyncClient, privacy_runtime: Runtime) -> None:
    ada = await leave_footprint(api, _admin(privacy_runtime), email=ADA)
    outbox = privacy_runtime.outbox
    now = datetime.now(UTC)
    claimed = outbox.claim_due(now, limit=10)
    assert claimed, "the handoff queued a notification"

    response = await api.delete(f"/admin/api/conversations/{ada.conversation_id}", headers=_admin(privacy_runtime))
    assert response.status_code == 200

    # The sender's attempt ends after the rows are gone: a failure has nothing to retry, a success nothing to mark.
    assert outbox.mark_failed(claimed[0].id, "HTTP 500", now, max_attempts=5) is None
    outbox.mark_delivered(claimed[0].id, now)
    assert set(outbox.counts().values()) == {0}
