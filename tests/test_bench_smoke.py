"""The benchmark harness in its quickest mode, so it never rots: structure and errors only, no timings.

And the floor it compares supportbot with, the relay, checked for what it sends upstream and answers.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench import targets
from bench.aggregate import summarize_runs
from bench.nginx import nginx_binary
from bench.procstat import CpuPlan, _stat_fields, process_tree
from bench.targets import MAX_TOKENS, MODEL, start_relay
from service.config import PROJECT_ROOT

from .conftest import postgres_available
from .upstream_server import serving, upstream_app

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the harness reads /proc")

LIVE_FIGURES = {"turns_ok", "turns_failed", "error_rate", "turns_per_s", "latency_ms", "cpu_per_turn_ms",
                "server_cpu_s", "client_cpu_s", "peak_rss_mb", "scenario", "target", "round"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """One `python -m bench.run --quick` into a temporary directory (no committed file is touched)."""
    out = tmp_path_factory.mktemp("bench")
    completed = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--results-dir", str(out), "--docs-dir", str(out)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=480,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads((out / "quick.json").read_text()), out


def test_every_target_served_its_turns_without_errors(quick_run: tuple[dict, Path]) -> None:
    results, _ = quick_run
    live = results["live"]
    served = {run["target"] for run in live["runs"]}
    assert {"mock", "relay", "passthrough", "supportbot-sqlite", "supportbot-sqlite-w2"} <= served
    if postgres_available() and nginx_binary():  # so on every machine `make services` prepared
        assert {"supportbot-postgres", "supportbot-postgres-r2"} <= served, live["skipped"]
    assert "litellm" not in served and "litellm" in live["skipped"]
    for run in live["runs"]:
        assert LIVE_FIGURES <= run.keys()
        assert run["turns_ok"] > 0 and run["turns_failed"] == 0, (run["target"], run["scenario"], run["errors"])
    assert live["mock_capacity"]["errors"] == 0
    assert live["soak"]["turns_failed"] == 0 and live["soak"]["rss_series_mb"]


def test_every_stage_ran_on_the_targets_it_compares(quick_run: tuple[dict, Path]) -> None:
    live = quick_run[0]["live"]
    stages = live["stages"]
    assert stages == {"open_json": "open-20-json", "open_sse": "open-20-sse", "crowd": "stream-c20",
                      "saturation": "closed-c10", "workers_target": "supportbot-sqlite-w2",
                      "replicas_target": "supportbot-postgres-r2"}
    pairs = {(run["scenario"], run["target"]) for run in live["runs"]}
    one_worker = {target for _, target in pairs} - {"supportbot-sqlite-w2", "supportbot-postgres-r2"}
    for scenario in ("closed-c1", "closed-c10", "stream-c5", "open-20-json", "open-20-sse"):
        assert {(scenario, target) for target in one_worker} <= pairs, scenario
    crowd = {target for scenario, target in pairs if scenario == "stream-c20"}
    assert {"mock", "relay", "supportbot-sqlite"} <= crowd and "passthrough" not in crowd
    assert {scenario for scenario, target in pairs if target == "supportbot-sqlite-w2"} == {"closed-c10"}
    if "supportbot-postgres-r2" not in live["skipped"]:
        assert {scenario for scenario, target in pairs if target == "supportbot-postgres-r2"} == {"closed-c10"}
        replicas = next(run for run in live["runs"] if run["target"] == "supportbot-postgres-r2")
        # nginx's and the backends' CPU counted apart (20 turns may stay under one 10 ms clock tick: no "> 0")
        assert replicas["proxy_cpu_s"] >= 0 and replicas["db_cpu_s"] >= 0
    streamed = {run["scenario"] for run in live["runs"] if "ttft_ms" in run}
    assert streamed == {"stream-c5", "stream-c20", "open-20-sse"}


def test_every_issue_target_has_a_row_against_the_relay(quick_run: tuple[dict, Path]) -> None:
    results, out = quick_run
    verdicts = {v["target"]: v for v in results["targets"]}
    measured = [
        "supportbot-sqlite: CPU per JSON turn <= 1.2x the relay's",
        "supportbot-sqlite: CPU per SSE turn <= 1.2x the relay's",
        "supportbot-sqlite: added latency p50 at open-20-json within 2 ms of the relay's",
        "supportbot-sqlite: CPU per turn at 20 concurrent streamed conversations <= 1.3x the relay's",
        "supportbot-sqlite, serve --workers 2: CPU per turn within 1.1x of one worker's",
        "supportbot-sqlite, serve --workers 2: no errors at saturation",
    ]
    for name in measured:
        assert verdicts[name]["met"] is not None and verdicts[name]["measured"] is not None, verdicts[name]
    relay = summarize_runs(results["live"]["runs"])["open-20-json"]["relay"]["cpu_per_turn_ms"]
    ratio = verdicts["supportbot-sqlite: CPU per JSON turn <= 1.2x the relay's"]
    assert ratio["detail"].endswith(f"vs {relay:.2f} ms per turn (open-20-json, service processes)")
    assert verdicts["supportbot-sqlite: CPU per turn below LiteLLM's"]["met"] is None
    replicas = verdicts["2 replicas behind nginx (deploy/nginx.conf), PostgreSQL: CPU per turn within 1.1x of one "
                        "worker's"]
    if "supportbot-postgres-r2" in results["live"]["skipped"]:
        assert replicas["met"] is None and replicas["detail"] == results["live"]["skipped"]["supportbot-postgres-r2"]
    else:
        assert replicas["measured"] is not None and "nginx +" in replicas["detail"], replicas
    assert not any("passthrough" in name for name in verdicts)
    report = (out / "performance.md").read_text()
    assert "## How to measure scaling on a larger machine" in report
    assert "python -m bench.loadgen --port 8000 --concurrency 300" in report and "deploy/nginx.conf >" in report


def test_streaming_and_server_timing_are_recorded(quick_run: tuple[dict, Path]) -> None:
    runs = quick_run[0]["live"]["runs"]
    for run in runs:
        if run["scenario"].startswith("stream-") or run["scenario"].endswith("-sse"):
            assert run["ttft_ms"]["n"] == run["turns_ok"] and run["max_gap_ms"]["n"] == run["turns_ok"]
        if run["target"].startswith("supportbot") and "ttft_ms" not in run:
            assert {"total", "upstream", "db", "overhead"} <= run["server_timing_ms"].keys()


def test_data_benchmarks_and_report_are_written(quick_run: tuple[dict, Path]) -> None:
    results, out = quick_run
    data = results["data"]
    assert [r["known_issues"] for r in data["retrieval"]][1:] == [100, 1_000]
    sqlite = data["sqlite"]
    assert sqlite["rows"]["messages"] > 0
    assert sqlite["export"]["exit_status"] == 0 and sqlite["export"]["lines_written"] > 0
    assert sqlite["dump"]["exit_status"] == 0
    assert all(page["queries"] and page["queries"][0]["plan"] for page in sqlite["inbox"])
    report = (out / "performance.md").read_text()
    assert "## Targets" in report and "## Knowledge retrieval" in report and "## Admin inbox (sqlite)" in report


def _recording(app: Any, seen: list[dict[str, Any]]) -> Any:
    """`app`, with the JSON body of every HTTP request kept in `seen` (what the relay sent upstream)."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        seen.append(json.loads(body))
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:
                return await receive()  # type: ignore[no-any-return]
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await app(scope, replay, send)

    return wrapped


