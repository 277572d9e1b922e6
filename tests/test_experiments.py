"""Experiment reports: a simulated month of a 50/50 split through the real turn pipeline, and the intervals' level.

The month is deterministic (conversation ids fixed, so each one's arm is too; outcomes from a seeded generator):
its intervals are checked against the true simulated rates once; that they cover at the stated level is checked
over thousands of seeded simulations of the interval code itself.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy
import pytest
from sqlalchemy import select

from service.cli import main
from service.config import PROJECT_ROOT, Settings
from service.experiment_stats import (
    Moments,
    mean_interval,
    newcombe,
    quantile_interval,
    sample_size,
    t_quantile,
    welch,
    wilson,
)
from service.experiments import ExperimentReport, experiment_reports, report_json
from service.models import AuditEntry, Conversation, ConversationStatus, Escalation, Message
from service.ratings import Ratings
from service.runtime import Runtime
from service.turns import start_turn

from .conftest import make_settings

MONTH = timedelta(days=30)
START = datetime(2026, 10, 1, tzinfo=UTC)
QUESTION = "My dashboard takes forever to load"
ESCALATE = ("Can I talk to a human?", "I want a refund")


@dataclass(frozen=True)
class Truth:
    """The outcome rates an arm is simulated with; each conversation has at most one of them."""

    escalation: float
    thumbs_down: float
    reopened: float
    csat_scores: tuple[int, ...]  # a rated conversation's score is drawn uniformly from these

    @property
    def resolution(self) -> float:
        return 1 - self.escalation - self.thumbs_down - self.reopened

    @property
    def csat(self) -> float:
        return sum(self.csat_scores) / len(self.csat_scores)


TRUTH = {"v2": Truth(0.08, 0.06, 0.02, (4, 5)), "v3": Truth(0.20, 0.12, 0.04, (3, 4, 5))}
RATED = 0.3  # share of conversations whose visitor gives a CSAT rating


def experiment_prompts(tmp_path: Path, labels: str) -> Path:
    """The shipped prompts plus a v3 (v2's words), with `labels` as labels.yaml."""
    target = tmp_path / "prompts"
    shutil.copytree(PROJECT_ROOT / "prompts", target)
    v2 = (target / "support" / "v2.md.j2").read_text(encoding="utf-8")
    (target / "support" / "v3.md.j2").write_text(v2, encoding="utf-8")
    (target / "support" / "labels.yaml").write_text(labels, encoding="utf-8")
    return target


def experiment_settings(tmp_path: Path, database_url: str, labels: str = "production: {v2: 50, v3: 50}\n",
                        **overrides: object) -> Settings:
    values: dict[str, object] = {"retrieval": "bm25", "experiment_guard": False, "experiment_stop_refresh": 0}
    values.update(overrides)
    return make_settings(tmp_path, database_url, prompts_dir=experiment_prompts(tmp_path, labels), **values)


def new_conversation(runtime: Runtime, conversation_id: str, created_at: datetime) -> None:
    """A conversation row with a chosen id (so its arm is known) and start time."""
    with runtime.log.sessions.begin() as session:
        session.add(Conversation(id=conversation_id, status=ConversationStatus.OPEN, user_turns=0,
                                 created_at=created_at, updated_at=created_at))


async def say(runtime: Runtime, conversation_id: str, text: str) -> tuple[int, str | None]:
    """One visitor message through the real turn pipeline; the reply's id and the arm served."""
    turn = await start_turn(runtime, conversation_id, text)
    outcome = await turn.run()
    return outcome.reply_id, outcome.prompt_version


def backdate(runtime: Runtime, conversation_id: str, shift: timedelta) -> None:
    """Move everything a conversation did back by `shift` (its start time is already set)."""
    with runtime.log.sessions.begin() as session:
        rows: list[Message | Escalation | AuditEntry] = [
            *session.scalars(select(Message).where(Message.conversation_id == conversation_id)),
            *session.scalars(select(Escalation).where(Escalation.conversation_id == conversation_id)),
            *session.scalars(select(AuditEntry).where(AuditEntry.target == f"conversation:{conversation_id}"))]
        for row in rows:
            row.created_at -= shift


async def simulate(runtime: Runtime, conversations: int, seed: int = 7) -> dict[str, int]:
    """A month of traffic: each conversation asks, then (by its arm's true rates) escalates, gives a thumbs-down,
    is resolved and reopened, or is resolved; some rate it. Returns conversations per arm."""
    rng = random.Random(seed)
    ratings = Ratings(runtime.log.sessions)
    served: dict[str, int] = {}
    now = datetime.now(UTC)
    for i in range(conversations):
        conversation_id = f"sim{seed:02d}{i:06d}"
        created = START + MONTH * (i / conversations)
        new_conversation(runtime, conversation_id, created)
        reply_id, ref = await say(runtime, conversation_id, QUESTION)
        assert ref is not None
        version = ref.partition("@")[2]
        served[version] = served.get(version, 0) + 1
        truth, u = TRUTH[version], rng.random()
        if u < truth.escalation:
            await say(runtime, conversation_id, ESCALATE[i % 2])
        elif u < truth.escalation + truth.thumbs_down:
            runtime.handoff.record_feedback(conversation_id, reply_id, "down", None, downs_to_escalate=2)
        else:
            if u < truth.escalation + truth.thumbs_down + truth.reopened:
                runtime.handoff.resolve(conversation_id, "agent@team.example")
                await say(runtime, conversation_id, "It is slow again")
            if rng.random() < RATED:
                ratings.rate(conversation_id, rng.choice(truth.csat_scores), None)
        backdate(runtime, conversation_id, now - created)
    return served


async def test_a_simulated_month_covers_the_true_rates_and_picks_the_better_arm(
        tmp_path: Path, database_url: str) -> None:
    runtime = Runtime.build(experiment_settings(tmp_path, database_url))
    try:
        served = await simulate(runtime, 400)
        (report,) = experiment_reports(runtime.log.sessions, runtime.prompts, label="production",
                                       now=START + MONTH)
    finally:
        await runtime.aclose()

    arms = {arm.version: arm for arm in report.arms}
    assert {v: a.conversations for v, a in arms.items()} == served and min(served.values()) > 150
    assert arms["v2"].control and report.control == "v2" and report.split == "v2 50 % / v3 50 %"
    for version, truth in TRUTH.items():
        for key in ("resolution", "escalation", "thumbs_down", "csat"):
            estimate = arms[version].estimates[key]
            assert estimate.low is not None and estimate.high is not None
            assert estimate.low <= getattr(truth, key) <= estimate.high, (version, key, estimate)
    resolution = arms["v3"].differences["resolution"]
    assert resolution.significant and resolution.high is not None and resolution.high < 0
    assert any(v.startswith("v3 resolves less: -") for v in report.verdicts), report.verdicts
    assert any(v.startswith("v3 escalates more: +") for v in report.verdicts), report.verdicts
    assert not any("resolves more" in v for v in report.verdicts)
    assert {"escalation:user_request", "escalation:policy:refund"} <= set(arms["v3"].estimates)
    _check_series(report)


def _check_series(report: ExperimentReport) -> None:
    """A month is charted per week: five Mondays from 2026-09-28, each arm's weekly figures adding up."""
    resolution = report.series["resolution"]
    assert set(resolution) == {"support@v2", "support@v3"}
    starts = [point.start for point in resolution["support@v2"]]
    assert starts[0] == datetime(2026, 9, 28, tzinfo=UTC) and all(s.weekday() == 0 for s in starts)
    assert len(starts) == 5
    for arm in report.arms:
        assert sum(p.estimate.n for p in resolution[arm.ref]) == arm.conversations
    data = json.loads(json.dumps(report_json(report)))
    assert data["series"]["resolution"]["support@v2"][0]["start"] == "2026-09-28T00:00:00+00:00"
    assert data["arms"][1]["differences"]["resolution"]["significant"] is True


# The interval code at its stated level, over many seeded simulations.

SIMULATIONS = 2000


def _coverage(hits: int) -> float:
    return hits / SIMULATIONS


@pytest.mark.parametrize(("p", "n"), [(0.05, 200), (0.2, 100), (0.5, 400), (0.1, 1000)])
def test_wilson_covers_about_95_percent(p: float, n: int) -> None:
    draws = numpy.random.default_rng(11).binomial(n, p, size=SIMULATIONS)

    hits = sum(1 for k in draws if (i := wilson(int(k), n))[1] <= p <= i[2])  # type: ignore[operator]

    # Wilson's coverage wobbles around 95 % with n and p; a broken interval (a Wald one at p=0.05, n=200,
    # covers about 92 %) or a one-sided slip falls outside.
    assert 0.93 <= _coverage(hits) <= 0.975


@pytest.mark.parametrize(("p1", "p2", "n1", "n2"), [(0.1, 0.1, 300, 300), (0.1, 0.2, 200, 50), (0.5, 0.45, 500, 500)])
def test_newcombe_covers_the_difference_about_95_percent(p1: float, p2: float, n1: int, n2: int) -> None:
    rng = numpy.random.default_rng(12)
    a, b = rng.binomial(n1, p1, size=SIMULATIONS), rng.binomial(n2, p2, size=SIMULATIONS)

    intervals = [newcombe((int(x), n1), (int(y), n2)) for x, y in zip(a, b, strict=True)]

    hits = sum(1 for _, low, high in intervals if low is not None and high is not None and low <= p2 - p1 <= high)
    assert 0.93 <= _coverage(hits) <= 0.975


def _moments(values: numpy.ndarray) -> Moments:
    return Moments(len(values), float(values.sum()), float((values * values).sum()))


def test_t_and_welch_intervals_cover_means_about_95_percent() -> None:
    rng = numpy.random.default_rng(13)
    scores, weights = numpy.array([1, 2, 3, 4, 5]), numpy.array([0.05, 0.05, 0.2, 0.3, 0.4])
    mean = float((scores * weights).sum())
    tokens = 800.0  # exponential: skewed like tokens per conversation
    single = pair = 0
    for _ in range(SIMULATIONS):
        rated = rng.choice(scores, size=30, p=weights).astype(float)
        _, low, high = mean_interval(_moments(rated))
        single += low is not None and high is not None and low <= mean <= high
        a, b = rng.exponential(tokens, size=200), rng.exponential(tokens * 1.1, size=80)
        _, low, high = welch(_moments(a), _moments(b))
        pair += low is not None and high is not None and low <= tokens * 0.1 <= high
    assert 0.93 <= _coverage(single) <= 0.97
    assert 0.925 <= _coverage(pair) <= 0.97


def test_bootstrap_interval_of_a_latency_quantile_covers_about_95_percent() -> None:
    rng = numpy.random.default_rng(14)
    true_median = 670.0  # lognormal latencies, median exp(6.5) = 665 ms, recorded in 10 ms steps
    runs, hits = 400, 0
    for _ in range(runs):
        latencies = numpy.round(rng.lognormal(6.5, 0.6, size=300), -1).astype(int)  # 10 ms steps
        values, counts = numpy.unique(latencies, return_counts=True)
        _, low, high = quantile_interval(dict(zip(values.tolist(), counts.tolist(), strict=True)), 0.5)
        hits += low is not None and high is not None and low <= true_median <= high
    assert 0.91 <= hits / runs <= 0.985


def test_t_quantile_matches_the_table() -> None:
    table = ((1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (5, 2.571), (7.5, 2.3335), (10, 2.228), (11, 2.201),
             (30, 2.042), (1000, 1.962))
    for df, expected in table:
        assert t_quantile(0.975, df) == pytest.approx(expected, abs=0.001), df


def test_sample_size_matches_the_textbook_formula() -> None:
    # 50 % -> 55 %, alpha 0.05 two-sided, power 0.8: 1,565 per arm (Fleiss, without continuity correction).
    assert sample_size(0.5, 0.05) == 1565
    assert sample_size(None, 0.05) == 1565, "no control data: the most demanding rate"
    assert sample_size(0.8, 0.05) < sample_size(0.5, 0.05)


def test_no_data_gives_no_estimate_and_a_data_verdict(tmp_path: Path, sqlite_url: str) -> None:
    runtime = Runtime.build(experiment_settings(tmp_path, sqlite_url))
    (report,) = experiment_reports(runtime.log.sessions, runtime.prompts)
    runtime.log.engine.dispose()

    assert [arm.conversations for arm in report.arms] == [0, 0]
    assert report.arms[0].estimates["resolution"].value is None
    assert report.verdicts == ("v3 vs v2: not enough data yet: about 1,565 more conversations per arm (to detect "
                               "5 points of resolution)",)
    assert report.series == {}


# The command line


def _cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, settings: Settings,
         *argv: str) -> tuple[int, str, str]:
    monkeypatch.setenv("SUPPORTBOT_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("SUPPORTBOT_PROMPTS_DIR", str(settings.prompts_dir))
    monkeypatch.setenv("SUPPORTBOT_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SUPPORTBOT_KNOWLEDGE_DIR", str(settings.knowledge_dir))
    from service.config import get_settings

    get_settings.cache_clear()
    try:
        code = main(list(argv))
    finally:
        get_settings.cache_clear()
    out, err = capsys.readouterr()
    return code, out, err


async def test_cli_report_table_json_and_clear_errors(
        tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = experiment_settings(tmp_path, database_url, labels="production: {v2: 50, v3: 50}\nstaging: v2\n")
    runtime = Runtime.build(settings)
    try:
        await simulate(runtime, 60, seed=3)
    finally:
        await runtime.aclose()

    code, out, _ = _cli(capsys, monkeypatch, settings, "experiment", "report", "--label", "production")
    assert code == 0
    assert out.startswith("support @ production: v2 50 % / v3 50 %\n")
    lines = out.splitlines()
    assert lines[1].split() == ["v2", "(control)", "v3", "v3", "-", "v2"]
    assert lines[2].split() == ["conversations", "38", "22"]
    assert lines[3].split() == ["Resolution", "rate", "86.8", "%", "[72.7,", "94.2]", "63.6", "%", "[43.0,", "80.3]",
                                "-23.2", "[-45.2,", "-1.4]", "*"]
    assert "CSAT (1-5, rated conversations)   4.62 [4.19, 5.00]" in out, "a mean within what a rating can be"
    assert "Verdicts:\n  - v3 resolves less: -23.2 points [-45.2, -1.4]\n" in out

    code, out, _ = _cli(capsys, monkeypatch, settings, "experiment", "report", "--json")
    (data,) = json.loads(out)
    assert code == 0 and data["label"] == "production" and sum(a["conversations"] for a in data["arms"]) == 60

    code, _, err = _cli(capsys, monkeypatch, settings, "experiment", "report", "--label", "nightly")
    assert code == 2 and "no prompt has a label 'nightly' (labels: production, staging)" in err
    code, _, err = _cli(capsys, monkeypatch, settings, "experiment", "report", "--label", "staging")
    assert code == 2 and "label 'staging' serves one version: it splits no traffic" in err


async def test_cli_stop_and_resume_are_audited_and_refuse_what_makes_no_sense(
        tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = experiment_settings(tmp_path, database_url)

    code, out, _ = _cli(capsys, monkeypatch, settings, "experiment", "stop", "v3", "--label", "production")
    assert code == 0 and out.startswith("stopped support@v3 in label 'production': new conversations that would "
                                        "draw it get v2")
    code, _, err = _cli(capsys, monkeypatch, settings, "experiment", "stop", "v3", "--label", "production")
    assert code == 1 and "already stopped" in err
    code, _, err = _cli(capsys, monkeypatch, settings, "experiment", "stop", "v2", "--label", "production")
    assert code == 1 and "is the control of 'production'" in err
    code, _, err = _cli(capsys, monkeypatch, settings, "experiment", "stop", "v9", "--label", "production")
    assert code == 2 and "'v9' is not an arm of label 'production'" in err
    code, _, err = _cli(capsys, monkeypatch, settings, "experiment", "stop", "v3", "--label", "nightly")
    assert code == 2 and "label 'nightly' splits no traffic" in err

    code, out, _ = _cli(capsys, monkeypatch, settings, "experiment", "report", "--label", "production")
    assert "v3 was stopped by cli on" in out
    code, out, _ = _cli(capsys, monkeypatch, settings, "experiment", "resume", "v3", "--label", "production")
    assert code == 0 and out.startswith("resumed support@v3 in label 'production'")
    code, _, err = _cli(capsys, monkeypatch, settings, "experiment", "resume", "v3", "--label", "production")
    assert code == 1 and "is not stopped" in err

    runtime = Runtime.build(settings)
    actions = [(e.actor, e.action, e.target) for e in runtime.review.audit_log(10, None)]
    runtime.log.engine.dispose()
    assert actions[:2] == [("cli", "experiment.resume", "support@v3"), ("cli", "experiment.stop", "support@v3")]
