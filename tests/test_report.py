"""`supportbot report`: figures against a hand-built log, and each recommendation branch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from service.api import create_app
from service.charts import rate_chart
from service.config import Settings
from service.db import transaction
from service.experiments import Difference, ExperimentReport, StopInfo
from service.models import Conversation, Correction, Escalation, Feedback, Message
from service.report import Recommendation, build_report, recommend, weekly_rates
from service.runtime import Runtime

from . import experiment_reports as experiment
from .conftest import make_settings
from .experiment_reports import fine_tuned_winner

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def log_conversations(runtime: Runtime, version: str, count: int, *, misses: int = 0, escalations: int = 0,
                      downs: int = 0, corrected: int = 0, topics: list[str] | None = None, days_ago: int = 1,
                      model: str = "gpt-4o-mini") -> None:
    """`count` one-turn conversations under `version`; the first `misses` replies missed, and so on."""
    when = NOW - timedelta(days=days_ago)
    with transaction(runtime.log.sessions) as session:
        for n in range(count):
            missed = n < misses
            escalated = n < escalations
            down = n < downs
            conversation = Conversation(prompt_version=f"support@{version}", created_at=when, updated_at=when,
                                        escalated_ever=escalated, thumbs_down=int(down), miss_count=int(missed))
            session.add(conversation)
            session.flush()
            question = Message(conversation_id=conversation.id, role="user", origin="visitor", content=f"q{n}",
                               created_at=when)
            session.add(question)
            session.flush()
            reasons = ",".join(r for r, on in (("escalated", escalated), ("thumbs_down", down)) if on) or \
                ("flagged" if missed else None)
            reply = Message(conversation_id=conversation.id, role="assistant", origin="model", content=f"a{n}",
                            provider="openai",
                            model_requested=model, prompt_name="support", prompt_version=version,
                            reply_to_id=question.id, tokens_in=90, tokens_out=10, cost_usd=0.001, created_at=when,
                            miss_reasons=reasons if missed else None,
                            known_issue=(topics or [None])[n % len(topics or [None])] if missed else None)  # type: ignore[list-item]
            session.add(reply)
            session.flush()
            if escalated:
                session.add(Escalation(conversation_id=conversation.id, message_id=question.id, reason="no_answer"))
            if down:
                session.add(Feedback(message_id=reply.id, rating="down"))
            if n < corrected:
                session.add(Correction(message_id=reply.id, content=f"better a{n}", author="r"))


def log_handed_over(runtime: Runtime, version: str, count: int, *, reason: str = "policy:refund",
                    days_ago: int = 1) -> None:
    """`count` conversations handed over at once: the visitor's message and the fixed handoff text, no model."""
    when = NOW - timedelta(days=days_ago)
    with transaction(runtime.log.sessions) as session:
        for n in range(count):
            conversation = Conversation(prompt_version=f"support@{version}", created_at=when, updated_at=when,
                                        escalated_ever=True, status="escalated")
            session.add(conversation)
            session.flush()
            question = Message(conversation_id=conversation.id, role="user", origin="visitor",
                               content=f"refund please {n}", created_at=when)
            session.add(question)
            session.flush()
            session.add(Message(conversation_id=conversation.id, role="assistant", origin="fixed",
                                content="I'm handing this conversation to a member of our support team.",
                                provider="handoff", prompt_name="support", prompt_version=version,
                                reply_to_id=question.id, created_at=when))
            session.add(Escalation(conversation_id=conversation.id, message_id=question.id, reason=reason))


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url, report_min_monthly_conversations=10, report_min_corrected=5,
                         report_min_misses=5)


def test_figures_match_the_hand_built_log(runtime: Runtime) -> None:
    log_conversations(runtime, "v1", 4, misses=2, escalations=1, downs=2, corrected=1)

    report = build_report(runtime.settings, runtime.log.sessions, training_tokens=0, now=NOW)

    (figures,) = report.versions
    assert (figures.prompt_version, figures.model, figures.conversations) == ("support@v1", "gpt-4o-mini", 4)
    assert figures.conversations_30d == 4
    assert figures.resolution_rate == pytest.approx(2 / 4), "one escalated, two thumbs-down (overlapping)"
    assert figures.miss_rate == pytest.approx(2 / 4)
    assert figures.escalations == {"no_answer": 1}
    assert figures.tokens_per_conversation == pytest.approx(100)
    assert figures.cost_per_conversation == pytest.approx(0.001)
    assert figures.projected_monthly_cost == pytest.approx(0.004)
    assert figures.corrected_examples == 1 and report.corrected_examples == 1


