"""Retention: old conversations deleted or anonymized one transaction each, training ones kept redacted,
a purge stopped half way leaves nothing half done, one replica per round, `supportbot purge`."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service import erasure, retention
from service.api import create_app
from service.cli import build_parser
from service.models import AuditEntry, Conversation, Escalation, JobLease, Message, UsageDay, utcnow
from service.purge_cli import run as run_purge
from service.report import build_report
from service.retention import (
    ANONYMIZE,
    DELETE,
    REDACT,
    REMOVED,
    RetentionPolicy,
    ScheduledPurge,
    purge,
)
from service.runtime import Runtime

from .conftest import make_settings
from .privacy_data import Footprint, age, census, leave_footprint
from .upstream_server import serving

EMAIL = "ada@example.com"


@pytest.fixture
def privacy_runtime(tmp_path: Path, database_url: str) -> Runtime:
    """The offline service with the handoff webhook on (so handoffs leave outbox rows) and daily usage counted."""
    return Runtime.build(make_settings(tmp_path, database_url, handoff_webhook_url="http://hooks.test/handoff",
                                       admin_token="admin-token-for-tests-0123", daily_token_budget=10**9))


@pytest.fixture
async def api(privacy_runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(runtime=privacy_runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://supportbot.test") as client:
        yield client
    await privacy_runtime.aclose()


def _sessions(runtime: Runtime) -> sessionmaker[Session]:
    return runtime.log.sessions


def _admin(runtime: Runtime) -> dict[str, str]:
    return {"Authorization": f"Bearer {runtime.admin_token}"}


async def _footprints(api: httpx.AsyncClient, runtime: Runtime, ages: list[float],
                      corrected: bool = False) -> list[Footprint]:
    made = []
    for days in ages:
        footprint = await leave_footprint(api, _admin(runtime), email=EMAIL, corrected=corrected)
        age(_sessions(runtime), footprint.conversation_id, days)
        made.append(footprint)
    return made


async def test_delete_mode_removes_old_conversations_and_every_row_about_them(
        api: httpx.AsyncClient, privacy_runtime: Runtime) -> None:
    old, recent = await _footprints(api, privacy_runtime, [40, 5])
    sessions = _sessions(privacy_runtime)
    before = census(sessions, recent.conversation_id)

    report = purge(sessions, RetentionPolicy(days=30, mode=DELETE))

    assert [item.conversation_id for item in report.items] == [old.conversation_id]
    assert set(census(sessions, old.conversation_id).values()) == {0}
    assert census(sessions, recent.conversation_id) == before
    assert report.rows["messages"] == before["messages"] and report.rows["outbox"] == before["outbox"] >= 1
    with sessions() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "retention.purge")).one()
    assert entry.details is not None and entry.details["conversations"] == {"delete": 1}
    assert EMAIL not in str(entry.details) and "charged" not in str(entry.details)


async def test_anonymize_strips_text_and_contacts_but_keeps_the_figures(
        api: httpx.AsyncClient, privacy_runtime: Runtime) -> None:
    (old,) = await _footprints(api, privacy_runtime, [40])
    sessions = _sessions(privacy_runtime)
    with sessions() as session:
        before = session.get(Conversation, old.conversation_id)
        usage_before = session.scalar(select(func.sum(UsageDay.tokens)))
        tokens_before = session.scalar(select(func.sum(Message.tokens_out)))
    assert before is not None
    rows_before = census(sessions, old.conversation_id)
    now = utcnow()
    figures = build_report(privacy_runtime.settings, sessions, now=now).as_json()

    report = purge(sessions, RetentionPolicy(days=30, mode=ANONYMIZE))

    assert report.counts() == {ANONYMIZE: 1}
    after_rows = census(sessions, old.conversation_id)
    assert after_rows == {**rows_before, "outbox": 0}, "rows (figures) stay; notifications carrying contacts go"
    exported = privacy_runtime.log.transcript(old.conversation_id)
    conversation, messages = exported
    assert {message.content for message in messages} == {REMOVED}
    assert conversation.visitor is None and conversation.anonymized_at is not None
    assert (conversation.user_turns, conversation.tokens_used, conversation.thumbs_down) == \
        (before.user_turns, before.tokens_used, before.thumbs_down)
    assert conversation.updated_at == before.updated_at, "anonymizing is not activity"
    with sessions() as session:
        escalation = session.scalars(select(Escalation).where(
            Escalation.conversation_id == old.conversation_id)).one()
        assert (escalation.contact, escalation.summary, escalation.detail) == (None, None, None)
        assert escalation.reason, "the reason is a figure and stays"
        assert session.scalar(select(func.sum(UsageDay.tokens))) == usage_before
        assert session.scalar(select(func.sum(Message.tokens_out))) == tokens_before
    assert build_report(privacy_runtime.settings, sessions, now=now).as_json() == figures
    assert purge(sessions, RetentionPolicy(days=30, mode=ANONYMIZE)).items == [], "an anonymized one is done"


async def test_training_conversations_are_kept_redacted_until_their_own_limit(
        api: httpx.AsyncClient, privacy_runtime: Runtime) -> None:
    plain, training = await _footprints(api, privacy_runtime, [40, 40])
    sessions = _sessions(privacy_runtime)
    correction = await api.post(f"/admin/api/messages/{training.reply_id}/correction", headers=_admin(
        privacy_runtime), json={"content": f"We refund within 5 days; confirmation goes to {EMAIL}."})
    assert correction.status_code == 201
    age(sessions, training.conversation_id, 40)
    policy = RetentionPolicy(days=30, mode=DELETE, training_days=365)

    report = purge(sessions, policy)

    assert {(item.conversation_id, item.action) for item in report.items} == {
        (plain.conversation_id, DELETE), (training.conversation_id, REDACT)}
    kept = census(sessions, training.conversation_id)
    assert kept["conversations"] == 1 and kept["corrections"] == 1 and kept["outbox"] == 0
    with sessions() as session:
        text = str(erasure.conversation_json(session, training.conversation_id))
    assert EMAIL not in text and "4111" not in text
    assert "[EMAIL]" in text, "redacted, not removed: the example still reads as one"
    assert purge(sessions, policy).items == [], "redacted once"

    age(sessions, training.conversation_id, 400)
    assert [item.action for item in purge(sessions, policy).items] == [DELETE]
    assert set(census(sessions, training.conversation_id).values()) == {0}


async def test_a_dry_run_lists_what_would_go_and_changes_nothing(
        api: httpx.AsyncClient, privacy_runtime: Runtime) -> None:
    (old,) = await _footprints(api, privacy_runtime, [40])
    sessions = _sessions(privacy_runtime)
    before = census(sessions, old.conversation_id)

    report = purge(sessions, RetentionPolicy(days=30), dry_run=True)

    assert [(item.conversation_id, item.action, item.messages) for item in report.items] == [
        (old.conversation_id, DELETE, before["messages"])]
    assert census(sessions, old.conversation_id) == before


async def test_an_interrupted_purge_leaves_each_conversation_whole_or_untouched(
        api: httpx.AsyncClient, privacy_runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    footprints = await _footprints(api, privacy_runtime, [50, 45, 40, 35])
    sessions = _sessions(privacy_runtime)
    before = {f.conversation_id: census(sessions, f.conversation_id) for f in footprints}
    real = erasure.execute_counted
    calls = []

    def fail_in_the_third(session: Session, statements: object) -> object:
        calls.append(1)
        if len(calls) == 3:
            # Half of the third conversation's deletes run, then the process "dies".
            statements = list(statements)  # type: ignore[call-overload]
            real(session, statements[:4])
            raise RuntimeError("killed mid-purge")
        return real(session, statements)  # type: ignore[arg-type]

    monkeypatch.setattr(erasure, "execute_counted", fail_in_the_third)

    with pytest.raises(RuntimeError, match="killed mid-purge"):
        purge(sessions, RetentionPolicy(days=30))

    after = {f.conversation_id: census(sessions, f.conversation_id) for f in footprints}
    first, second, third, fourth = (f.conversation_id for f in footprints)
    assert set(after[first].values()) == set(after[second].values()) == {0}
    assert after[third] == before[third], "the conversation being purged when it stopped is untouched"
    assert after[fourth] == before[fourth]
    monkeypatch.setattr(erasure, "execute_counted", real)
    resumed = purge(sessions, RetentionPolicy(days=30))
    assert [item.conversation_id for item in resumed.items] == [third, fourth]


async def test_a_conversation_written_to_after_planning_is_left_alone(
        api: httpx.AsyncClient, privacy_runtime: Runtime) -> None:
    (old,) = await _footprints(api, privacy_runtime, [40])
    sessions = _sessions(privacy_runtime)
    policy = RetentionPolicy(days=30)
    with sessions() as session:
        (item,) = retention.plan_purge(session, policy, utcnow())
    age(sessions, old.conversation_id, 0)  # the visitor wrote again

    with sessions() as session, session.begin():
        assert retention.apply_item(session, item, policy, utcnow()) is None
    assert census(sessions, old.conversation_id)["messages"] > 0


async def test_one_replica_runs_each_round_under_the_lease(
        api: httpx.AsyncClient, privacy_runtime: Runtime) -> None:
    await _footprints(api, privacy_runtime, [40])
    sessions = _sessions(privacy_runtime)
    now = utcnow()
    clock = [now]
    first = ScheduledPurge(sessions, RetentionPolicy(days=30), 3600, clock=lambda: clock[0], holder="replica-1")
    second = ScheduledPurge(sessions, RetentionPolicy(days=30), 3600, clock=lambda: clock[0], holder="replica-2")

    report = first.run_due()
    assert report is not None and len(report.items) == 1
    assert second.run_due() is None, "the round is taken"
    assert first.run_due() is None, "not due again before the interval"

    clock[0] = now + timedelta(seconds=3601)
    assert second.run_due() is not None


def test_the_service_purges_on_its_schedule(tmp_path: Path, database_url: str) -> None:
    settings = make_settings(tmp_path, database_url, admin_token="admin-token-for-tests-0123", retention_days=30,
                             retention_interval=0.2, language_detection="fast")
    runtime = Runtime.build(settings)
    conversation = runtime.log.create_conversation()
    runtime.log.begin_turn(conversation.id, "hello", None, max_turns=10, history_limit=5)
    age(runtime.log.sessions, conversation.id, 40)

    with serving(create_app(runtime=runtime)):
        deadline = time.monotonic() + 20
        while census(runtime.log.sessions, conversation.id)["conversations"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert census(runtime.log.sessions, conversation.id) == dict.fromkeys(census(runtime.log.sessions, ""), 0)
    with runtime.log.sessions() as session:
        lease = session.get(JobLease, retention.LEASE)
        assert lease is not None and lease.holder.endswith(f":{os.getpid()}"), "this process took the round"


async def test_purge_command_prints_what_it_would_remove_then_removes_it(
        api: httpx.AsyncClient, privacy_runtime: Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    old, recent = await _footprints(api, privacy_runtime, [40, 5])
    settings = privacy_runtime.settings

    def run(*argv: str) -> tuple[int, str]:
        args = build_parser().parse_args(["purge", *argv])
        code = run_purge(args, settings)
        return code, capsys.readouterr().out

    code, out = run("--older-than", "30d", "--dry-run")
    assert code == 0
    assert f"delete     {old.conversation_id}" in out and recent.conversation_id not in out
    assert "dry run: 1 delete would change" in out
    assert census(privacy_runtime.log.sessions, old.conversation_id)["messages"] > 0

    code, out = run("--older-than", "30d")
    assert code == 0 and f"deleted    {old.conversation_id}" in out and "1 deleted (rows touched: " in out
    assert census(privacy_runtime.log.sessions, old.conversation_id)["conversations"] == 0

    assert run()[0] == 2, "retention off and no --older-than: nothing to go by"


def test_older_than_accepts_days_and_refuses_other_text() -> None:
    parser = build_parser()
    assert parser.parse_args(["purge", "--older-than", "30d"]).older_than == 30
    assert parser.parse_args(["purge", "--older-than", "7"]).older_than == 7
    with pytest.raises(SystemExit):
        parser.parse_args(["purge", "--older-than", "a month"])
    assert isinstance(parser.parse_args(["purge"]), argparse.Namespace)

