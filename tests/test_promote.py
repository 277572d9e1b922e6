"""Promoting a corrected miss to a known issue: a valid new entry, served at once, `prompt check` clean."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from service.api import create_app
from service.config import PROJECT_ROOT
from service.knowledge import KnowledgeStore
from service.prompt_tools import find_problems
from service.runtime import Runtime

from .conftest import make_settings
from .factories import send, start_conversation


@pytest.fixture
def runtime(tmp_path: Path, sqlite_url: str) -> Runtime:
    knowledge = tmp_path / "knowledge"
    shutil.copytree(PROJECT_ROOT / "knowledge", knowledge)
    return Runtime.build(make_settings(tmp_path, sqlite_url, knowledge_dir=knowledge))


async def test_corrected_miss_becomes_a_known_issue_the_bot_then_answers(runtime: Runtime) -> None:
    admin = {"Authorization": f"Bearer {runtime.admin_token}"}
    transport = httpx.ASGITransport(app=create_app(runtime=runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        conversation_id, auth = await start_conversation(client)
        missed = (await send(client, conversation_id, auth, "Is there a discount for nonprofits?")).json()
        assert missed["escalation"]["reason"] == "no_answer"
        reply_id = missed["reply"]["message_id"]
        early = await client.post(f"/admin/api/messages/{reply_id}/promote", headers=admin)
        await client.post(f"/admin/api/messages/{reply_id}/correction", headers=admin,
                          json={"content": "Yes: registered nonprofits get 30 % off any plan. Email billing."})

        promoted = await client.post(f"/admin/api/messages/{reply_id}/promote", headers=admin)
        again = await client.post(f"/admin/api/messages/{reply_id}/promote", headers=admin)
        other_id, other_auth = await start_conversation(client)
        answered = (await send(client, other_id, other_auth, "Do nonprofits get a discount?")).json()

    assert (early.status_code, early.json()["error"]["code"]) == (422, "no_correction")
    assert promoted.status_code == 201
    body = promoted.json()
    assert body["title"] == "Is there a discount for nonprofits" and body["file"].endswith("promoted.md")
    text = Path(body["file"]).read_text()
    assert "## Is there a discount for nonprofits\nkeywords: discount, nonprofits" in text
    assert text.splitlines()[body["line"] - 1] == "## Is there a discount for nonprofits"
    assert (again.status_code, again.json()["error"]["code"]) == (409, "duplicate_title")
    assert answered["escalated"] is False and "30 % off" in answered["reply"]["content"]
    assert find_problems(runtime.settings, runtime.prompts, KnowledgeStore(runtime.settings.knowledge_dir, 0)) == []
