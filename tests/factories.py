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