@pytest.fixture(params=["app", "plain_app"])
def relay(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """The relay as the harness starts it (its own uvicorn process), in front of a recording upstream; the floor
    and the relay that reads plain JSON alike."""
    seen: list[dict[str, Any]] = []
    with serving(_recording(upstream_app(chunks=3, interval=0.01), seen), lifespan="off") as upstream:
        target = start_relay(tmp_path, CpuPlan(None, None), f"{upstream}/v1", app=request.param)
        try:
            yield f"http://127.0.0.1:{target.port}", seen
        finally:
            target.stop()


def test_relay_sends_only_the_user_message_and_answers_like_supportbot(
        relay: tuple[str, list[dict[str, Any]]]) -> None:
    base, seen = relay
    with httpx.Client(base_url=base, timeout=10) as client:
        created = client.post("/api/conversations")
        assert created.status_code == 201 and {"conversation_id", "token"} <= created.json().keys()
        path = f"/api/conversations/{created.json()['conversation_id']}/messages"
        turn = client.post(path, json={"content": "How do I export to CSV?"},
                           headers={"Authorization": f"Bearer {created.json()['token']}"})
    assert turn.status_code == 200 and turn.headers["content-type"] == "application/json"
    assert turn.json()["reply"]["content"] == "word word word " and turn.json()["reply"]["status"] == "ok"
    assert turn.json()["escalated"] is False
    assert seen == [{"model": MODEL, "max_tokens": MAX_TOKENS,
                     "messages": [{"role": "user", "content": "How do I export to CSV?"}]}]


def test_relay_streams_one_delta_per_upstream_chunk_then_done(relay: tuple[str, list[dict[str, Any]]]) -> None:
    base, seen = relay
    with httpx.Client(base_url=base, timeout=10) as client:
        streamed = client.post("/api/conversations/c1/messages", json={"content": "Where do I create an API key?"},
                               headers={"Accept": "text/event-stream"})
    assert streamed.status_code == 200 and streamed.headers["content-type"].startswith("text/event-stream")
    events = [block.split("\n", 1) for block in streamed.text.strip().split("\n\n")]
    names = [head.removeprefix("event: ") for head, _ in events]
    data = [json.loads(rest.removeprefix("data: ")) for _, rest in events]
    assert names == ["delta", "delta", "delta", "done"]
    assert [d["text"] for d in data[:3]] == ["word0 ", "word1 ", "word2 "]
    assert data[3]["reply"]["content"] == "word0 word1 word2 " and data[3]["escalated"] is False
    assert seen[0]["stream"] is True and seen[0]["messages"] == [
        {"role": "user", "content": "Where do I create an API key?"}]
    assert seen[0]["model"] == MODEL and seen[0]["max_tokens"] == MAX_TOKENS and "tools" not in seen[0]


def test_the_in_process_comparison_measures_every_app_in_both_modes(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "bench.inprocess", "--turns", "12", "--rounds", "2", "--concurrency", "3", "--json",
         "--work", str(tmp_path)], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)

    assert completed.returncode == 0, completed.stderr[-4000:]
    report = json.loads(completed.stdout)
    assert set(report["results"]) == {"json", "sse"}
    for row in report["results"].values():
        assert {name: len(rounds) for name, rounds in row["rounds"].items()} == {
            "relay": 2, "plain_relay": 2, "supportbot": 2}
        assert row["relay_ms"] == min(row["rounds"]["relay"]) > 0
        assert row["plain_relay_ms"] == min(row["rounds"]["plain_relay"]) > 0
        assert row["supportbot_ms"] == min(row["rounds"]["supportbot"]) > 0
        assert row["extra_ms"] == pytest.approx(row["supportbot_ms"] - row["relay_ms"])
        assert row["extra_over_plain_ms"] == pytest.approx(row["supportbot_ms"] - row["plain_relay_ms"])
    with sqlite3.connect(tmp_path / "supportbot" / "supportbot.db") as db:
        replies = db.execute("SELECT count(*) FROM messages WHERE role = 'assistant'").fetchone()[0]
    assert replies == 2 * 2 * (12 + 3), "every turn it was sent, warm-ups included, answered and stored"