def test_falling_misses_say_keep_prompting(runtime: Runtime) -> None:
    log_conversations(runtime, "v1", 10, misses=5, days_ago=20)
    log_conversations(runtime, "v2", 10, misses=1, days_ago=5)

    recommendation = build_report(runtime.settings, runtime.log.sessions, training_tokens=0, now=NOW).recommendation

    assert recommendation.verdict == "keep_prompting"
    assert any("misses are falling: support@v1 50.0% -> support@v2 10.0%" in r for r in recommendation.reasons)


def test_misses_on_few_topics_say_fix_the_knowledge(runtime: Runtime) -> None:
    for age, version in ((30, "v1"), (20, "v2"), (10, "v3")):
        log_conversations(runtime, version, 10, misses=3, topics=["slow-dashboard-loads", "sso-loop"], days_ago=age)

    recommendation = build_report(runtime.settings, runtime.log.sessions, training_tokens=0, now=NOW).recommendation

    assert recommendation.verdict == "keep_prompting"
    assert any("slow-dashboard-loads" in r and "100% of 9 misses" in r for r in recommendation.reasons)


def test_flat_misses_volume_and_corrections_say_ready(runtime: Runtime) -> None:
    for index, (age, version) in enumerate(((25, "v1"), (15, "v2"), (5, "v3"))):
        topics = [f"topic-{index}-a", f"topic-{index}-b"]  # six topics, one miss each: spread out
        log_conversations(runtime, version, 10, misses=2, corrected=2, topics=topics, days_ago=age)

    report = build_report(runtime.settings, runtime.log.sessions, training_tokens=20_000, now=NOW)

    recommendation = report.recommendation
    assert recommendation.verdict == "ready_to_fine_tune"
    assert any("flat over the last 3 versions" in r for r in recommendation.reasons)
    assert recommendation.next_steps[0].startswith("supportbot export --format openai-chat --select misses "
                                                  "--prompt-version support@v3")
    assert "20,000 x 3 epochs = $0.18" in recommendation.next_steps[1]
    assert "projected monthly serving cost on ft:gpt-4o-mini" in recommendation.next_steps[2]


def test_too_little_says_what_is_missing(runtime: Runtime) -> None:
    log_conversations(runtime, "v1", 3, misses=1, corrected=1)

    recommendation = build_report(runtime.settings, runtime.log.sessions, training_tokens=0, now=NOW).recommendation

    assert recommendation.verdict == "not_enough_data"
    needed = recommendation.reasons[-1]
    assert "7 more conversations in 30 days" in needed and "4 more corrected examples" in needed
    assert "3 prompt versions with a flat miss rate (have 1)" in needed


def test_empty_log() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]

    assert recommend(settings, [], [], 0, 0).verdict == "not_enough_data"


def test_weekly_chart_is_an_accessible_svg(runtime: Runtime) -> None:
    log_conversations(runtime, "v1", 4, misses=2, days_ago=15)
    log_conversations(runtime, "v2", 4, misses=1, escalations=1, days_ago=2)

    series = weekly_rates(runtime.log.sessions, now=NOW)
    svg = rate_chart(series)

    assert set(series) == {"support@v1", "support@v2"}
    assert series["support@v1"][0][1] == pytest.approx(0.5)
    assert series["support@v2"][0][1:] == (pytest.approx(0.25), pytest.approx(0.25))
    assert svg.startswith("<svg") and 'role="img"' in svg and svg.count("<polyline") == 4
    assert "support@v2 miss rate" in svg


