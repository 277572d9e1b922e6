"""Action calls in `supportbot report` (per action and status over the last 30 days, the failed share; JSON and
text) and in the metrics (`supportbot_action_calls_total`, `supportbot_action_call_seconds`); and a real turn's
call, made to a fake order API over HTTP, read back by the transcript, the metrics, the report and the export."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from prometheus_client.parser import text_string_to_metric_families

from service.api import create_app
from service.config import Settings
from service.export import Exporter, ExportOptions
from service.export_format import check_chat
from service.models import utcnow
from service.report import build_report, format_report
from service.runtime import Runtime
from service.telemetry import metrics

from . import fake_model
from .action_rows import Call, new_conversation, seed_turn
from .conftest import MODEL_BASE_URL, make_settings
from .factories import send, start_conversation
from .fake_team_api import order_action, running_team_api, write_action
from .processes import SUPPORTBOT, clean_env


def seed_calls(runtime: Runtime) -> None:
    """Order look-ups (7 made, 2 failed), a cancellation waiting and one declined, and an old call."""
    sessions = runtime.log.sessions
    conversation = new_conversation(sessions)
    now = utcnow()
    lookups = ([Call("get_order_status", {"order_id": f"A-{n}"}, result={"status": "shipped"}) for n in range(4)]
               + [Call("get_order_status", {"order_id": "Z-0"}, status="rejected", http_status=404, result={}),
                  Call("get_order_status", {"order_id": "A-5"}, status="failed", http_status=503, result=None),
                  Call("get_order_status", {"order_id": "A-6"}, status="failed", http_status=None, result=None,
                       error="timed out after 5 s"),
                  Call("get_order_status", {"order_id": 7}, status="invalid_arguments", http_status=None)])
    seed_turn(sessions, conversation, "Where are my orders?", "Here they are.", lookups, when=now - timedelta(days=2))
    seed_turn(sessions, conversation, "Cancel B-1 and B-2", "Please confirm.", [
        Call("cancel_order", {"order_id": "B-1"}, status="awaiting_confirmation", http_status=None),
        Call("cancel_order", {"order_id": "B-2"}, status="cancelled", http_status=None)])
    seed_turn(sessions, conversation, "Old question", "Old answer.", [
        Call("get_order_status", {"order_id": "OLD"}, status="failed", http_status=500, result=None)],
        when=now - timedelta(days=31))


async def test_the_report_counts_calls_per_action_and_status_and_the_failed_share_of_calls_made(
    runtime: Runtime, settings: Settings,
) -> None:
    seed_calls(runtime)

    report = build_report(settings, runtime.log.sessions, training_tokens=0)

    data = report.as_json()
    assert data["actions_window_days"] == 30
    assert data["actions"] == [
        {"action": "get_order_status", "calls": 8,
         "statuses": {"failed": 2, "invalid_arguments": 1, "ok": 4, "rejected": 1},
         "made": 7, "failed": 2, "failed_share": 2 / 7},
        {"action": "cancel_order", "calls": 2, "statuses": {"awaiting_confirmation": 1, "cancelled": 1},
         "made": 0, "failed": 0, "failed_share": 0.0},
    ]
    text = format_report(report)
    assert "action calls, last 30 days:\n" \
           "    get_order_status: 8 (failed 2, invalid_arguments 1, ok 4, rejected 1); failed 28.6% of 7 made\n" \
           "    cancel_order: 2 (awaiting_confirmation 1, cancelled 1); failed 0.0% of 0 made" in text


async def test_the_report_command_prints_the_action_lines_and_json(
    runtime: Runtime, settings: Settings, tmp_path: Path,
) -> None:
    seed_calls(runtime)
    env = clean_env(tmp_path, SUPPORTBOT_DATABASE_URL=settings.resolved_database_url,
                    SUPPORTBOT_SECRET_KEY="test-secret-key-0123456789")

    text = subprocess.run([SUPPORTBOT, "report"], env=env, capture_output=True, text=True, timeout=120)
    as_json = subprocess.run([SUPPORTBOT, "report", "--json"], env=env, capture_output=True, text=True, timeout=120)

    assert text.returncode == 0, text.stderr
    assert "    get_order_status: 8 (failed 2, invalid_arguments 1, ok 4, rejected 1); failed 28.6% of 7 made" \
        in text.stdout
    assert as_json.returncode == 0, as_json.stderr
    assert [row["action"] for row in json.loads(as_json.stdout)["actions"]] == ["get_order_status", "cancel_order"]


def scrape(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


async def test_action_calls_are_counted_by_action_and_status_and_timed_when_made(runtime: Runtime) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(runtime=runtime)),
                                 base_url="http://supportbot.test") as client:
        auth = {"Authorization": f"Bearer {runtime.admin_token}"}
        before = scrape((await client.get("/metrics", headers=auth)).text)
        metrics.record_action("track_parcel", "ok", 0.08)
        metrics.record_action("track_parcel", "ok", 3.0)
        metrics.record_action("track_parcel", "failed", 5.01)
        metrics.record_action("track_parcel", "awaiting_confirmation", None)
        metrics.record_action("made_up_by_the_model_42", "unknown_action", None)
        after = scrape((await client.get("/metrics", headers=auth)).text)

    def grew(name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew("supportbot_action_calls_total", action="track_parcel", status="ok") == 2
    assert grew("supportbot_action_calls_total", action="track_parcel", status="failed") == 1
    assert grew("supportbot_action_calls_total", action="track_parcel", status="awaiting_confirmation") == 1
    assert grew("supportbot_action_calls_total", action="unknown", status="unknown_action") == 1
    assert not any("made_up_by_the_model_42" in str(labels) for _, labels in after)
    assert grew("supportbot_action_call_seconds_count", action="track_parcel") == 3, "only calls made are timed"
    assert grew("supportbot_action_call_seconds_bucket", action="track_parcel", le="0.1") == 1
    assert grew("supportbot_action_call_seconds_bucket", action="track_parcel", le="5.0") == 2
    assert abs(grew("supportbot_action_call_seconds_sum", action="track_parcel") - 8.09) < 1e-6


async def test_a_real_turns_call_reaches_the_transcript_metrics_report_and_training_data(
    tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORDERS_API_TOKEN", "orders-token-0123456789")
    asked: list[dict[str, Any]] = []

    def model(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        asked.append(body)
        if body["messages"][-1]["role"] == "tool":
            return fake_model.completion("Your order A-1042 shipped with DHL and arrives on 5 December.")
        return fake_model.completion(None, tool_calls=[
            fake_model.tool_call("get_order_status", {"order_id": "A-1042"}, call_id="call_order")])

    with running_team_api(token="orders-token-0123456789") as api, \
            respx.mock(base_url=MODEL_BASE_URL, assert_all_called=False) as mock:
        mock.route(host="127.0.0.1").pass_through()
        mock.post("/chat/completions").mock(side_effect=model)
        actions = tmp_path / "actions"
        write_action(actions, order_action(f"{api.url}/orders/{{order_id}}"))
        runtime = Runtime.build(make_settings(tmp_path, database_url, openai_api_key="sk-test-key",
                                              openai_base_url=MODEL_BASE_URL, model="gpt-4o-mini",
                                              actions_dir=actions))
        admin = {"Authorization": f"Bearer {runtime.admin_token}"}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(runtime=runtime)),
                                     base_url="http://supportbot.test") as client:
            before = (await client.get("/metrics", headers=admin)).text
            conversation, auth = await start_conversation(client)
            turn = (await send(client, conversation, auth, "Where is my order A-1042?")).json()
            transcript = (await client.get(f"/admin/api/conversations/{conversation}", headers=admin)).json()
            after = (await client.get("/metrics", headers=admin)).text
            reviewed = await client.post(f"/admin/api/messages/{turn['reply']['message_id']}/review",
                                         headers=admin, json={"verdict": "good"})
        assert len(api.requests_to("/orders/A-1042")) == 1
    await runtime.aclose()

    assert turn["actions"] == [{"name": "get_order_status", "status": "ok"}], turn
    reply = next(m for m in transcript["messages"] if m["id"] == turn["reply"]["message_id"])
    (call,) = reply["actions"]
    assert (call["action"], call["status"], call["arguments"], call["http_status"]) == (
        "get_order_status", "ok", {"order_id": "A-1042"}, 200)
    assert call["result"] == {"status": "shipped", "carrier": "DHL", "eta": "2026-12-05"}
    assert call["latency_ms"] is not None and "orders-token" not in json.dumps(transcript)
    assert sample(after, "supportbot_action_calls_total", action="get_order_status", status="ok") \
        - sample(before, "supportbot_action_calls_total", action="get_order_status", status="ok") == 1
    (figures,) = build_report(runtime.settings, runtime.log.sessions, training_tokens=0).actions
    assert (figures.action, figures.calls, figures.made, figures.failed) == ("get_order_status", 1, 1, 0)

    assert reviewed.status_code == 200, reviewed.text
    (line,) = [json.loads(x.text) for x in Exporter(runtime.log.sessions, ExportOptions(select="all")).lines()]
    assert check_chat(line) == []
    sent_to_model = asked[-1]["messages"]
    assert line["messages"][-3:-1] == [
        {**sent_to_model[-2], "weight": 1}, sent_to_model[-1]], "the export is what the model saw"
    assert line["messages"][-1]["content"] == "Your order A-1042 shipped with DHL and arrives on 5 December."


def sample(text: str, name: str, **labels: str) -> float:
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == name and labels.items() <= sample.labels.items())
