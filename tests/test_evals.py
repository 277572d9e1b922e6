"""`supportbot eval`: known outcomes offline and against the mocked hosted model, grading, exit status."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import respx

from service.cases import load_cases
from service.config import PROJECT_ROOT
from service.evals import Column, EvalRunner
from service.grading import lexical_grade

from . import fake_model
from .conftest import MODEL_BASE_URL, make_settings
from .processes import EXAMPLE_DIRS

CASES = PROJECT_ROOT / "tests" / "data" / "eval_cases.jsonl"
SUPPORTBOT = str(Path(sys.executable).parent / "supportbot")


async def test_offline_eval_has_the_known_outcomes(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "sqlite://")
    runner = EvalRunner(settings, [Column("support@v1", "offline"), Column("support@v2", "offline")])

    report = await runner.run(load_cases(CASES))

    outcomes = {(r.id, r.prompt): r for r in report.cases}
    assert {r.id for r in report.cases if not r.passed} == {"nonprofit"}
    nonprofit = outcomes[("nonprofit", "support@v2")]
    assert nonprofit.reason == "no_answer" and nonprofit.grade and nonprofit.grade["method"] == "lexical"
    assert outcomes[("refund", "support@v1")].reason == "policy:refund"
    assert outcomes[("export-limit", "support@v2")].grade["passed"] is True  # type: ignore[index]
    for column in report.columns:
        assert column.pass_rate == 7 / 8
        assert column.escalation_recall == 1.0 and column.escalation_precision == 3 / 4
    assert report.differing == []


async def test_hosted_model_columns_and_the_model_grader(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "sqlite://", openai_api_key="sk-test-key", openai_base_url=MODEL_BASE_URL)
    cases = [c for c in load_cases(CASES) if c.id in {"export-limit", "password"}]
    graded: list[dict[str, Any]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if "tools" not in body:  # the grader call offers no tools
            graded.append(body)
            return fake_model.completion('{"score": 0.9, "reason": "same limit and advice"}')
        if body["model"] == "ft:gpt-4o-mini:acme:support:1":
            return fake_model.completion("Exports are capped at 100 MB. Split by month. Use Forgot password.")
        return fake_model.completion("Please clear your cache.")

    with respx.mock(base_url=MODEL_BASE_URL) as mock:
        route = mock.post("/chat/completions").mock(side_effect=answer)
        runner = EvalRunner(settings, [Column("support@v2", "gpt-4o-mini"),
                                       Column("support@v2", "ft:gpt-4o-mini:acme:support:1")])
        report = await runner.run(cases)

    by_model = {c.model: c for c in report.columns}
    assert by_model["ft:gpt-4o-mini:acme:support:1"].pass_rate == 1.0
    assert by_model["gpt-4o-mini"].pass_rate == 0.0
    assert sorted(report.differing) == ["export-limit", "password"]
    assert len(graded) == 2 and "Rubric" in graded[0]["messages"][0]["content"]
    assert json.loads(graded[0]["messages"][1]["content"])["reference"].startswith("Exports are limited")
    fine_tuned = next(r for r in report.cases if r.model.startswith("ft:") and r.id == "export-limit")
    assert fine_tuned.grade == {"method": "model", "score": 0.9, "passed": True, "reason": "same limit and advice"}
    assert fine_tuned.tokens == 132 and fine_tuned.cost_usd is not None
    models_sent = {json.loads(call.request.content)["model"] for call in route.calls}
    assert models_sent == {"gpt-4o-mini", "ft:gpt-4o-mini:acme:support:1"}


def test_lexical_grade_explains_itself() -> None:
    grade = lexical_grade("Go to Settings > Members and click Invite.", "Open Settings, then Members, then Invite.")

    assert grade.passed and "invit" in grade.reason and grade.method == "lexical"
    assert not lexical_grade("Split the export by month.", "Please clear your cache.").passed


def _eval(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUPPORTBOT_", "OPENAI_"))}
    env |= {"SUPPORTBOT_DATA_DIR": str(tmp_path / "data"), **EXAMPLE_DIRS}
    return subprocess.run([SUPPORTBOT, "eval", *args], capture_output=True, text=True, env=env, timeout=120,
                          cwd=tmp_path)


def test_cli_json_shape_and_min_pass_gate(tmp_path: Path) -> None:
    passing = _eval(tmp_path, str(CASES), "--json", "--min-pass", "0.8")
    failing = _eval(tmp_path, str(CASES), "--min-pass", "0.95")

    assert passing.returncode == 0, passing.stderr
    report = json.loads(passing.stdout)
    assert set(report) == {"columns", "cases", "differing"}
    assert {"id", "prompt", "model", "passed", "escalated", "reason", "reply", "failures"} <= set(report["cases"][0])
    assert report["columns"][0]["pass_rate"] == 0.875
    assert failing.returncode == 1
    assert "under --min-pass 95%" in failing.stderr
    assert "prompt x model" in failing.stdout and "nonprofit" in failing.stdout
    assert not (tmp_path / "data" / "supportbot.db").exists(), "eval never touches the production log"


def test_cli_refuses_bad_case_files_and_missing_model(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "messages": []}\n')

    assert _eval(tmp_path, str(bad)).returncode == 2
    assert "bad.jsonl:1" in _eval(tmp_path, str(bad)).stderr
    assert _eval(tmp_path, str(CASES), "--model", "gpt-4o").returncode == 2