def test_the_in_process_comparison_refuses_an_empty_run() -> None:
    completed = subprocess.run([sys.executable, "-m", "bench.inprocess", "--turns", "0"], cwd=PROJECT_ROOT,
                               capture_output=True, text=True, timeout=60)

    assert completed.returncode == 2 and "--turns, --rounds and --concurrency must be at least 1" in completed.stderr


def _gone(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is None or fields[0] in ("Z", "X")  # exited (a zombie waits for whoever reaps it)


def test_a_target_that_never_answers_is_stopped_with_its_children(tmp_path: Path) -> None:
    # A server whose start-up outlives the harness's wait is skipped: it and the workers it started must not run
    # on beside the benchmark (a `serve --workers 2` that missed its start-up did, on 2026-12-06).
    never_listens = ("import subprocess, sys, time; "
                     "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); time.sleep(300)")
    log = tmp_path / "server.log"
    process = targets._spawn([sys.executable, "-c", never_listens], {"PATH": os.environ["PATH"]}, log, tmp_path)
    tree = [process.pid]
    try:
        deadline = time.monotonic() + 60
        while len(tree := process_tree(process.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(tree) == 2, "the server started its worker"

        with pytest.raises(RuntimeError, match="not ready after 1 s"):
            targets._ready(process, targets.free_port(), "/healthz", 1, log, None)

        assert process.poll() is not None
        deadline = time.monotonic() + 30
        while not all(_gone(pid) for pid in tree) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(_gone(pid) for pid in tree), "no process of the skipped target is left running"
    finally:  # whatever this test found, it leaves nothing of its own running
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait()
