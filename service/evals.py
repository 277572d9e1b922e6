"""`supportbot eval`: cases through the real turn pipeline, per prompt version x model, against a throwaway database.

Every column gets its own runtime (prompt, model, knowledge) over one temporary SQLite file, so the
production log is never touched and each case starts a fresh conversation.

The actions of SUPPORTBOT_ACTIONS_DIR are offered to the model as in production, but an eval never calls the
team's API: a call the model makes is answered as if the system could not do it (so the turn still ends with the
model's own words), and `expect.action` is judged on what the model's first response called.
"""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from anyio import to_thread
from sqlalchemy import select

from .actions.base import ActionOutcome, ActionSpec
from .actions.caller import ActionCaller
from .cases import Case, replay_case
from .config import Settings
from .db import upgrade
from .escalation import NO_ANSWER
from .grading import Grade, grade_reference
from .models import ActionCall, ActionStatus, Message
from .providers.base import Provider
from .runtime import Runtime
from .turns import TurnOutcome


@dataclass(frozen=True)
class Column:
    prompt: str
    model: str

    @property
    def name(self) -> str:
        return f"{self.prompt} x {self.model}"


@dataclass
class CaseResult:
    id: str
    prompt: str
    model: str
    passed: bool
    escalated: bool
    reason: str | None
    reply: str
    failures: list[str]
    grade: dict[str, Any] | None = None
    tokens: int | None = None
    latency_ms: int | None = None
    cost_usd: float | None = None
    expect_escalate: bool | None = None
    actions: list[dict[str, Any]] = field(default_factory=list)  # what the first response called: name, arguments
    action_matched: bool | None = None  # None: the case expects no action


@dataclass
class ColumnSummary:
    prompt: str
    model: str
    cases: int
    passed: int
    pass_rate: float
    escalation_precision: float | None
    escalation_recall: float | None
    mean_tokens: float | None
    mean_latency_ms: float | None
    cost_per_1000: float | None
    action_match_rate: float | None = None  # of the cases expecting an action; None when none does


@dataclass
class EvalReport:
    columns: list[ColumnSummary]
    cases: list[CaseResult]
    differing: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """The machine-readable object printed by `--json`."""
        return {
            "columns": [asdict(c) for c in self.columns],
            "cases": [{k: v for k, v in asdict(r).items() if k != "expect_escalate"} for r in self.cases],
            "differing": self.differing,
        }


NOT_CALLED = "not called: an eval never calls the team's API"


class EvalCaller(ActionCaller):
    """Checks arguments like the real caller and never makes a request: every call is answered as rejected."""

    async def call(self, spec: ActionSpec, arguments: Any, user_id: str | None = None) -> ActionOutcome:
        return ActionOutcome(ActionStatus.REJECTED, result={}, error=NOT_CALLED)


def action_failures(expected: dict[str, Any], called: list[dict[str, Any]]) -> list[str]:
    """What the first response's calls got wrong against `expect.action` (empty when one of them is that action
    with arguments containing the expected ones, values equal)."""
    name, wanted = expected["name"], expected.get("arguments", {})
    if not called:
        return [f"expected a call to {name}, got an answer in text"]
    same = [call for call in called if call["name"] == name]
    if not same:
        return [f"expected a call to {name}, got {', '.join(call['name'] for call in called)}"]
    for call in same:
        arguments = call["arguments"] if isinstance(call["arguments"], dict) else {}
        if all(key in arguments and arguments[key] == value for key, value in wanted.items()):
            return []
    shown = json.dumps(same[0]["arguments"], ensure_ascii=False)
    return [f"called {name} with {shown}, expected arguments {json.dumps(wanted, ensure_ascii=False)}"]


