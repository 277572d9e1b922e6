"""Handling handoffs: claim, assign, unassign, refusals, round-robin (also under concurrency), inbox views."""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from service.api import create_app
from service.auth import AdminSessions
from service.config import secret_key
from service.models import ApiToken, AuditEntry, Conversation, StaffRole, User, utcnow
from service.people import API_TOKEN, new_token, token_sha256
from service.runtime import Runtime

from .conftest import make_settings
from .factories import start_conversation


class RecordingBus:
    """Wraps the live event bus and remembers the assignment events published through it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.events: list[dict[str, Any]] = []

    async def publish(self, event: dict[str, Any]) -> None:
        if event.get("type") == "assignment":
            assert event.pop("id"), "every event has an id (SSE clients tell them apart by it)"
            self.events.append(event)
        await self.inner.publish(event)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def add_person(runtime: Runtime, email: str, role: StaffRole, *, available: bool = False,
               disabled: bool = False) -> str:
    """A person with a personal API token; returns the bearer header value's token."""
    token = new_token()
    with runtime.log.sessions.begin() as db:
        user = User(email=email, name=email.split("@")[0].title(), role=role, available=available,
                    disabled_at=utcnow() if disabled else None)
        db.add(user)
        db.flush()
        db.add(ApiToken(user_id=user.id, kind=API_TOKEN, token_sha256=token_sha256(token)))
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def handoff(client: httpx.AsyncClient) -> str:
    """A conversation whose visitor pressed "talk to a human"."""
    conversation_id, auth = await start_conversation(client)
    response = await client.post(f"/api/conversations/{conversation_id}/handoff", headers=auth, json={})
    assert response.status_code == 200, response.text
    return conversation_id


def audit_rows(runtime: Runtime, *actions: str) -> list[tuple[str, str, str | None, dict[str, Any] | None]]:
    with runtime.log.sessions() as db:
        rows = db.scalars(select(AuditEntry).where(AuditEntry.action.in_(actions)).order_by(AuditEntry.id))
        return [(r.actor, r.action, r.target, r.details) for r in rows]


def assignee_of(runtime: Runtime, conversation_id: str) -> int | None:
    with runtime.log.sessions() as db:
        return db.scalar(select(Conversation.assignee_id).where(Conversation.id == conversation_id))


@pytest.fixture
def bus(runtime: Runtime) -> RecordingBus:
    recorder = RecordingBus(runtime.events)
    runtime.events = recorder  # type: ignore[assignment]
    return recorder


async def test_an_agent_claims_a_handoff_and_everyone_sees_the_assignee(
        client: httpx.AsyncClient, runtime: Runtime, bus: RecordingBus) -> None:
    agent = add_person(runtime, "dana@team.example", StaffRole.AGENT)
    conversation_id = await handoff(client)

    claimed = await client.post(f"/admin/api/conversations/{conversation_id}/claim", headers=bearer(agent))
    detail = await client.get(f"/admin/api/conversations/{conversation_id}", headers=bearer(runtime.admin_token))
    queue = await client.get("/admin/api/escalations", headers=bearer(agent))

    assert claimed.status_code == 200, claimed.text
    assert claimed.json() == {"conversation_id": conversation_id, "assignee": "dana@team.example"}
    assert detail.json()["assignee"] == "dana@team.example"
    assert [e["assignee"] for e in detail.json()["escalations"]] == ["dana@team.example"]
    assert [(e["conversation_id"], e["assignee"]) for e in queue.json()] == [(conversation_id, "dana@team.example")]
    assert audit_rows(runtime, "claim") == [("dana@team.example", "claim", f"conversation:{conversation_id}",
                                             {"from": None, "to": "dana@team.example"})]
    assert bus.events == [{"type": "assignment", "conversation_id": conversation_id,
                           "assignee": "dana@team.example", "by": "dana@team.example"}]


