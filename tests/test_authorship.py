"""A reply is counted by who authored it, never by the name of the provider that produced it.

A team that moves to another vendor (or serves a fine-tuned model through a new adapter) must not see its bot's
replies vanish from the inbox, the misses queue, the review buttons, the report or the training data.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
from sqlalchemy import update

from service.models import Message, Origin
from service.runtime import Runtime

from .factories import build_logged_dataset
from .test_admin_pages import sign_in

NEW_VENDOR = "acme-llm"


async def _views(client: httpx.AsyncClient, admin: dict[str, str], conversation_id: str) -> dict[str, Any]:
    """Everything a reviewer sees of the log: inbox, misses, the export, the report, one conversation page."""
    inbox = (await client.get("/admin/api/conversations?view=all", headers=admin)).json()
    misses = (await client.get("/admin/api/misses", headers=admin)).json()
    exported = (await client.get("/admin/api/export?select=all", headers=admin)).text
    report = (await client.get("/admin/api/report", headers=admin)).json()
    page = (await client.get(f"/admin/conversations/{conversation_id}")).text  # signed in with a cookie
    return {
        "inbox": sorted(item["id"] for item in inbox["items"]),
        "misses": sorted(item["message_id"] for item in misses["items"]),
        "export": sorted(json.loads(line)["messages"][-1]["content"] for line in exported.splitlines() if line),
        "replies": sum(version["replies"] for version in report["versions"]),
        "review_buttons": len(re.findall(r"Flag as miss", page)),
    }


async def test_replies_of_a_provider_never_seen_before_are_counted_everywhere(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    data = await build_logged_dataset(client, runtime.admin_token)
    admin = {"Authorization": f"Bearer {runtime.admin_token}"}
    conversation_id = str(data["disliked"]["id"])
    await sign_in(client, runtime)
    before = await _views(client, admin, conversation_id)
    assert before["misses"] and before["export"] and before["replies"] and before["review_buttons"]

    with runtime.log.sessions.begin() as session:
        renamed = session.execute(update(Message).where(Message.origin == Origin.MODEL)
                                  .values(provider=NEW_VENDOR)).rowcount
    assert renamed >= len(before["misses"])

    assert await _views(client, admin, conversation_id) == before