async def test_report_page_and_json(runtime: Runtime) -> None:
    log_conversations(runtime, "v1", 3, misses=1)
    transport = httpx.ASGITransport(app=create_app(runtime=runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        data = (await client.get("/admin/api/report",
                                 headers={"Authorization": f"Bearer {runtime.admin_token}"})).json()
        page = await client.get("/admin/report")

    assert data["recommendation"]["verdict"] == "not_enough_data"
    assert data["versions"][0]["prompt_version"] == "support@v1"
    assert page.status_code == 303, "the page needs a session"


def test_one_version_with_handovers_is_one_row_and_no_trend(runtime: Runtime) -> None:
    log_conversations(runtime, "v2", 3, misses=1, model="offline")
    log_handed_over(runtime, "v2", 2)

    report = build_report(runtime.settings, runtime.log.sessions, training_tokens=0, now=NOW)

    (row,) = report.versions
    assert (row.prompt_version, row.model, row.conversations) == ("support@v2", "offline", 5)
    assert row.miss_rate == pytest.approx(1 / 3), "misses per answered turn; handovers answered nothing"
    assert row.resolution_rate == pytest.approx(3 / 5)
    assert row.escalations == {"policy:refund": 2}
    recommendation = report.recommendation
    assert recommendation.verdict == "not_enough_data"
    assert not any("falling" in r for r in recommendation.reasons)
    assert "3 prompt versions with a flat miss rate (have 1)" in recommendation.reasons[-1]


def test_a_version_with_only_handovers_is_no_drop_in_misses(runtime: Runtime) -> None:
    log_conversations(runtime, "v1", 10, misses=5, days_ago=20)
    log_handed_over(runtime, "v2", 4, days_ago=5)

    report = build_report(runtime.settings, runtime.log.sessions, training_tokens=0, now=NOW)

    assert [(v.prompt_version, v.model) for v in report.versions] == [("support@v1", "gpt-4o-mini"),
                                                                       ("support@v2", "no model asked")]
    recommendation = report.recommendation
    assert recommendation.verdict == "not_enough_data"
    assert any("no miss rate for support@v2" in r for r in recommendation.reasons)
    assert not any("falling" in r for r in recommendation.reasons)


def test_two_models_on_one_version_are_one_point_of_the_trend(runtime: Runtime) -> None:
    log_conversations(runtime, "v1", 10, misses=4, days_ago=20)
    log_conversations(runtime, "v1", 10, misses=0, days_ago=19, model="gpt-4.1-mini")  # a fallback model
    log_conversations(runtime, "v2", 10, misses=2, days_ago=5)

    recommendation = build_report(runtime.settings, runtime.log.sessions, training_tokens=0, now=NOW).recommendation

    assert recommendation.reasons[0] == ("miss rate by prompt version, oldest first: support@v1 20.0% "
                                         "(4 of 20 answered turns), support@v2 20.0% (2 of 10 answered turns)")
    assert recommendation.verdict == "not_enough_data", "20% -> 20% is flat, not falling"


async def test_offline_fresh_install_is_one_version_not_a_falling_trend(client: httpx.AsyncClient,
                                                                        runtime: Runtime) -> None:
    """The issue's five conversations, through the real pipeline: two handed over at once, three answered."""
    from .factories import rate, send, start_conversation

    for text in ("I want a refund for last month", "can I talk to a human?"):
        conversation_id, auth = await start_conversation(client)
        assert (await send(client, conversation_id, auth, text)).json()["escalated"] is True
    for n, text in enumerate(("How do I reset my password?", "My CSV export fails with an error",
                              "The dashboard is very slow when I open it")):
        conversation_id, auth = await start_conversation(client)
        reply = (await send(client, conversation_id, auth, text)).json()
        assert reply["escalated"] is False, reply
        if n == 0:
            await rate(client, conversation_id, auth, reply["reply"]["message_id"], "down")

    report = build_report(runtime.settings, runtime.log.sessions, training_tokens=0)

    (row,) = report.versions
    assert (row.prompt_version, row.model, row.conversations) == ("support@v2", "offline", 5)
    assert row.miss_rate == pytest.approx(1 / 3)
    assert report.recommendation.verdict == "not_enough_data"
    assert not any("falling" in r for r in report.recommendation.reasons)


# The recommendation reads live experiments (arms built by hand here; end to end in test_experiments_page.py)


def _recommend(*experiments: ExperimentReport) -> Recommendation:
    return recommend(Settings(_env_file=None), [], [], 0, 0, experiments)  # type: ignore[call-arg]


def test_fine_tuned_arm_that_resolves_more_for_less_is_promoted() -> None:
    recommendation = _recommend(fine_tuned_winner())

    assert recommendation.verdict == "promote_arm"
    assert recommendation.headline == (
        "Fine-tuned arm v9 resolves 6.0 points more [2.1, 9.9] than v2 at 40 % lower cost per conversation "
        "(-$0.0040 [-$0.0059, -$0.0021]); promote it")
    assert recommendation.next_steps[0].endswith("in prompts/support/labels.yaml write `production: v9`")
    assert "from the history of prompt versions: not enough data yet" in recommendation.reasons


@pytest.mark.parametrize(("cost", "words"), [
    (experiment.difference(-0.001, -0.003, 0.001), "than v2 at similar cost; promote it"),
    (experiment.difference(0.002, 0.001, 0.003),
     "than v2 at 20 % higher cost per conversation (+$0.0020 [$0.0010, $0.0030]); promote it if the extra "
     "resolutions are worth the cost"),
])
def test_cost_is_named_only_when_its_difference_is_significant(cost: Difference, words: str) -> None:
    better = experiment.arm("v3", differences={"resolution": experiment.difference(0.041, 0.012, 0.070),
                                               "cost": cost})

    recommendation = _recommend(experiment.report(experiment.arm("v2", control=True), better))

    assert recommendation.verdict == "promote_arm"
    assert recommendation.headline == f"Arm v3 resolves 4.1 points more [1.2, 7.0] {words}"


def test_the_largest_significant_gain_is_promoted() -> None:
    small = experiment.arm("v3", differences={"resolution": experiment.difference(0.03, 0.01, 0.05)})
    large = experiment.arm("v4", differences={"resolution": experiment.difference(0.08, 0.05, 0.11)})

    recommendation = _recommend(experiment.report(experiment.arm("v2", control=True), small, large))

    assert recommendation.headline.startswith("Arm v4 resolves 8.0 points more [5.0, 11.0] than v2")
    assert [r.split(": ", 1)[1][:6] for r in recommendation.reasons[:2]] == ["arm v3", "arm v4"]


def test_an_arm_that_resolves_less_says_keep_prompting() -> None:
    worse = experiment.arm("v9", fine_tuned=True,
                           differences={"resolution": experiment.difference(-0.04, -0.07, -0.01)})

    recommendation = _recommend(experiment.report(experiment.arm("v2", control=True), worse))

    assert recommendation.verdict == "keep_prompting"
    assert recommendation.headline == ("Keep prompting: fine-tuned arm v9 resolves 4.0 points less [1.0, 7.0] "
                                       "than v2 at similar cost; keep v2")
    assert recommendation.next_steps == ["end the split: in prompts/support/labels.yaml write `production: v2`"]


def test_a_stopped_arm_says_keep_prompting_and_why() -> None:
    stop = StopInfo("thumbs_down", "guard", datetime(2026, 11, 20, 9, 30, tzinfo=UTC), {})
    stopped = experiment.arm("v3", weight=10, stopped=stop,
                             differences={"resolution": experiment.difference(-0.01, -0.05, 0.03)})

    recommendation = _recommend(experiment.report(experiment.arm("v2", control=True, weight=90), stopped))

    assert recommendation.verdict == "keep_prompting"
    assert recommendation.headline == "Keep prompting: arm v3 was stopped by the guard; keep v2"
    assert ("support@production (v2 90 % / v3 10 %): arm v3 was stopped on 2026-11-20 by guard (thumbs_down "
            "worse than control); its traffic went back to v2") in recommendation.reasons


def test_an_undecided_arm_says_how_many_more_conversations() -> None:
    undecided = experiment.arm("v3", conversations=350,
                               differences={"resolution": experiment.difference(0.012, -0.02, 0.044)})

    recommendation = _recommend(experiment.report(experiment.arm("v2", control=True), undecided,
                                                  needed_per_arm=900))

    assert recommendation.verdict == "not_enough_data"
    assert recommendation.headline == "Not enough data yet: about 550 more conversations per arm"
    assert recommendation.reasons[0] == ("support@production (v2 50 % / v3 50 %): arm v3: resolution +1.2 points "
                                         "[-2.0, 4.4] against v2, not significant yet (350 and 400 conversations)")
    assert recommendation.next_steps[0] == "keep the split running and follow it on /admin/experiments"
    assert "put the widget live, or replay cases with `supportbot eval`" in recommendation.next_steps


def test_no_difference_with_enough_conversations_says_keep_prompting() -> None:
    alike = experiment.arm("v3", conversations=1000,
                           differences={"resolution": experiment.difference(0.004, -0.015, 0.023)})

    recommendation = _recommend(experiment.report(experiment.arm("v2", control=True, conversations=1000), alike,
                                                  needed_per_arm=900))

    assert recommendation.verdict == "keep_prompting"
    assert recommendation.headline.startswith("Keep prompting: no arm resolves clearly more than control")


def test_without_an_experiment_the_history_decides(runtime: Runtime) -> None:
    log_conversations(runtime, "v1", 10, misses=5, days_ago=20)
    log_conversations(runtime, "v2", 10, misses=1, days_ago=5)
    report = build_report(runtime.settings, runtime.log.sessions, training_tokens=0, now=NOW)

    again = recommend(runtime.settings, report.versions, report.top_missed_topics, 0, 0, ())

    assert again == report.recommendation and again.verdict == "keep_prompting"
