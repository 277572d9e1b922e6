"""Which bot reply an agent's answer corrects, and what becomes training data, on scripted conversations.

Each script is a realistic conversation driven through the public and admin APIs; the table says exactly
how many lines each export format and selection writes and what their targets are.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from sqlalchemy import select

from service.api import create_app
from service.export import Exporter, ExportOptions
from service.models import PromptSnapshot
from service.runtime import Runtime

from .factories import rate, send, start_conversation

AGENT = "Clear the browser cache and disable the ad blocker; the dashboard then loads in under two seconds."
REFUND = "Hi, Dana here: I refunded March to your card."
PASSWORD = "Use the 'Forgot password?' link on the sign-in page; the e-mail arrives within a minute."
SLOW = "The dashboard is very slow when I open it"


@dataclass
class Script:
    """A conversation as steps, and the export it must produce."""

    name: str
    steps: list[tuple[Any, ...]]
    corrected: list[str]  # targets of `--select corrected`, in export order
    misses: list[str]  # targets of `--select misses`
    dpo: list[str]  # preferred outputs of `--format dpo --select corrected`
    waiting: int = 0  # misses without a correction (`--select misses`)
    hosted: bool = False  # the hosted model (down) instead of the offline provider
    skipped: dict[str, int] = field(default_factory=dict)  # openai-chat --select corrected
    policy_answers: list[str] = field(default_factory=list)  # added by --include-policy-handoffs


SCRIPTS = [
    Script("thumbs down, then asks for a human, an agent answers",
           [("say", "a1", SLOW), ("rate", "a1", "down"),
            ("say", "handoff", "That did not help. I want to talk to a human please"),
            ("agent", AGENT, None)],
           corrected=[AGENT], misses=[AGENT], dpo=[AGENT]),
    Script("the visitor keeps writing while waiting; the agent's answer still corrects the miss",
           [("say", "a1", SLOW), ("rate", "a1", "down"),
            ("say", "handoff", "I want to talk to a human please"),
            ("say", "ack", "hello? anyone there?"),
            ("agent", AGENT, None)],
           corrected=[AGENT], misses=[AGENT], dpo=[AGENT]),
    Script("did not help twice, then the automatic handoff, an agent answers",
           [("say", "a1", SLOW),
            ("say", "a2", "That did not help, my dashboard is still very slow when I open it"),
            ("say", "handoff", "Still slow, that did not help either"),
            ("agent", AGENT, None)],
           corrected=[AGENT], misses=[AGENT], dpo=[AGENT], waiting=1),
    Script("the talk-to-a-human button after an answer, an agent answers",
           [("say", "a1", SLOW), ("button",), ("agent", AGENT, None)],
           corrected=[AGENT], misses=[AGENT], dpo=[AGENT]),
    Script("the model is down, an agent answers the question",
           [("say", "failed", "How do I reset my password?"), ("agent", PASSWORD, None)],
           corrected=[PASSWORD], misses=[PASSWORD], dpo=[], hosted=True),
    Script("a refund request is handed over by policy, an agent answers: no training target",
           [("say", "a1", "How do I reset my password?"), ("rate", "a1", "up"),
            ("say", "handoff", "I want a refund for last month, I was charged twice"),
            ("agent", REFUND, None)],
           corrected=[], misses=[], dpo=[], policy_answers=[REFUND]),
    Script("an earlier answer missed and a later one was fine; the agent corrects the earlier one",
           [("say", "a1", SLOW), ("rate", "a1", "down"),
            ("say", "a2", "How do I reset my password?"), ("rate", "a2", "up"),
            ("agent", AGENT, "a1")],
           corrected=[AGENT], misses=[AGENT], dpo=[AGENT]),
    Script("a reviewer corrects a thumbs-down answer, no agent involved",
           [("say", "a1", SLOW), ("rate", "a1", "down"), ("correct", "a1", AGENT)],
           corrected=[AGENT], misses=[AGENT], dpo=[AGENT]),
    Script("an excluded conversation yields nothing",
           [("say", "a1", SLOW), ("rate", "a1", "down"),
            ("say", "handoff", "That did not help. I want to talk to a human please"),
            ("agent", AGENT, None), ("exclude",)],
           corrected=[], misses=[], dpo=[], skipped={"conversation excluded from training": 1}),
    Script("the same agent answer for two misses: one line each",
           [("say", "a1", SLOW), ("rate", "a1", "down"),
            ("say", "a2", "Charts on the dashboard are slow to load"), ("rate", "a2", "down"),
            ("say", "handoff", "I want to talk to a human please"),
            ("agent", AGENT, None), ("correct", "a1", AGENT)],
           corrected=[AGENT, AGENT], misses=[AGENT, AGENT], dpo=[AGENT, AGENT]),
]


async def play(client: httpx.AsyncClient, admin_token: str, script: Script) -> dict[str, Any]:
    """Drive the script through the APIs; the reply ids by label."""
    admin = {"Authorization": f"Bearer {admin_token}"}
    conversation_id, auth = await start_conversation(client)
    replies: dict[str, int] = {}
    for step in script.steps:
        kind, *args = step
        if kind == "say":
            response = await send(client, conversation_id, auth, args[1])
            assert response.status_code == 200, response.text
            replies[args[0]] = response.json()["reply"]["message_id"]
        elif kind == "rate":
            await rate(client, conversation_id, auth, replies[args[0]], args[1])
        elif kind == "button":
            response = await client.post(f"/api/conversations/{conversation_id}/handoff", headers=auth, json={})
            assert response.status_code == 200, response.text
        elif kind == "agent":
            body: dict[str, Any] = {"content": args[0], "author": "Dana"}
            if args[1] is not None:
                body["corrects_message_id"] = replies[args[1]]
            response = await client.post(f"/admin/api/conversations/{conversation_id}/messages", headers=admin,
                                         json=body)
            assert response.status_code == 201, response.text
        elif kind == "correct":
            response = await client.post(f"/admin/api/messages/{replies[args[0]]}/correction", headers=admin,
                                         json={"content": args[1]})
            assert response.status_code == 201, response.text
        elif kind == "exclude":
            response = await client.post(f"/admin/api/conversations/{conversation_id}/exclude", headers=admin,
                                         json={"excluded": True})
            assert response.status_code == 200, response.text
    return {"id": conversation_id, "replies": replies}


def export(runtime: Runtime, **options: Any) -> tuple[list[dict[str, Any]], Exporter]:
    exporter = Exporter(runtime.log.sessions, ExportOptions(**options))
    return [json.loads(line.text) for line in exporter.lines()], exporter


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
async def test_scripted_conversation_exports_exactly_its_targets(
    script: Script, database_url: str, request: pytest.FixtureRequest
) -> None:
    if script.hosted:
        mock: respx.MockRouter = request.getfixturevalue("model_mock")
        mock.post("/chat/completions").mock(return_value=httpx.Response(500, json={"error": {"message": "down"}}))
        runtime = Runtime.build(request.getfixturevalue("hosted_settings"))
    else:
        runtime = Runtime.build(request.getfixturevalue("settings"))
    transport = httpx.ASGITransport(app=create_app(runtime=runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://supportbot.test") as client:
        await play(client, runtime.admin_token, script)
    await runtime.aclose()

    corrected, exporter = export(runtime, select="corrected")
    assert [line["messages"][-1]["content"] for line in corrected] == script.corrected
    assert dict(exporter.summary.skipped) == script.skipped
    misses, exporter = export(runtime, select="misses")
    assert [line["messages"][-1]["content"] for line in misses] == script.misses
    assert exporter.summary.waiting_for_review == script.waiting
    dpo, _ = export(runtime, format="dpo", select="corrected")
    assert [line["preferred_output"][0]["content"] for line in dpo] == script.dpo
    cases, _ = export(runtime, format="eval-cases", select="corrected")
    assert [case["expect"]["reference"] for case in cases] == script.corrected
    with_policy, _ = export(runtime, select="corrected", include_policy_handoffs=True)
    assert [line["messages"][-1]["content"] for line in with_policy] == script.corrected + script.policy_answers
    with_policy_misses, _ = export(runtime, select="misses", include_policy_handoffs=True)
    assert len(with_policy_misses) == len(script.misses), "a policy handoff is no miss"

    for line in with_policy:
        # The target answers a visitor's message, and the example ends on it with the prompt that was sent.
        *_, question, target = line["messages"]
        assert question["role"] == "user" and target == {"role": "assistant", "content": target["content"],
                                                         "weight": 1}
        assert line["messages"][0]["role"] == "system" and line["messages"][0]["content"]
    for pair in dpo:
        rejected = pair["non_preferred_output"][0]["content"]
        # Never a fixed text as the answer to reject: only what a model wrote.
        assert rejected not in {runtime.settings.handoff_reply, runtime.settings.model_unavailable_reply,
                                runtime.settings.escalated_ack_reply}


async def test_policy_answers_are_exported_only_when_asked_with_the_versions_prompt(
    client: httpx.AsyncClient, runtime: Runtime, tmp_path: Path
) -> None:
    admin = {"Authorization": f"Bearer {runtime.admin_token}"}
    policy = next(s for s in SCRIPTS if s.policy_answers)
    await play(client, runtime.admin_token, policy)

    default = await client.get("/admin/api/export", headers=admin)
    asked = await client.get("/admin/api/export", headers=admin, params={"include_policy_handoffs": "true"})

    assert default.status_code == 200 and default.text == ""
    (line,) = [json.loads(text) for text in asked.text.splitlines()]
    system, *turns = line["messages"]
    with runtime.log.sessions() as session:
        snapshots = set(session.scalars(select(PromptSnapshot.content).where(PromptSnapshot.prompt_version == "v2")))
    assert system["role"] == "system" and system["content"] in snapshots
    assert turns[-2] == {"role": "user", "content": "I want a refund for last month, I was charged twice"}
    assert turns[-1] == {"role": "assistant", "content": REFUND, "weight": 1}
    audit = (await client.get("/admin/api/audit", headers=admin)).json()
    entries = audit["items"] if isinstance(audit, dict) else audit
    assert any(e["action"] == "export" and e["details"]["include_policy_handoffs"] for e in entries)

    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORTBOT_")}
    env["SUPPORTBOT_DATABASE_URL"] = runtime.settings.resolved_database_url
    out = tmp_path / "with-policy.jsonl"
    result = subprocess.run([str(Path(sys.executable).parent / "supportbot"), "export", "--include-policy-handoffs",
                             "--out", str(out)], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert [json.loads(text) for text in out.read_text().splitlines()] == [line]
