"""/admin/experiments: each arm's figures with 95 % intervals, differences in words, verdicts and a chart per
metric; rendered from hand-built reports, then through the real app on SQLite and PostgreSQL."""

from __future__ import annotations

import html
import json
import re
import shutil
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from service import cli, experiment_text
from service.api import create_app
from service.api.admin_pages import templates
from service.auth import AdminSessions
from service.charts import experiment_charts, interval_chart
from service.config import PROJECT_ROOT, Settings, secret_key
from service.experiments import ExperimentReport, Point, StopInfo
from service.models import FineTuneJob, StaffRole
from service.runtime import Runtime

from . import experiment_reports as experiment
from .conftest import make_settings
from .experiment_reports import COST, RESOLUTION, fine_tuned_winner
from .factories import rate, send, start_conversation


def render_page(*reports: ExperimentReport, label: str = "", problem: str | None = None) -> str:
    """The page's main part as the route renders it (no header: that needs a signed-in person)."""
    context: dict[str, Any] = {"actor": None, "csrf": "x", "section": "experiments", "label": label,
                               "problem": problem, "reports": list(reports), "text": experiment_text,
                               "chart_sets": [experiment_charts(r) for r in reports]}
    return templates.get_template("admin/experiments.html").render(context)


def cells(page: str, metric_title: str) -> list[str]:
    """The text of one metric's row: the metric's name, then one cell per arm."""
    row = re.search(rf"<tr>\s*<th scope=\"row\">{re.escape(metric_title)}.*?</tr>", page, re.S)
    assert row, f"no row for {metric_title}"
    return [" ".join(html.unescape(re.sub(r"<[^>]+>", " ", cell)).split())
            for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row.group(0), re.S)]


# Rendering


def test_each_arm_shows_its_figures_with_intervals_and_the_difference_in_words() -> None:
    page = render_page(fine_tuned_winner())

    resolution = cells(page, "Resolution rate")
    assert resolution[1] == "60.0 % [57.0, 63.0], n = 400", "control: the figure, its interval and n"
    assert resolution[2] == ("66.0 % [63.0, 69.0], n = 400 vs control: +6.0 points [2.1, 9.9] "
                             "significantly better")
    escalation = cells(page, "Escalation rate")
    assert escalation[2].endswith("vs control: -6.0 points [-9.9, -2.1] significantly better"), \
        "lower is better for escalations: a fall is an improvement"
    cost = cells(page, "Cost per conversation")
    assert cost[2] == ("$0.0060 [$0.0054, $0.0066], n = 400 vs control: -$0.0040 [-$0.0059, -$0.0021] "
                       "significantly better")
    assert page.count('class="badge good"') == 3 and 'class="badge bad"' not in page
    assert "v9 resolves more: +6.0 points [2.1, 9.9]" in page, "the engine's verdicts are shown"
    assert "ft:gpt-4o-mini:acme::abc" in page and ">fine-tuned<" in page and ">control<" in page


def test_a_difference_that_is_not_significant_says_so() -> None:
    report = experiment.report(experiment.arm("v2", control=True), experiment.arm("v3", differences={
        "resolution": experiment.difference(0.01, -0.02, 0.04),
        "escalation": experiment.difference(0.03, 0.01, 0.05)}))

    page = render_page(report)

    assert cells(page, "Resolution rate")[2].endswith("+1.0 points [-2.0, 4.0] no significant difference")
    assert cells(page, "Escalation rate")[2].endswith("+3.0 points [1.0, 5.0] significantly worse")
    assert page.count('class="badge bad"') == 1


def test_the_sample_still_needed_is_said_per_arm() -> None:
    report = experiment.report(experiment.arm("v2", control=True, conversations=420),
                               experiment.arm("v3", conversations=380), needed_per_arm=900)

    text = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", render_page(report))).split())

    assert ("Sample: 900 conversations per arm detect a difference of 5.0 points in resolution rate with 80 % "
            "power; about 520 more conversations per arm needed.") in text


def test_no_sample_is_asked_for_once_resolution_differs_significantly() -> None:
    decided = experiment.report(experiment.arm("v2", control=True), experiment.arm("v3", differences={
        "resolution": experiment.difference(0.08, 0.02, 0.14)}), needed_per_arm=900)

    assert "more conversations per arm" not in render_page(decided)


