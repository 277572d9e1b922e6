"""The benchmark harness in its quickest mode, so it never rots: structure and errors only, no timings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from service.config import PROJECT_ROOT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the harness reads /proc")

LIVE_FIGURES = {"turns_ok", "turns_failed", "error_rate", "turns_per_s", "latency_ms", "cpu_per_turn_ms",
                "server_cpu_s", "client_cpu_s", "peak_rss_mb", "scenario", "target", "round"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """One `python -m bench.run --quick` into a temporary directory (no committed file is touched)."""
    out = tmp_path_factory.mktemp("bench")
    completed = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--results-dir", str(out), "--docs-dir", str(out)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads((out / "quick.json").read_text()), out


def test_every_target_served_its_turns_without_errors(quick_run: tuple[dict, Path]) -> None:
    results, _ = quick_run
    live = results["live"]
    served = {run["target"] for run in live["runs"]}
    assert {"mock", "passthrough", "supportbot-sqlite"} <= served
    assert "litellm" not in served and "litellm" in live["skipped"]
    for run in live["runs"]:
        assert LIVE_FIGURES <= run.keys()
        assert run["turns_ok"] > 0 and run["turns_failed"] == 0, (run["target"], run["scenario"], run["errors"])
    assert live["mock_capacity"]["errors"] == 0
    assert live["soak"]["turns_failed"] == 0 and live["soak"]["rss_series_mb"]


def test_every_scenario_ran_on_every_target(quick_run: tuple[dict, Path]) -> None:
    results, _ = quick_run
    runs = results["live"]["runs"]
    scenarios = {run["scenario"] for run in runs}
    assert {"closed-c1", "closed-c10"} <= scenarios
    assert any(s.startswith("stream-") for s in scenarios) and any(s.startswith("open-") for s in scenarios)
    targets = {run["target"] for run in runs}
    assert {(run["scenario"], run["target"]) for run in runs} == {(s, t) for s in scenarios for t in targets}


def test_streaming_and_server_timing_are_recorded(quick_run: tuple[dict, Path]) -> None:
    runs = quick_run[0]["live"]["runs"]
    for run in runs:
        if run["scenario"].startswith("stream-"):
            assert run["ttft_ms"]["n"] == run["turns_ok"] and run["max_gap_ms"]["n"] == run["turns_ok"]
        if run["target"].startswith("supportbot") and not run["scenario"].startswith("stream-"):
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
    verdicts = {v["target"]: v for v in results["targets"]}
    assert any(name.startswith("supportbot-sqlite: CPU per turn") for name in verdicts)
    report = (out / "performance.md").read_text()
    assert "## Targets" in report and "## Knowledge retrieval" in report and "## Admin inbox (sqlite)" in report
