"""Training-data export round trips on a realistic logged dataset, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from service.export import Exporter, ExportOptions, in_validation
from service.export_format import check_chat, check_dpo, check_file
from service.models import PromptSnapshot
from service.runtime import Runtime

from . import fake_model
from .factories import build_logged_dataset, send, start_conversation

SUPPORTBOT = str(Path(sys.executable).parent / "supportbot")


def export(runtime: Runtime, **options: Any) -> tuple[list[dict[str, Any]], Exporter]:
    exporter = Exporter(runtime.log.sessions, ExportOptions(**options))
    return [json.loads(line.text) for line in exporter.lines()], exporter


def finals(lines: list[dict[str, Any]]) -> list[str]:
    return sorted(line["messages"][-1]["content"] for line in lines)


@pytest.fixture
async def dataset(client: httpx.AsyncClient, runtime: Runtime) -> dict[str, dict[str, object]]:
    return await build_logged_dataset(client, runtime.admin_token)


async def test_corrected_export_is_valid_redacted_and_uses_the_stored_prompt(
    runtime: Runtime, dataset: dict[str, dict[str, object]]
) -> None:
    lines, exporter = export(runtime, select="corrected")

    assert finals(lines) == sorted([
        "Sorry [EMAIL]: the CSV limit is 100 MB, split by month.",
        "Yes: 30 % off any plan for registered nonprofits.",
        "Integrations > BigQuery, upload the service account JSON.",
    ])
    assert exporter.summary.skipped == {"conversation excluded from training": 1, "exact duplicate": 1}
    for line in lines:
        assert check_chat(line) == []
        system, *rest = line["messages"]
        with runtime.log.sessions() as session:
            stored = {s.content for s in session.query(PromptSnapshot)}
        assert system["role"] == "system" and system["content"] in stored
        assert rest[-1]["weight"] == 1
        assert all(m.get("weight") == 0 for m in rest[:-1] if m["role"] == "assistant")
    disliked = next(line for line in lines if "[EMAIL]" in line["messages"][-1]["content"])
    question = disliked["messages"][1]["content"]
    assert "jane@example.com" not in json.dumps(disliked)
    assert question == "Export to CSV fails with an error. I'm [EMAIL], card [CARD]"


async def test_misses_export_counts_those_waiting_for_review(
    runtime: Runtime, dataset: dict[str, dict[str, object]]
) -> None:
    lines, exporter = export(runtime, select="misses")

    assert finals(lines) == sorted([
        "Sorry [EMAIL]: the CSV limit is 100 MB, split by month.",
        "Yes: 30 % off any plan for registered nonprofits.",
    ])
    # the reply the visitor said did not help, and the offline provider's handover that followed it
    assert exporter.summary.waiting_for_review == 2
    assert not any("yesterday" in m["content"] for line in lines for m in line["messages"][-1:])


async def test_all_adds_good_and_thumbs_up_replies(runtime: Runtime, dataset: dict[str, dict[str, object]]) -> None:
    lines, _ = export(runtime, select="all")

    texts = finals(lines)
    assert len(texts) == 5
    assert any("Reset your password" in t for t in texts), "thumbs-up reply"
    assert any("API rate limit" in t for t in texts), "reply reviewed as good"


async def test_dpo_pairs_correction_with_original(runtime: Runtime, dataset: dict[str, dict[str, object]]) -> None:
    lines, _ = export(runtime, format="dpo", select="corrected")

    assert len(lines) == 3
    for line in lines:
        assert check_dpo(line) == []
        assert line["input"]["messages"][0]["role"] == "system"
        assert line["input"]["messages"][-1]["role"] == "user"
    pair = next(line for line in lines if "registered nonprofits" in line["preferred_output"][0]["content"])
    assert "passing your question" in pair["non_preferred_output"][0]["content"]


async def test_no_redact_keeps_the_text(runtime: Runtime, dataset: dict[str, dict[str, object]]) -> None:
    lines, _ = export(runtime, select="corrected", redact=False)

    assert any("jane@example.com" in json.dumps(line) for line in lines)


async def test_filters_by_prompt_version_and_dates(runtime: Runtime, dataset: dict[str, dict[str, object]]) -> None:
    assert len(export(runtime, prompt_version="support@v2")[0]) == 3
    assert export(runtime, prompt_version="support@v1")[0] == []
    assert export(runtime, until=__import__("datetime").date(2000, 1, 1))[0] == []


async def test_validation_split_is_seeded_and_by_conversation(
    runtime: Runtime, dataset: dict[str, dict[str, object]]
) -> None:
    exporter = Exporter(runtime.log.sessions, ExportOptions(select="all", validation_split=0.5, seed=7))
    lines = list(exporter.lines())
    again = list(Exporter(runtime.log.sessions, ExportOptions(select="all", validation_split=0.5, seed=7)).lines())

    assert lines == again, "the same seed gives the same split"
    assert all(line.validation == in_validation(7, line.conversation_id, 0.5) for line in lines)
    sides = {line.conversation_id: line.validation for line in lines}
    assert all(sides[line.conversation_id] == line.validation for line in lines), "a conversation is on one side"
    assert exporter.summary.validation == sum(line.validation for line in lines)


def test_split_hash_is_uniform_enough() -> None:
    share = sum(in_validation(3, f"conversation-{n}", 0.1) for n in range(10_000)) / 10_000
    assert 0.09 < share < 0.11


async def test_cli_export_writes_both_files_and_a_summary(
    tmp_path: Path, runtime: Runtime, dataset: dict[str, dict[str, object]]
) -> None:
    out = tmp_path / "train.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORTBOT_")}
    env["SUPPORTBOT_DATABASE_URL"] = runtime.settings.resolved_database_url

    result = subprocess.run([SUPPORTBOT, "export", "--format", "openai-chat", "--select", "all",
                             "--validation-split", "0.5", "--seed", "3", "--out", str(out)],
                            capture_output=True, text=True, env=env, timeout=60)

    assert result.returncode == 0, result.stderr
    validation = tmp_path / "train.jsonl.validation.jsonl"
    train_lines = out.read_text().splitlines()
    validation_lines = validation.read_text().splitlines()
    assert len(train_lines) + len(validation_lines) == 5
    assert "export: 5 examples written" in result.stderr
    assert "skipped 1: exact duplicate" in result.stderr
    assert list(check_file(out)) == [] and list(check_file(validation)) == []
    in_train = {json.dumps(json.loads(line)["messages"][1]) for line in train_lines}
    in_validation = {json.dumps(json.loads(line)["messages"][1]) for line in validation_lines}
    assert not in_train & in_validation


async def test_api_export_streams_the_same_lines_and_is_audited(
    client: httpx.AsyncClient, runtime: Runtime, dataset: dict[str, dict[str, object]]
) -> None:
    admin = {"Authorization": f"Bearer {runtime.admin_token}"}

    response = await client.get("/admin/api/export", params={"select": "corrected"}, headers=admin)
    refused = await client.get("/admin/api/export")

    assert response.status_code == 200 and refused.status_code == 401
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert sorted(response.text.splitlines()) == sorted(
        line.text for line in Exporter(runtime.log.sessions, ExportOptions(select="corrected")).lines())
    audit = (await client.get("/admin/api/audit", headers=admin)).json()
    assert audit[0]["action"] == "export"
    assert {"correction", "exclude", "review.good", "agent_reply"} <= {a["action"] for a in audit}


async def test_eval_cases_export_uses_corrections_as_reference(
    runtime: Runtime, dataset: dict[str, dict[str, object]]
) -> None:
    lines, _ = export(runtime, format="eval-cases", select="misses")

    assert sorted(line["expect"]["reference"] for line in lines) == sorted([
        "Sorry [EMAIL]: the CSV limit is 100 MB, split by month.",
        "Yes: 30 % off any plan for registered nonprofits.",
    ])
    assert all(line["messages"][-1]["role"] == "user" for line in lines)


async def test_tool_calls_are_exported_with_a_tools_array(
    hosted_client: httpx.AsyncClient, hosted_runtime: Runtime, model_mock: respx.MockRouter
) -> None:
    model_mock.post("/chat/completions").mock(return_value=fake_model.completion(
        None, tool_calls=[fake_model.escalate_call("account access", "Cannot open billing.")]))
    conversation_id, auth = await start_conversation(hosted_client)
    body = (await send(hosted_client, conversation_id, auth, "The billing page is blank for me")).json()
    await hosted_client.post(f"/admin/api/messages/{body['reply']['message_id']}/review",
                             headers={"Authorization": f"Bearer {hosted_runtime.admin_token}"},
                             json={"verdict": "good"})

    lines, _ = export(hosted_runtime, select="all")

    (line,) = lines
    assert check_chat(line) == []
    assert line["tools"][0]["function"]["name"] == "escalate_to_human"
    final = line["messages"][-1]
    assert final["weight"] == 1
    assert json.loads(final["tool_calls"][0]["function"]["arguments"])["summary"] == "Cannot open billing."


def test_import_check_reports_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello", "weight": 1}]}
    path.write_text("\n".join([
        json.dumps(good),
        "{not json",
        json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x",
                                                                    "weight": 2}]}),
        json.dumps({"messages": [{"role": "user", "content": "", "weight": 0},
                                 {"role": "assistant", "content": "x"}]}),
        json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x",
                                  "weight": 0}]}),
        json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None,
                    "tool_calls": [{"id": "c", "type": "function",
                                    "function": {"name": "f", "arguments": {"a": 1}}}]}]}),
    ]) + "\n")

    result = subprocess.run([SUPPORTBOT, "import-check", str(path)], capture_output=True, text=True, timeout=60)

    assert result.returncode == 1
    bad = {int(line.split(":")[1]) for line in result.stderr.splitlines()}
    assert bad == {2, 3, 4, 5, 6}
    assert "weight must be 0 or 1" in result.stderr
    assert "weight is only allowed on assistant messages" in result.stderr
    assert "at least one assistant message must have weight 1" in result.stderr
    assert "arguments must be a JSON string" in result.stderr
    assert "6 lines, 5 invalid" in result.stdout