def check_expectations(case: Case, outcome: TurnOutcome) -> list[str]:
    """What the reply got wrong against `expect` (empty when everything holds); `reference` is graded apart."""
    expect = case.expect
    reply = outcome.reply
    lowered = reply.lower()
    failures = []
    reason = outcome.escalation.reason if outcome.escalation else None
    if "escalate" in expect:
        if expect["escalate"] and reason is None:
            failures.append("expected a handover, got an answer")
        elif not expect["escalate"] and reason is not None and reason != NO_ANSWER:
            failures.append(f"expected an answer, got a handover ({reason})")
        wanted = expect.get("reason")
        if expect["escalate"] and wanted and reason and not (
                reason == wanted or (wanted == "policy" and reason.startswith("policy:"))):
            failures.append(f"expected reason {wanted}, got {reason}")
    failures += [f"missing {text!r}" for text in expect.get("contains", []) if text.lower() not in lowered]
    options = expect.get("contains_any", [])
    if options and not any(text.lower() in lowered for text in options):
        failures.append(f"none of {options!r}")
    failures += [f"contains {text!r}" for text in expect.get("not_contains", []) if text.lower() in lowered]
    if "regex" in expect and not re.search(expect["regex"], reply, re.IGNORECASE | re.DOTALL):
        failures.append(f"does not match /{expect['regex']}/")
    if "max_chars" in expect and len(reply) > int(expect["max_chars"]):
        failures.append(f"{len(reply)} characters, more than {expect['max_chars']}")
    return failures


class EvalRunner:
    """Runs every case in every column and scores them."""

    def __init__(self, settings: Settings, columns: list[Column], *, knowledge_dir: Path | None = None,
                 concurrency: int = 1, grader_model: str | None = None) -> None:
        self.settings = settings
        self.columns = columns
        self.knowledge_dir = knowledge_dir
        self.concurrency = max(1, concurrency)
        # None: each column's model grades its own replies; a name: one grader for every column.
        self.grader_model = grader_model

    def _column_settings(self, column: Column, workdir: Path) -> Settings:
        updates: dict[str, Any] = {
            "prompt": column.prompt, "data_dir": workdir, "database_url": f"sqlite:///{workdir / 'eval.db'}",
            "handoff_webhook_url": None, "reload_interval": 3600.0,
        }
        if column.model == "offline":
            updates["openai_api_key"] = None
        else:
            updates["model"] = column.model
        if self.knowledge_dir is not None:
            updates["knowledge_dir"] = self.knowledge_dir
        return self.settings.model_copy(update=updates)

    async def run(self, cases: list[Case], on_progress: Callable[[], object] | None = None) -> EvalReport:
        """Every case in every column; `on_progress()` after each one."""
        results: list[CaseResult] = []
        with tempfile.TemporaryDirectory(prefix="supportbot-eval-") as tmp:
            workdir = Path(tmp)
            await to_thread.run_sync(upgrade, f"sqlite:///{workdir / 'eval.db'}")
            for column in self.columns:
                runtime = Runtime.build(self._column_settings(column, workdir))
                await runtime.action_caller.aclose()
                runtime.action_caller = EvalCaller(max_argument_chars=runtime.settings.actions_max_argument_chars)
                try:
                    results += await self._run_column(runtime, column, cases, on_progress)
                finally:
                    await runtime.aclose()
        return summarize(self.columns, results)

    async def _run_column(self, runtime: Runtime, column: Column, cases: list[Case],
                          on_progress: Callable[[], object] | None) -> list[CaseResult]:
        grader = runtime.provider if runtime.provider is not runtime.offline else None
        gate = asyncio.Semaphore(self.concurrency)

        async def one(case: Case) -> CaseResult:
            async with gate:
                result = await self._run_case(runtime, column, case, grader)
            if on_progress:
                on_progress()
            return result

        return list(await asyncio.gather(*(one(case) for case in cases)))

    async def _run_case(self, runtime: Runtime, column: Column, case: Case,
                        grader: Provider | None) -> CaseResult:
        outcome = await replay_case(runtime, case)
        failures = check_expectations(case, outcome)
        called = await to_thread.run_sync(first_calls, runtime, outcome.reply_id)
        missed = action_failures(case.expect["action"], called) if "action" in case.expect else []
        failures += missed
        grade: Grade | None = None
        if "reference" in case.expect:
            question = case.messages[-1]["content"]
            grade = await grade_reference(question, str(case.expect["reference"]), outcome.reply, grader,
                                          self.grader_model or runtime.settings.model)
            if not grade.passed:
                failures.append(f"reference: {grade.reason}")
        reply = await to_thread.run_sync(_reply_row, runtime, outcome.reply_id)
        tokens = (reply.tokens_in or 0) + (reply.tokens_out or 0) if reply and reply.tokens_in is not None else None
        return CaseResult(
            id=case.id, prompt=column.prompt, model=column.model, passed=not failures,
            escalated=outcome.escalation is not None,
            reason=outcome.escalation.reason if outcome.escalation else None, reply=outcome.reply,
            failures=failures, grade=asdict(grade) if grade else None, tokens=tokens,
            latency_ms=reply.latency_ms if reply else None, cost_usd=reply.cost_usd if reply else None,
            expect_escalate=case.expect.get("escalate"), actions=called,
            action_matched=not missed if "action" in case.expect else None,
        )