async def test_assign_to_a_colleague_then_unassign(client: httpx.AsyncClient, runtime: Runtime,
                                                   bus: RecordingBus) -> None:
    lead = add_person(runtime, "lead@team.example", StaffRole.ADMIN)
    add_person(runtime, "sam@team.example", StaffRole.AGENT)
    conversation_id = await handoff(client)

    given = await client.post(f"/admin/api/conversations/{conversation_id}/assign", headers=bearer(lead),
                              json={"assignee": " Sam@Team.example "})
    by_token = await client.post(f"/admin/api/conversations/{conversation_id}/assign",
                                 headers=bearer(runtime.admin_token), json={"assignee": None})
    detail = await client.get(f"/admin/api/conversations/{conversation_id}", headers=bearer(lead))

    assert given.json() == {"conversation_id": conversation_id, "assignee": "sam@team.example"}
    assert by_token.json() == {"conversation_id": conversation_id, "assignee": None}
    assert detail.json()["assignee"] is None
    target = f"conversation:{conversation_id}"
    assert audit_rows(runtime, "assign") == [
        ("lead@team.example", "assign", target, {"from": None, "to": "sam@team.example"}),
        ("token:admin", "assign", target, {"from": "sam@team.example", "to": None}),
    ]
    assert [(e["assignee"], e["by"]) for e in bus.events] == [("sam@team.example", "lead@team.example"),
                                                                (None, "token:admin")]


async def test_refusals_leave_the_assignee_and_the_audit_log_alone(
        client: httpx.AsyncClient, runtime: Runtime, bus: RecordingBus) -> None:
    agent = add_person(runtime, "dana@team.example", StaffRole.AGENT)
    reviewer = add_person(runtime, "rita@team.example", StaffRole.REVIEWER)
    add_person(runtime, "gone@team.example", StaffRole.AGENT, disabled=True)
    conversation_id = await handoff(client)
    assert (await client.post(f"/admin/api/conversations/{conversation_id}/claim", headers=bearer(agent))
            ).status_code == 200
    before = assignee_of(runtime, conversation_id)
    url = f"/admin/api/conversations/{conversation_id}"

    attempts = {
        "reviewer as assignee": await client.post(f"{url}/assign", headers=bearer(agent),
                                                  json={"assignee": "rita@team.example"}),
        "unknown person": await client.post(f"{url}/assign", headers=bearer(agent),
                                            json={"assignee": "who@team.example"}),
        "disabled person": await client.post(f"{url}/assign", headers=bearer(agent),
                                             json={"assignee": "gone@team.example"}),
        "no assignee field": await client.post(f"{url}/assign", headers=bearer(agent), json={}),
        "unknown conversation": await client.post(f"/admin/api/conversations/{'0' * 32}/assign",
                                                  headers=bearer(agent), json={"assignee": None}),
        "reviewer claims": await client.post(f"{url}/claim", headers=bearer(reviewer)),
        "shared token claims": await client.post(f"{url}/claim", headers=bearer(runtime.admin_token)),
        "no credentials": await client.post(f"{url}/claim"),
    }

    codes = {name: (r.status_code, r.json()["error"]["code"]) for name, r in attempts.items()}
    assert codes == {
        "reviewer as assignee": (422, "assignee_cannot_answer"),
        "unknown person": (422, "unknown_assignee"),
        "disabled person": (422, "assignee_disabled"),
        "no assignee field": (422, "validation_error"),
        "unknown conversation": (404, "not_found"),
        "reviewer claims": (403, "forbidden_role"),
        "shared token claims": (422, "claim_needs_person"),
        "no credentials": (401, "missing_token"),
    }
    assert assignee_of(runtime, conversation_id) == before
    assert [row[1] for row in audit_rows(runtime, "claim", "assign")] == ["claim"], "only the first claim"
    assert len(bus.events) == 1


def round_robin_runtime(tmp_path: Path, database_url: str) -> Runtime:
    return Runtime.build(make_settings(tmp_path, database_url, auto_assign=True))


