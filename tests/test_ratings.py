"""CSAT: the visitor rates a conversation once (1-5, optional comment); agents see it in the API and the page."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import select

from service.models import AuditEntry, ConversationRating
from service.runtime import Runtime

from .factories import send, start_conversation
from .test_admin_pages import sign_in


def rating_path(conversation_id: str) -> str:
    """The rating endpoint of a conversation."""
    return f"/api/conversations/{conversation_id}/rating"


async def answered_conversation(client: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    """A conversation the bot has answered once."""
    conversation_id, auth = await start_conversation(client)
    response = await send(client, conversation_id, auth, "How do I reset my password?")
    assert response.status_code == 200, response.text
    return conversation_id, auth


def stored_ratings(runtime: Runtime) -> list[tuple[str, int, str | None]]:
    """Every stored rating, as (conversation, score, comment)."""
    with runtime.log.sessions() as session:
        return [(r.conversation_id, r.score, r.comment) for r in session.scalars(select(ConversationRating))]


def csat_audits(runtime: Runtime) -> list[AuditEntry]:
    """The audit entries of ratings."""
    with runtime.log.sessions() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == "csat.rate")))


async def admin_csat(client: httpx.AsyncClient, runtime: Runtime, conversation_id: str) -> object:
    """The `csat` of the admin conversation JSON."""
    response = await client.get(f"/admin/api/conversations/{conversation_id}",
                                headers={"Authorization": f"Bearer {runtime.admin_token}"})
    assert response.status_code == 200, response.text
    return response.json()["csat"]


async def test_rating_is_stored_audited_and_shown_to_agents(client: httpx.AsyncClient, runtime: Runtime) -> None:
    conversation_id, auth = await answered_conversation(client)
    assert await admin_csat(client, runtime, conversation_id) is None

    response = await client.post(rating_path(conversation_id), headers=auth,
                                 json={"score": 4, "comment": "  Quick and clear, thanks  "})

    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["conversation_id"], body["score"], body["comment"]) == (conversation_id, 4, "Quick and clear, thanks")
    assert stored_ratings(runtime) == [(conversation_id, 4, "Quick and clear, thanks")]
    csat = await admin_csat(client, runtime, conversation_id)
    assert isinstance(csat, dict)
    assert (csat["score"], csat["comment"], csat["created_at"]) == (4, "Quick and clear, thanks", body["created_at"])
    [entry] = csat_audits(runtime)
    assert (entry.actor, entry.target, entry.details) == ("visitor", f"conversation:{conversation_id}", {"score": 4})
    assert "Quick" not in str(entry.details), "the visitor's words stay out of the audit log"


async def test_rating_without_comment_stores_null(client: httpx.AsyncClient, runtime: Runtime) -> None:
    conversation_id, auth = await answered_conversation(client)

    response = await client.post(rating_path(conversation_id), headers=auth, json={"score": 1, "comment": "   "})

    assert response.status_code == 201, response.text
    assert stored_ratings(runtime) == [(conversation_id, 1, None)]


async def test_second_rating_is_refused_and_the_first_kept(client: httpx.AsyncClient, runtime: Runtime) -> None:
    conversation_id, auth = await answered_conversation(client)
    first = await client.post(rating_path(conversation_id), headers=auth, json={"score": 2})
    assert first.status_code == 201

    again = await client.post(rating_path(conversation_id), headers=auth, json={"score": 5, "comment": "changed"})

    assert again.status_code == 409
    assert again.json()["error"]["code"] == "already_rated"
    assert stored_ratings(runtime) == [(conversation_id, 2, None)]
    assert len(csat_audits(runtime)) == 1


async def test_concurrent_ratings_store_exactly_one(client: httpx.AsyncClient, runtime: Runtime) -> None:
    conversation_id, auth = await answered_conversation(client)

    responses = await asyncio.gather(*[client.post(rating_path(conversation_id), headers=auth, json={"score": n})
                                       for n in (1, 2, 3, 4, 5)])

    codes = sorted(r.status_code for r in responses)
    assert codes == [201, 409, 409, 409, 409]
    winner = next(r.json()["score"] for r in responses if r.status_code == 201)
    assert stored_ratings(runtime) == [(conversation_id, winner, None)]


INVALID_BODIES: list[dict[str, object]] = [
    {"score": 0}, {"score": 6}, {"score": -1}, {"score": 4.5}, {"score": "4"}, {"score": True}, {},
    {"score": 3, "comment": "x" * 1001}, {"score": 3, "extra": 1},
]


async def test_invalid_rating_is_a_422_and_stores_nothing(client: httpx.AsyncClient, runtime: Runtime) -> None:
    conversation_id, auth = await answered_conversation(client)

    for body in INVALID_BODIES:
        response = await client.post(rating_path(conversation_id), headers=auth, json=body)
        assert response.status_code == 422, (body, response.text)
        assert set(response.json()["error"]) == {"code", "message"}

    assert stored_ratings(runtime) == []
    assert csat_audits(runtime) == []


async def test_longest_comment_is_accepted(client: httpx.AsyncClient, runtime: Runtime) -> None:
    conversation_id, auth = await answered_conversation(client)

    response = await client.post(rating_path(conversation_id), headers=auth, json={"score": 5, "comment": "y" * 1000})

    assert response.status_code == 201
    assert stored_ratings(runtime) == [(conversation_id, 5, "y" * 1000)]


async def test_conversation_without_an_answer_has_nothing_to_rate(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    conversation_id, auth = await start_conversation(client)

    response = await client.post(rating_path(conversation_id), headers=auth, json={"score": 5})

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "nothing_to_rate"
    assert stored_ratings(runtime) == []


async def test_an_agents_answer_makes_a_conversation_rateable(client: httpx.AsyncClient, runtime: Runtime) -> None:
    conversation_id, auth = await start_conversation(client)
    handoff = await client.post(f"/api/conversations/{conversation_id}/handoff", headers=auth, json={})
    assert handoff.status_code == 200, handoff.text
    reply = await client.post(f"/admin/api/conversations/{conversation_id}/messages",
                              headers={"Authorization": f"Bearer {runtime.admin_token}"},
                              json={"content": "Hello, Dana here. How can I help?"})
    assert reply.status_code == 201, reply.text

    response = await client.post(rating_path(conversation_id), headers=auth, json={"score": 5})

    assert response.status_code == 201, response.text


async def test_other_conversations_and_unknown_ids_are_404(client: httpx.AsyncClient, runtime: Runtime) -> None:
    mine, auth = await answered_conversation(client)
    other, _ = await answered_conversation(client)

    for target in (other, "0" * 32):
        response = await client.post(rating_path(target), headers=auth, json={"score": 3})
        assert response.status_code == 404, response.text
    no_token = await client.post(rating_path(mine), json={"score": 3})

    assert no_token.status_code == 401
    assert stored_ratings(runtime) == []


async def test_conversation_page_shows_the_rating(client: httpx.AsyncClient, runtime: Runtime) -> None:
    conversation_id, auth = await answered_conversation(client)
    await sign_in(client, runtime)
    before = await client.get(f"/admin/conversations/{conversation_id}")
    assert before.status_code == 200 and "CSAT" not in before.text
    await client.post(rating_path(conversation_id), headers=auth, json={"score": 3, "comment": "<b>ok</b> I guess"})

    page = await client.get(f"/admin/conversations/{conversation_id}")

    assert "Visitor rating (CSAT): <strong>3/5</strong>" in page.text
    assert "&lt;b&gt;ok&lt;/b&gt; I guess" in page.text, "the visitor's comment is escaped"

