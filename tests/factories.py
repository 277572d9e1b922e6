"""Small factories for test data: conversations through the API, rows in the log."""

from __future__ import annotations

import httpx


async def start_conversation(client: httpx.AsyncClient) -> tuple[str, dict[str, str]]:
    """Create a conversation; return its id and the auth header for it."""
    response = await client.post("/api/conversations")
    assert response.status_code == 201, response.text
    body = response.json()
    return body["conversation_id"], {"Authorization": f"Bearer {body['token']}"}


async def send(
    client: httpx.AsyncClient, conversation_id: str, headers: dict[str, str], content: str, **extra: object
) -> httpx.Response:
    """POST one message as JSON."""
    return await client.post(f"/api/conversations/{conversation_id}/messages", headers=headers,
                             json={"content": content, **extra})


def parse_sse(body: str) -> list[tuple[str, dict[str, object]]]:
    """The (event, data) pairs of a Server-Sent Events body."""
    import json

    events = []
    for block in body.strip().split("\n\n"):
        name, data = "message", ""
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data += line[6:]
        events.append((name, json.loads(data)))
    return events


async def rate(client: httpx.AsyncClient, conversation_id: str, headers: dict[str, str], message_id: int,
               rating: str) -> None:
    """Thumbs up or down on a bot reply."""
    response = await client.post(f"/api/conversations/{conversation_id}/messages/{message_id}/feedback",
                                 headers=headers, json={"rating": rating})
    assert response.status_code == 200, response.text


async def build_logged_dataset(client: httpx.AsyncClient, admin_token: str) -> dict[str, dict[str, object]]:
    """A realistic log: feedback, escalations, agent replies, corrections, PII, exclusions, duplicates.

    Returns, per scenario, the conversation id and the ids of the replies that matter.
    """
    admin = {"Authorization": f"Bearer {admin_token}"}
    data: dict[str, dict[str, object]] = {}

    async def turn(name: str, text: str) -> dict[str, object]:
        if name not in data:
            conversation_id, auth = await start_conversation(client)
            data[name] = {"id": conversation_id, "auth": auth, "replies": []}
        entry = data[name]
        body = (await send(client, str(entry["id"]), entry["auth"], text)).json()  # type: ignore[arg-type]
        entry["replies"].append(body["reply"]["message_id"])  # type: ignore[attr-defined]
        return body

    # liked: a good answer with a thumbs-up
    liked = await turn("liked", "How do I reset my password?")
    await rate(client, str(data["liked"]["id"]), data["liked"]["auth"],  # type: ignore[arg-type]
               liked["reply"]["message_id"], "up")
    # disliked: PII in the question, thumbs-down, a reviewer's correction that repeats the e-mail
    disliked = await turn("disliked",
                          "Export to CSV fails with an error. I'm jane@example.com, card 4111 1111 1111 1111")
    await rate(client, str(data["disliked"]["id"]), data["disliked"]["auth"],  # type: ignore[arg-type]
               disliked["reply"]["message_id"], "down")
    correction = await client.post(f"/admin/api/messages/{disliked['reply']['message_id']}/correction", headers=admin,
                                   json={"content": "Sorry jane@example.com: the CSV limit is 100 MB, split by month."})
    assert correction.status_code == 201, correction.text
    # unknown: the offline provider finds nothing, hands over; an agent answers (that is the correction)
    unknown = await turn("unknown", "Is there a discount for nonprofits?")
    assert unknown["escalation"]["reason"] == "no_answer"  # type: ignore[index]
    agent = await client.post(f"/admin/api/conversations/{data['unknown']['id']}/messages", headers=admin,
                              json={"content": "Yes: 30 % off any plan for registered nonprofits.", "author": "Sam"})
    assert agent.status_code == 201
    # unhelped: the visitor says it did not help; nobody has reviewed it yet
    await turn("unhelped", "Charts show yesterday's data, not today's")
    await turn("unhelped", "that didn't help")
    # excluded: corrected, but kept out of training by a reviewer
    excluded = await turn("excluded", "How can I invite a teammate?")
    await client.post(f"/admin/api/messages/{excluded['reply']['message_id']}/correction", headers=admin,
                      json={"content": "Settings > Members > Invite."})
    await client.post(f"/admin/api/conversations/{data['excluded']['id']}/exclude", headers=admin,
                      json={"excluded": True})
    # good: reviewed as good by a person
    good = await turn("good", "What is the API rate limit?")
    await client.post(f"/admin/api/messages/{good['reply']['message_id']}/review", headers=admin,
                      json={"verdict": "good"})
    # twins: two identical corrected conversations; the second is an exact duplicate
    for name in ("twin_a", "twin_b"):
        twin = await turn(name, "How do I connect BigQuery?")
        await client.post(f"/admin/api/messages/{twin['reply']['message_id']}/correction", headers=admin,
                          json={"content": "Integrations > BigQuery, upload the service account JSON."})
    return data