def first_calls(runtime: Runtime, reply_id: int) -> list[dict[str, Any]]:
    """The actions the model's first response in the turn called (round 0), in order: name and arguments."""
    with runtime.log.sessions() as session:
        rows = session.execute(select(ActionCall.action, ActionCall.arguments)
                               .where(ActionCall.reply_id == reply_id, ActionCall.round == 0,
                                      ActionCall.confirms_id.is_(None))
                               .order_by(ActionCall.id)).all()
    return [{"name": name, "arguments": arguments} for name, arguments in rows]


def _reply_row(runtime: Runtime, reply_id: int) -> Message | None:
    with runtime.log.sessions() as session:
        return session.get(Message, reply_id)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize(columns: list[Column], results: list[CaseResult]) -> EvalReport:
    """Per-column figures and the cases whose outcome differs between columns."""
    summaries = []
    for column in columns:
        rows = [r for r in results if r.prompt == column.prompt and r.model == column.model]
        labeled = [r for r in rows if r.expect_escalate is not None]
        true_positive = sum(1 for r in labeled if r.escalated and r.expect_escalate)
        predicted = sum(1 for r in labeled if r.escalated)
        actual = sum(1 for r in labeled if r.expect_escalate)
        costs = [r.cost_usd for r in rows if r.cost_usd is not None]
        mean_cost = _mean(costs)
        expecting = [r.action_matched for r in rows if r.action_matched is not None]
        summaries.append(ColumnSummary(
            prompt=column.prompt, model=column.model, cases=len(rows), passed=sum(r.passed for r in rows),
            pass_rate=sum(r.passed for r in rows) / len(rows) if rows else 0.0,
            escalation_precision=true_positive / predicted if predicted else None,
            escalation_recall=true_positive / actual if actual else None,
            mean_tokens=_mean([float(r.tokens) for r in rows if r.tokens is not None]),
            mean_latency_ms=_mean([float(r.latency_ms) for r in rows if r.latency_ms is not None]),
            cost_per_1000=mean_cost * 1000 if mean_cost is not None else None,
            action_match_rate=sum(expecting) / len(expecting) if expecting else None,
        ))
    by_case: dict[str, set[bool]] = {}
    for r in results:
        by_case.setdefault(r.id, set()).add(r.passed)
    differing = sorted(case_id for case_id, outcomes in by_case.items() if len(outcomes) > 1)
    return EvalReport(summaries, results, differing)


def format_table(report: EvalReport) -> str:
    """The side-by-side table printed on a terminal."""
    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value * 100:.0f}%"

    def num(value: float | None, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    width = max([34, *(len(f"{c.prompt} x {c.model}") for c in report.columns)])
    header = (f"{'prompt x model':<{width}} {'pass':>6} {'esc P':>6} {'esc R':>6} {'action':>6} {'tokens':>7} "
              f"{'ms':>7} {'$/1k conv':>10}")
    lines = [header, "-" * len(header)]
    for c in report.columns:
        lines.append(f"{c.prompt + ' x ' + c.model:<{width}} {pct(c.pass_rate):>6} "
                     f"{pct(c.escalation_precision):>6} {pct(c.escalation_recall):>6} {pct(c.action_match_rate):>6} "
                     f"{num(c.mean_tokens, '.0f'):>7} {num(c.mean_latency_ms, '.0f'):>7} "
                     f"{num(c.cost_per_1000, '.4f'):>10}")
    if report.differing:
        lines.append("")
        lines.append("cases that differ between columns:")
        for case_id in report.differing:
            marks = " ".join(
                f"{'pass' if r.passed else 'FAIL'}" for r in report.cases if r.id == case_id)
            lines.append(f"  {case_id}: {marks}")
    failed = [r for r in report.cases if not r.passed]
    if failed:
        lines.append("")
        lines.append("failures:")
        for r in failed:
            lines.append(f"  {r.id} [{r.prompt} x {r.model}]: {'; '.join(r.failures)}")
    return "\n".join(lines)


def dumps(report: EvalReport) -> str:
    """The `--json` output."""
    return json.dumps(report.as_json(), indent=2, ensure_ascii=False)