@pytest.fixture
async def rr_client(tmp_path: Path, database_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    runtime = round_robin_runtime(tmp_path, database_url)
    runtime.events = RecordingBus(runtime.events)  # type: ignore[assignment]
    transport = httpx.ASGITransport(app=create_app(runtime=runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://supportbot.test") as client:
        yield client, runtime
    await runtime.aclose()


async def test_round_robin_rotates_among_available_enabled_agents(
        rr_client: tuple[httpx.AsyncClient, Runtime]) -> None:
    client, runtime = rr_client
    for email, available, disabled, role in [("a@team.example", True, False, StaffRole.AGENT),
                                             ("b@team.example", False, False, StaffRole.AGENT),
                                             ("c@team.example", True, False, StaffRole.AGENT),
                                             ("d@team.example", True, True, StaffRole.AGENT),
                                             ("r@team.example", True, False, StaffRole.REVIEWER),
                                             ("x@team.example", True, False, StaffRole.ADMIN)]:
        add_person(runtime, email, role, available=available, disabled=disabled)
    admin = bearer(runtime.admin_token)

    assignees = []
    for _ in range(4):
        conversation_id = await handoff(client)
        assignees.append((await client.get(f"/admin/api/conversations/{conversation_id}", headers=admin)
                          ).json()["assignee"])

    assert assignees == ["a@team.example", "c@team.example", "a@team.example", "c@team.example"]
    published = runtime.events.events  # type: ignore[attr-defined]
    assert [(e["assignee"], e["by"]) for e in published] == [(a, "system:round-robin") for a in assignees], \
        "the agents' pages hear of each automatic assignment"
    rows = audit_rows(runtime, "assign")
    assert [(actor, details) for actor, _, _, details in rows][:2] == [
        ("system:round-robin", {"from": None, "to": "a@team.example", "auto": True}),
        ("system:round-robin", {"from": None, "to": "c@team.example", "auto": True})]


async def test_an_agent_marks_themself_available_and_gets_the_next_handoff(
        rr_client: tuple[httpx.AsyncClient, Runtime]) -> None:
    client, runtime = rr_client
    agent = add_person(runtime, "a@team.example", StaffRole.AGENT)
    unassigned = await handoff(client)

    turned_on = await client.post("/admin/api/me/availability", headers=bearer(agent), json={"available": True})
    assigned = await handoff(client)
    by_token = await client.post("/admin/api/me/availability", headers=bearer(runtime.admin_token),
                                 json={"available": True})

    assert turned_on.json() == {"email": "a@team.example", "available": True}
    assert assignee_of(runtime, unassigned) is None, "nobody was available"
    assert assignee_of(runtime, assigned) is not None
    assert by_token.status_code == 422 and by_token.json()["error"]["code"] == "availability_needs_person"
    assert audit_rows(runtime, "availability") == [("a@team.example", "availability", "user:a@team.example",
                                                    {"available": True})]


async def test_a_claimed_conversation_keeps_its_assignee_when_it_escalates(
        rr_client: tuple[httpx.AsyncClient, Runtime]) -> None:
    client, runtime = rr_client
    add_person(runtime, "a@team.example", StaffRole.AGENT, available=True)
    sam = add_person(runtime, "sam@team.example", StaffRole.AGENT)
    conversation_id, auth = await start_conversation(client)
    await client.post(f"/admin/api/conversations/{conversation_id}/claim", headers=bearer(sam))

    await client.post(f"/api/conversations/{conversation_id}/handoff", headers=auth, json={})
    detail = await client.get(f"/admin/api/conversations/{conversation_id}", headers=bearer(sam))

    assert detail.json()["status"] == "escalated" and detail.json()["assignee"] == "sam@team.example"


def test_concurrent_handoffs_each_get_one_agent_and_the_rotation_stays_fair(tmp_path: Path,
                                                                             database_url: str) -> None:
    runtime = round_robin_runtime(tmp_path, database_url)
    for name in "abc":
        add_person(runtime, f"{name}@team.example", StaffRole.AGENT, available=True)
    rounds, threads = 12, 2  # enough overlap that a pick without the compare-and-set doubles up (fails)
    conversations = [[runtime.log.create_conversation().id for _ in range(rounds)] for _ in range(threads)]
    start = threading.Barrier(threads)
    failures: list[BaseException] = []

    def escalate_all(ids: list[str]) -> None:
        try:
            start.wait(timeout=10)
            for conversation_id in ids:
                runtime.handoff.request_handoff(conversation_id, None, None, texts=lambda key, language: key)
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            failures.append(error)

    workers = [threading.Thread(target=escalate_all, args=(ids,)) for ids in conversations]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)

    assert not failures, failures
    with runtime.log.sessions() as db:
        emails = dict(db.execute(select(User.id, User.email)).all())
        assigned = [db.scalar(select(Conversation.assignee_id).where(Conversation.id == cid))
                    for ids in conversations for cid in ids]
        autos = db.scalars(select(AuditEntry).where(AuditEntry.action == "assign")).all()
    assert all(a is not None for a in assigned), "every handoff got an agent"
    assert Counter(emails[a] for a in assigned if a is not None) == {
        "a@team.example": 8, "b@team.example": 8, "c@team.example": 8}, "fair: each agent in turn"
    assert len(autos) == rounds * threads, "exactly one assignment per handoff"
    runtime.log.engine.dispose()


async def test_inbox_views_mine_unassigned_and_all(client: httpx.AsyncClient, runtime: Runtime,
                                                   bus: RecordingBus) -> None:
    dana = add_person(runtime, "dana@team.example", StaffRole.AGENT)
    sam = add_person(runtime, "sam@team.example", StaffRole.AGENT)
    danas, sams, waiting = await handoff(client), await handoff(client), await handoff(client)
    chatting, _ = await start_conversation(client)
    await client.post(f"/admin/api/conversations/{danas}/claim", headers=bearer(dana))
    await client.post(f"/admin/api/conversations/{sams}/claim", headers=bearer(sam))

    async def ids(token: str, assigned: str) -> tuple[int, object]:
        response = await client.get("/admin/api/conversations", headers=bearer(token), params={"assigned": assigned})
        body = response.json()
        return response.status_code, ({(i["id"], i["assignee"]) for i in body["items"]} if response.is_success
                                      else body["error"]["code"])

    assert await ids(dana, "mine") == (200, {(danas, "dana@team.example")})
    assert await ids(sam, "mine") == (200, {(sams, "sam@team.example")})
    assert await ids(dana, "unassigned") == (200, {(waiting, None)}), "open handoffs nobody took"
    assert await ids(dana, "all") == (200, {(danas, "dana@team.example"), (sams, "sam@team.example"),
                                            (waiting, None), (chatting, None)})
    assert await ids(runtime.admin_token, "mine") == (422, "mine_needs_person")
    assert await ids(dana, "theirs") == (422, "validation_error")


async def test_resolved_handoffs_leave_the_unassigned_view(client: httpx.AsyncClient, runtime: Runtime) -> None:
    waiting = await handoff(client)
    admin = bearer(runtime.admin_token)
    before = (await client.get("/admin/api/conversations", headers=admin, params={"assigned": "unassigned"})).json()
    await client.post(f"/admin/api/conversations/{waiting}/resolve", headers=admin)
    after = (await client.get("/admin/api/conversations", headers=admin, params={"assigned": "unassigned"})).json()

    assert [i["id"] for i in before["items"]] == [waiting]
    assert after["items"] == []


def test_round_robin_starts_with_who_waited_longest(tmp_path: Path, database_url: str) -> None:
    runtime = round_robin_runtime(tmp_path, database_url)
    for name in "abc":
        add_person(runtime, f"{name}@team.example", StaffRole.AGENT, available=True)
    now = utcnow()
    with runtime.log.sessions.begin() as db:
        for name, minutes in [("a", 1), ("b", 30), ("c", 10)]:
            db.execute(User.__table__.update().where(User.email == f"{name}@team.example")
                       .values(last_assigned_at=now - timedelta(minutes=minutes)))
    order = []
    for _ in range(3):
        conversation_id = runtime.log.create_conversation().id
        runtime.handoff.request_handoff(conversation_id, None, None, texts=lambda key, language: key)
        with runtime.log.sessions() as db:
            order.append(db.scalar(select(User.email).join(Conversation, Conversation.assignee_id == User.id)
                                   .where(Conversation.id == conversation_id)))
    runtime.log.engine.dispose()

    assert order == ["b@team.example", "c@team.example", "a@team.example"]


def sign_in_as(client: httpx.AsyncClient, runtime: Runtime, email: str | None) -> None:
    """A browser session for the person with `email` (None: signed in with the shared admin token)."""
    helper = AdminSessions(secret_key(runtime.settings), runtime.admin_token, runtime.log.sessions)
    with runtime.log.sessions() as db:
        user = db.scalars(select(User).where(User.email == email)).first() if email else None
    client.cookies.set(AdminSessions.COOKIE, helper.issue(user), domain="supportbot.test", path="/admin")


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert match, "every form carries a CSRF token"
    return match.group(1)


async def test_the_conversation_page_claims_and_assigns_through_csrf_forms(
        client: httpx.AsyncClient, runtime: Runtime, bus: RecordingBus) -> None:
    add_person(runtime, "dana@team.example", StaffRole.AGENT)
    add_person(runtime, "sam@team.example", StaffRole.AGENT)
    add_person(runtime, "rita@team.example", StaffRole.REVIEWER)
    add_person(runtime, "gone@team.example", StaffRole.AGENT, disabled=True)
    conversation_id = await handoff(client)
    sign_in_as(client, runtime, "dana@team.example")
    url = f"/admin/conversations/{conversation_id}"

    before = await client.get(url)
    csrf = csrf_of(before.text)
    forged = await client.post(f"{url}/claim", data={"csrf": "0" * 64})
    claimed = await client.post(f"{url}/claim", data={"csrf": csrf})
    after_claim = await client.get(url)
    handed = await client.post(f"{url}/assign", data={"assignee": "sam@team.example", "csrf": csrf})
    to_reviewer = await client.post(f"{url}/assign", data={"assignee": "rita@team.example", "csrf": csrf})
    after_assign = await client.get(url)

    options = re.findall(r'<option value="([^"]*)"', before.text.split('name="assignee"')[1].split("</select>")[0])
    assert options == ["", "dana@team.example", "sam@team.example"], "enabled admins and agents only"
    assert "Assignee: <span class=\"muted\">nobody</span>" in before.text and ">Claim</button>" in before.text
    assert forged.status_code == 401
    assert claimed.status_code == 303 and claimed.headers["location"] == url
    assert "Assignee: <strong>dana@team.example</strong>" in after_claim.text
    assert ">Claim</button>" not in after_claim.text, "nothing to claim: it is yours"
    assert handed.status_code == 303
    assert to_reviewer.status_code == 422 and to_reviewer.json()["error"]["code"] == "assignee_cannot_answer"
    assert "Assignee: <strong>sam@team.example</strong>" in after_assign.text
    assert [(e["assignee"], e["by"]) for e in bus.events] == [("dana@team.example", "dana@team.example"),
                                                                ("sam@team.example", "dana@team.example")]


async def test_the_inbox_page_shows_mine_unassigned_and_all(client: httpx.AsyncClient, runtime: Runtime) -> None:
    dana = add_person(runtime, "dana@team.example", StaffRole.AGENT)
    danas, waiting = await handoff(client), await handoff(client)
    await client.post(f"/admin/api/conversations/{danas}/claim", headers=bearer(dana))

    sign_in_as(client, runtime, "dana@team.example")
    mine = await client.get("/admin", params={"assigned": "mine"})
    unassigned = await client.get("/admin", params={"assigned": "unassigned"})
    everything = await client.get("/admin")
    sign_in_as(client, runtime, None)
    as_token = await client.get("/admin", params={"assigned": "mine"})

    def listed(page: httpx.Response) -> set[str]:
        return set(re.findall(r'href="/admin/conversations/([0-9a-f]{32})"', page.text))

    assert listed(mine) == {danas} and "<td>dana@team.example</td>" in mine.text
    assert listed(unassigned) == {waiting}
    assert listed(everything) == {danas, waiting} and "<th>Assignee</th>" in everything.text
    assert '<strong aria-current="page">Mine</strong>' in mine.text
    assert re.search(r'href="/admin\?[^"]*assigned=unassigned">Unassigned<', everything.text)
    assert re.search(r'href="/admin\?[^"]*assigned=mine">Mine<', everything.text)
    assert listed(as_token) == {danas, waiting}, "the shared admin token is no person: it sees all"
    assert "assigned=mine" not in as_token.text


async def test_an_agent_toggles_availability_on_the_inbox_page(
        rr_client: tuple[httpx.AsyncClient, Runtime]) -> None:
    client, runtime = rr_client
    add_person(runtime, "dana@team.example", StaffRole.AGENT)
    sign_in_as(client, runtime, "dana@team.example")

    page = await client.get("/admin")
    turned_on = await client.post("/admin/me/availability", data={"available": "true", "csrf": csrf_of(page.text)})
    after = await client.get("/admin")
    conversation_id = await handoff(client)

    assert "Take new handoffs" in page.text
    assert turned_on.status_code == 303 and "Stop taking handoffs" in after.text
    assert assignee_of(runtime, conversation_id) is not None, "round-robin now gives her handoffs"
