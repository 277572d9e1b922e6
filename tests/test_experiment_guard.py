"""The experiment guard: a sequential test valid under repeated looks, stops that are audited and idempotent, and
traffic that returns to control through real turns."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy
import pytest
from sqlalchemy import select

from service.api import create_app
from service.experiment_guard import GUARD_ACTOR, ArmStops, ExperimentGuard, msprt
from service.experiments import experiment_reports
from service.models import ArmStop, AuditEntry
from service.prompts import Split
from service.runtime import Runtime

from .test_experiments import ESCALATE, QUESTION, experiment_settings, new_conversation, say
from .upstream_server import serving

ALPHA = 0.05
EXPERIMENTS = 600
LOOK_EVERY = 50  # conversations between two looks (per 100 % of traffic)
HORIZON = 6000


def _false_stop_share(p_control: float, p_arm: float, share_arm: float, seed: int) -> float:
    """Of many simulated experiments, the share the test stops at any of its looks (every LOOK_EVERY
    conversations from 200 per arm on, up to HORIZON conversations)."""
    rng = numpy.random.default_rng(seed)
    looks = HORIZON // LOOK_EVERY
    arm_n = rng.binomial(LOOK_EVERY, share_arm, size=(EXPERIMENTS, looks)).cumsum(axis=1)
    control_n = numpy.arange(1, looks + 1) * LOOK_EVERY - arm_n
    arm_k = rng.binomial(numpy.diff(arm_n, prepend=0, axis=1), p_arm).cumsum(axis=1)
    control_k = rng.binomial(numpy.diff(control_n, prepend=0, axis=1), p_control).cumsum(axis=1)
    stopped = 0
    for e in range(EXPERIMENTS):
        for look in range(looks):
            n1, n2 = int(control_n[e, look]), int(arm_n[e, look])
            if min(n1, n2) < 200:
                continue
            if msprt((int(control_k[e, look]), n1), (int(arm_k[e, look]), n2), ALPHA).worse:
                stopped += 1
                break
    return stopped / EXPERIMENTS


@pytest.mark.parametrize(("rate", "share_arm"), [(0.1, 0.5), (0.3, 0.5), (0.05, 0.1)])
def test_equal_arms_are_stopped_at_most_alpha_of_the_time_however_often_it_looks(rate: float,
                                                                                 share_arm: float) -> None:
    share = _false_stop_share(rate, rate, share_arm, seed=int(rate * 1000 + share_arm * 10))

    # 120 looks each: a fixed-sample test at 5 % looked at this often stops equal arms ~30-40 % of the time.
    slack = 3 * (ALPHA * (1 - ALPHA) / EXPERIMENTS) ** 0.5
    assert share <= ALPHA + slack


def test_a_fixed_sample_test_looked_at_as_often_would_not_hold() -> None:
    # The same looks with a plain one-sided z test at 5 %: what the sequential bound protects against.
    rng = numpy.random.default_rng(5)
    stopped = 0
    for _ in range(300):
        a = rng.random(HORIZON // 2) < 0.1
        b = rng.random(HORIZON // 2) < 0.1
        for n in range(200, HORIZON // 2 + 1, LOOK_EVERY // 2):
            p1, p2 = a[:n].mean(), b[:n].mean()
            pooled = (p1 + p2) / 2
            se = (pooled * (1 - pooled) * 2 / n) ** 0.5
            if se and (p2 - p1) / se > 1.645:
                stopped += 1
                break
    assert stopped / 300 > 0.15


def test_a_clearly_worse_arm_is_stopped_and_better_ones_never() -> None:
    assert _false_stop_share(0.10, 0.16, 0.5, seed=1) >= 0.9, "6 points worse: found within 6,000 conversations"
    assert _false_stop_share(0.10, 0.05, 0.5, seed=2) == 0.0, "an arm that is better is never stopped"
    test = msprt((10, 400), (60, 400), ALPHA)
    assert test.worse and test.difference == pytest.approx(0.125) and test.log_ratio > test.bound


def test_stopping_is_idempotent_across_replicas(tmp_path: Path, database_url: str) -> None:
    runtime = Runtime.build(experiment_settings(tmp_path, database_url))
    replicas = [ArmStops(runtime.log.sessions, 0) for _ in range(4)]
    made: list[ArmStop | None] = []
    barrier = threading.Barrier(len(replicas))

    def race(stops: ArmStops) -> None:
        barrier.wait()
        made.append(stops.stop("support", "production", "v3", metric="escalation", details={}, actor=GUARD_ACTOR))

    threads = [threading.Thread(target=race, args=(stops,)) for stops in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(row is not None for row in made) == 1
    assert replicas[0].current() == frozenset({("support", "production", "v3")})
    assert replicas[0].lift("support", "production", "v3", "cli") == 1
    assert replicas[1].current() == frozenset()
    runtime.log.engine.dispose()


def _ids_for(version: str, count: int, split: Split) -> list[str]:
    """Conversation ids the split assigns to `version` (assignment is a hash of the id)."""
    found, i = [], 0
    while len(found) < count:
        conversation_id = f"guard{i:08d}"
        if split.pick(conversation_id, "production") == version:
            found.append(conversation_id)
        i += 1
    return found


async def test_the_guard_stops_a_worse_arm_and_new_conversations_get_control(tmp_path: Path,
                                                                             database_url: str) -> None:
    settings = experiment_settings(tmp_path, database_url)
    runtime = Runtime.build(settings)
    split = runtime.prompts.splits()["support"]["production"]
    guard = runtime.experiment_guard()
    assert guard is None, "the tests' settings turn the background guard off"
    guard = ExperimentGuard(runtime.log.sessions, runtime.prompts, runtime.arm_stops, alpha=ALPHA,
                            min_conversations=80)
    now = datetime.now(UTC)
    try:
        for version, escalating in (("v2", 4), ("v3", 28)):  # 5 % and 35 % of 80 conversations escalate
            for i, conversation_id in enumerate(_ids_for(version, 80, split)):
                new_conversation(runtime, conversation_id, now)
                assert (await say(runtime, conversation_id, QUESTION))[1] == f"support@{version}"
                if i < escalating:
                    await say(runtime, conversation_id, ESCALATE[0])
            if version == "v2":
                assert guard.check() == [], "control alone: nothing to compare"

        made = guard.check()

        # 28 of 80 against 4 of 80 is clear enough at the first look.
        stops = runtime.arm_stops.active()
        assert [row.version for row in made] == ["v3"]
        assert [(s.version, s.metric, s.stopped_by) for s in stops] == [("v3", "escalation", GUARD_ACTOR)]
        details = stops[0].details
        assert details["control"] == {"conversations": 80, "escalated": 4, "thumbs_down": 0}
        assert details["arm"] == {"conversations": 80, "escalated": 28, "thumbs_down": 0}
        assert details["log_ratio"] > details["bound"] and details["alpha"] == ALPHA
        assert guard.check() == [], "an arm is stopped once"

        for conversation_id in _ids_for("v3", 90, split)[80:]:
            new_conversation(runtime, conversation_id, now)
            assert (await say(runtime, conversation_id, QUESTION))[1] == "support@v2", "traffic returns to control"
            assert runtime.log.get_conversation(conversation_id).arm == "support@v2"
        kept = _ids_for("v3", 1, split)[0]
        assert (await say(runtime, kept, "thanks"))[1] == "support@v3", "conversations on the arm keep it"

        runtime.arm_stops.lift("support", "production", "v3", "cli")
        fresh = _ids_for("v3", 91, split)[90]
        new_conversation(runtime, fresh, now)
        assert (await say(runtime, fresh, QUESTION))[1] == "support@v3", "a lifted stop lets the arm draw again"
        with runtime.log.sessions() as session:
            audited = session.scalars(select(AuditEntry).where(AuditEntry.action.like("experiment.%"))
                                      .order_by(AuditEntry.id)).all()
        assert [(a.actor, a.action, a.target) for a in audited] == [
            (GUARD_ACTOR, "experiment.stop", "support@v3"), ("cli", "experiment.resume", "support@v3")]
        assert audited[0].details is not None and audited[0].details["metric"] == "escalation"
        (report,) = experiment_reports(runtime.log.sessions, runtime.prompts, now=now)
        today = datetime.combine(now.date(), datetime.min.time(), UTC)
        points = report.series["escalation"]["support@v3"]
        assert [p.start for p in points] == [today], "a young experiment is charted per day"
        assert points[0].estimate.n == 81 and points[0].estimate.value == pytest.approx(28 / 81)
    finally:
        await runtime.aclose()


async def test_the_service_runs_the_guard_in_the_background(tmp_path: Path, sqlite_url: str) -> None:
    settings = experiment_settings(tmp_path, sqlite_url, experiment_guard=True, experiment_guard_interval=0.05,
                                   experiment_guard_min_conversations=1)
    runtime = Runtime.build(settings)
    split = runtime.prompts.splits()["support"]["production"]
    for version, escalating in (("v2", 0), ("v3", 40)):
        for i, conversation_id in enumerate(_ids_for(version, 40, split)):
            new_conversation(runtime, conversation_id, datetime.now(UTC))
            await say(runtime, conversation_id, QUESTION)
            if i < escalating:
                await say(runtime, conversation_id, ESCALATE[0])
    assert runtime.arm_stops.active() == []
    admin = {"Authorization": f"Bearer {runtime.admin_token}"}
    with serving(create_app(runtime=runtime)) as base:
        deadline = time.monotonic() + 20
        while not runtime.arm_stops.active() and time.monotonic() < deadline:
            time.sleep(0.05)
        body = httpx.get(f"{base}/admin/api/experiments", headers=admin, timeout=20).json()
    (stop,) = runtime.arm_stops.active()
    assert (stop.version, stop.stopped_by) == ("v3", GUARD_ACTOR)
    (experiment,) = body["experiments"]
    assert experiment["arms"][1]["stopped"]["metric"] == "escalation"
    assert any(v.startswith("v3 was stopped by guard on") for v in experiment["verdicts"])
