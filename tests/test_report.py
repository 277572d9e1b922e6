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
from service.models import Conversation, Correction, Escalation, Feedback, Message
from service.report import build_report, weekly_rates
from service.runtime import Runtime

from .conftest import make_settings

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
    from service.report import recommend

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