def test_a_stopped_arm_is_badged_with_why_and_when() -> None:
    stop = StopInfo("escalation", "guard", datetime(2026, 11, 20, 9, 30, tzinfo=UTC), {"z": 3.1})
    report = experiment.report(experiment.arm("v2", control=True, weight=90),
                               experiment.arm("v3", weight=10, stopped=stop))

    page = render_page(report)

    row = re.search(r"<tr>\s*<td><a href=\"/admin/prompts/support@v3\">.*?</tr>", page, re.S)
    assert row
    words = " ".join(re.sub(r"<[^>]+>", " ", row.group(0)).split())
    assert "stopped on 2026-11-20 09:30 UTC by guard: escalation worse than control" in words
    assert '<span class="badge bad">stopped</span>' in row.group(0)


def test_one_chart_per_metric_with_interval_bands() -> None:
    page = render_page(fine_tuned_winner())

    assert page.count("<svg") == 3
    for title in ("Resolution rate", "Escalation rate", "Cost per conversation"):
        assert f'aria-label="{title} per arm over time, with 95 % intervals"' in page
    assert page.count("<polygon") == 6, "one band per arm and metric"


def test_version_names_from_files_are_escaped_everywhere() -> None:
    hostile = "v3<script>alert(1)</script>"
    report = experiment.report(experiment.arm("v2", control=True),
                               experiment.arm(hostile, model="<img src=x onerror=alert(2)>"),
                               verdicts=(f"{hostile} resolves more",))

    page = render_page(report)

    assert "<script>" not in page and "<img" not in page
    assert "v3&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count("&lt;script&gt;") >= 5, "table, figures header, verdict, chart legend and point titles"


def test_without_a_split_the_page_says_how_to_make_one() -> None:
    page = render_page()

    assert "No experiment is running" in page
    assert "<pre>production: {v2: 90, v3: 10}</pre>" in page
    assert "<svg" not in page


def test_an_unknown_label_is_named_with_the_reason() -> None:
    page = render_page(label="<b>nope</b>", problem="no prompt has a label '<b>nope</b>' (labels: production)")

    assert "no prompt has a label &#39;&lt;b&gt;nope&lt;/b&gt;&#39; (labels: production)" in page
    assert "<b>nope</b>" not in page and "production: {v2: 90, v3: 10}" in page


# The chart


def test_chart_draws_a_line_and_a_band_per_arm_with_labelled_points() -> None:
    series = fine_tuned_winner().series["resolution"]

    svg = interval_chart(RESOLUTION, series)

    assert svg.startswith("<svg") and svg.endswith("</svg>") and 'role="img"' in svg
    assert svg.count("<polyline") == 2 and svg.count("<polygon") == 2 and svg.count("<circle") == 6
    assert "<title>support@v9 Resolution rate, from 2026-11-09: 66.0 % [63.0, 69.0], n = 400</title>" in svg
    ticks = re.findall(r'text-anchor="end">(\d+%)</text>', svg)
    assert ticks == ["0%", "20%", "40%", "60%", "80%"], "a rate axis from zero past the highest bound (69 %)"


def test_chart_of_one_period_draws_its_interval_as_a_bar() -> None:
    series = experiment.report(experiment.arm("v2", control=True), experiment.arm("v3"), weeks=1).series["cost"]

    svg = interval_chart(COST, series)

    assert svg.count("<polygon") == 0 and svg.count('stroke-width="6"') == 2
    assert "$0.0100 [$0.0090, $0.0110]" in svg


def test_chart_skips_periods_without_data_and_says_when_there_is_none() -> None:
    empty = Point(datetime(2026, 11, 2, tzinfo=UTC), experiment.estimate(None))
    full = Point(datetime(2026, 11, 9, tzinfo=UTC), experiment.estimate(0.5))

    assert "No data in this period yet." in interval_chart(RESOLUTION, {"support@v2": (empty,)})
    svg = interval_chart(RESOLUTION, {"support@v2": (empty, full)})
    assert svg.count("<circle") == 1 and "2026-11-02" not in svg


# Through the real app: turns on two arms, then the page, the report and its roles


ARM_V3 = "---\ndescription: v2's words, tried as an arm\n---\n"
FINE_TUNED = "ft:gpt-4o-mini-2024-07-18:acme:support:9a8b7c"
ARM_V9 = f"---\ndescription: v2's words on the fine-tuned model\nmodel: {FINE_TUNED}\n---\n"
QUESTION = "My dashboard takes forever to load"


def split_prompts(tmp_path: Path, version: str = "v3", front_matter: str = ARM_V3) -> Path:
    """The shipped prompts with `version` (v2's words under `front_matter`) and `production` split 50/50 over
    v2 and it."""
    target = tmp_path / "prompts"
    shutil.copytree(PROJECT_ROOT / "prompts", target)
    v2 = (target / "support" / "v2.md.j2").read_text(encoding="utf-8")
    body = v2.split("---\n", 2)[2] if v2.startswith("---") else v2
    (target / "support" / f"{version}.md.j2").write_text(front_matter + body, encoding="utf-8")
    (target / "support" / "labels.yaml").write_text(f"production: {{v2: 50, {version}: 50}}\nstaging: v2\n",
                                                    encoding="utf-8")
    return target


def arms_settings(tmp_path: Path, database_url: str, prompts_dir: Path) -> Settings:
    """Settings for serving both arms from one client: the arms are coin flips, so reaching `per_arm` of each can
    take more than the default 30 new conversations a minute from one address (that limit is tested in
    tests/test_ratelimit.py)."""
    return make_settings(tmp_path, database_url, prompts_dir=prompts_dir, rate_limit_conversations_per_ip="0")


@asynccontextmanager
async def app_client(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    runtime = Runtime.build(settings)
    transport = httpx.ASGITransport(app=create_app(runtime=runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://supportbot.test") as client:
        yield client, runtime
    await runtime.aclose()


async def serve_both_arms(client: httpx.AsyncClient, per_arm: int = 8, challenger: str = "support@v3",
                          thumbs_down: str = "support@v3") -> Counter[str]:
    """Conversations until v2 and `challenger` have `per_arm` each; every reply of `thumbs_down` gets one."""
    arms: Counter[str] = Counter()
    for _ in range(20 * per_arm):  # each arm is a coin flip: running out of tries is (1/2)**140 unlikely
        if min(arms["support@v2"], arms[challenger]) >= per_arm:
            break
        conversation_id, auth = await start_conversation(client)
        body = (await send(client, conversation_id, auth, QUESTION)).json()
        arms[body["prompt_version"]] += 1
        if body["prompt_version"] == thumbs_down:
            await rate(client, conversation_id, auth, body["reply"]["message_id"], "down")
    assert min(arms["support@v2"], arms[challenger]) >= per_arm, arms
    return arms


def session_cookie(runtime: Runtime, role: StaffRole) -> dict[str, str]:
    """The page headers of a signed-in person of `role`."""
    user = runtime.people.add("test", f"{role}@team.example", role)
    helper = AdminSessions(secret_key(runtime.settings), runtime.admin_token, runtime.log.sessions)
    return {"Cookie": f"sb_admin={helper.issue(user)}"}


def words(page: str) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


async def test_a_reviewer_sees_the_arms_figures_verdict_and_charts(tmp_path: Path, database_url: str) -> None:
    settings = arms_settings(tmp_path, database_url, split_prompts(tmp_path))
    async with app_client(settings) as (client, runtime):
        arms = await serve_both_arms(client)
        reviewer = session_cookie(runtime, StaffRole.REVIEWER)

        page = await client.get("/admin/experiments", headers=reviewer)

    assert page.status_code == 200 and page.headers["content-security-policy"].startswith("default-src 'none'")
    text = words(page.text)
    assert "support@production: v2 50 % / v3 50 %" in text
    v2, v3 = arms["support@v2"], arms["support@v3"]
    resolution = cells(page.text, "Resolution rate")
    assert resolution[1].startswith("100.0 % [") and resolution[1].endswith(f"n = {v2}")
    assert resolution[2].startswith("0.0 % [0.0, ") and "vs control: -100.0 points [" in resolution[2]
    assert resolution[2].endswith("significantly worse")
    assert "v3 resolves less: -100.0 points" in text, "the verdict"
    assert "more conversations per arm" not in text, "decided: no more sample asked for"
    assert cells(page.text, "Thumbs-down rate")[2].endswith("significantly worse")
    assert '<a href="/admin/prompts/support@v3">v3</a>' in page.text and f"<td>{v3}</td>" in page.text
    assert page.text.count("<svg") >= 3 and "Resolution rate per arm over time, with 95 % intervals" in page.text
    assert 'href="/admin/experiments" class="active">Experiments</a>' in page.text


async def test_the_report_recommends_from_the_arms_in_text_json_and_page(
        tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    settings = arms_settings(tmp_path, database_url, split_prompts(tmp_path))
    async with app_client(settings) as (client, runtime):
        await serve_both_arms(client)
        admin = {"Authorization": f"Bearer {runtime.admin_token}"}
        data = (await client.get("/admin/api/report", headers=admin)).json()
        page = await client.get("/admin/report", headers=session_cookie(runtime, StaffRole.AGENT))
    monkeypatch.setattr(cli, "configure_logging", lambda *args, **kwargs: None)
    monkeypatch.setattr(cli, "get_settings", lambda: settings)

    assert cli.main(["report"]) == 0
    out = capsys.readouterr().out
    assert cli.main(["report", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)

    headline = re.compile(r"Keep prompting: arm v3 resolves 100\.0 points less \[\d+\.\d, 100\.0\] than v2 "
                          r"at similar cost; keep v2")
    assert headline.fullmatch(data["recommendation"]["headline"]), data["recommendation"]
    assert data["recommendation"]["verdict"] == printed["recommendation"]["verdict"] == "keep_prompting"
    assert printed["recommendation"]["headline"] == data["recommendation"]["headline"]
    assert f"Recommendation: {data['recommendation']['headline']}" in out
    assert "end the split: in prompts/support/labels.yaml write `production: v2`" in out
    assert page.status_code == 200 and html.escape(data["recommendation"]["headline"], quote=False) in page.text


async def test_a_fine_tuned_arm_that_resolves_more_is_recommended_for_promotion(
        tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    settings = arms_settings(tmp_path, database_url, split_prompts(tmp_path, "v9", ARM_V9))
    async with app_client(settings) as (client, runtime):
        with runtime.log.sessions.begin() as db:
            db.add(FineTuneJob(id="ftjob-9", backend="openai", base_model="gpt-4o-mini-2024-07-18",
                               status="succeeded", fine_tuned_model=FINE_TUNED, created_by="cli"))
        await serve_both_arms(client, challenger="support@v9", thumbs_down="support@v2")
        page = await client.get("/admin/experiments", headers=session_cookie(runtime, StaffRole.REVIEWER))
    monkeypatch.setattr(cli, "configure_logging", lambda *args, **kwargs: None)
    monkeypatch.setattr(cli, "get_settings", lambda: settings)

    assert cli.main(["report"]) == 0

    out = capsys.readouterr().out
    assert re.search(r"Recommendation: Fine-tuned arm v9 resolves 100\.0 points more \[\d+\.\d, 100\.0\] than v2 "
                     r"at similar cost; promote it\n", out), out
    assert "give it every new conversation: in prompts/support/labels.yaml write `production: v9`" in out
    row = re.search(r"<tr>\s*<td><a href=\"/admin/prompts/support@v9\">.*?</tr>", page.text, re.S)
    assert row and '<span class="badge">fine-tuned</span>' in row.group(0) and FINE_TUNED in row.group(0)
    assert cells(page.text, "Resolution rate")[2].endswith("significantly better")


async def test_an_agent_is_refused_and_sees_no_link(tmp_path: Path, sqlite_url: str) -> None:
    settings = make_settings(tmp_path, sqlite_url, prompts_dir=split_prompts(tmp_path))
    async with app_client(settings) as (client, runtime):
        agent = session_cookie(runtime, StaffRole.AGENT)

        refused = await client.get("/admin/experiments", headers=agent)
        inbox = await client.get("/admin", headers=agent)
        anonymous = await client.get("/admin/experiments?label=production")

    assert refused.status_code == 403
    assert inbox.status_code == 200 and "/admin/experiments" not in inbox.text
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/admin/login?next=%2Fadmin%2Fexperiments%3Flabel%3Dproduction"


async def test_a_label_that_splits_nothing_says_how_to_split_it(tmp_path: Path, sqlite_url: str) -> None:
    settings = make_settings(tmp_path, sqlite_url, prompts_dir=split_prompts(tmp_path))
    async with app_client(settings) as (client, runtime):
        admin = session_cookie(runtime, StaffRole.ADMIN)

        staging = await client.get("/admin/experiments?label=staging", headers=admin)
        unknown = await client.get("/admin/experiments?label=<nope>", headers=admin)
        everything = await client.get("/admin/experiments", headers=admin)

    assert staging.status_code == unknown.status_code == 200
    assert "label 'staging' serves one version: it splits no traffic" in words(staging.text)
    assert "production: {v2: 90, v3: 10}" in staging.text
    assert "&lt;nope&gt;" in unknown.text and "<nope>" not in unknown.text
    assert "support@production: v2 50 % / v3 50 %" in words(everything.text), "a split with no conversations yet"
    assert cells(everything.text, "Resolution rate")[1:] == ["no data", "no data"], "no difference without data"
