"""Labeled conversation cases (JSONL): loading, replaying through the real turn pipeline, scoring escalation.

One case per line: {"id", "messages": [{"role", "content"}, ...], "expect": {"escalate": bool, "reason": ...}}.
The last message is the user turn under test; earlier ones are replayed as the conversation's history.
`expect.action: {"name": ..., "arguments": {...}}` expects the model's first response to call that action with
(at least) those arguments.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anyio import to_thread

from .errors import ConfigError
from .escalation import DETERMINISTIC, POLICY_PREFIX
from .runtime import Runtime
from .turns import TurnOutcome, start_turn

EXPECT_KEYS = {"escalate", "reason", "contains", "contains_any", "not_contains", "regex", "max_chars", "reference",
               "action"}


@dataclass(frozen=True)
class Case:
    id: str
    messages: list[dict[str, str]]
    expect: dict[str, Any]
    line: int


def load_cases(path: Path) -> list[Case]:
    """Read a case file; ConfigError names the line of the first bad case."""
    cases: list[Case] = []
    seen: set[str] = set()
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as error:
            raise ConfigError(str(path), number, f"not valid JSON: {error.msg}") from None
        cases.append(_case(data, str(path), number))
        if cases[-1].id in seen:
            raise ConfigError(str(path), number, f"duplicate case id {cases[-1].id!r}")
        seen.add(cases[-1].id)
    return cases


def _case(data: Any, source: str, line: int) -> Case:
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise ConfigError(source, line, "a case is an object with a string 'id'")
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages or not all(
        isinstance(m, dict) and m.get("role") in {"user", "assistant"} and isinstance(m.get("content"), str)
        for m in messages
    ):
        raise ConfigError(source, line, "'messages' must be a non-empty list of {role: user|assistant, content}")
    if messages[-1]["role"] != "user":
        raise ConfigError(source, line, "the last message must be the user's turn under test")
    expect = data.get("expect", {})
    if not isinstance(expect, dict) or set(expect) - EXPECT_KEYS:
        raise ConfigError(source, line, f"'expect' keys must be among {', '.join(sorted(EXPECT_KEYS))}")
    if "action" in expect:
        _check_expected_action(expect["action"], source, line)
    return Case(id=data["id"], messages=messages, expect=expect, line=line)


def _check_expected_action(action: Any, source: str, line: int) -> None:
    """`expect.action` is {"name": str, "arguments": {...} (optional)} and nothing else."""
    if not isinstance(action, dict) or not isinstance(action.get("name"), str) or not action["name"].strip() \
            or set(action) - {"name", "arguments"}:
        raise ConfigError(source, line, "'expect.action' must be {\"name\": the action, \"arguments\": {...}}")
    if not isinstance(action.get("arguments", {}), dict):
        raise ConfigError(source, line, "'expect.action.arguments' must be an object (the arguments expected)")


async def replay_case(runtime: Runtime, case: Case) -> TurnOutcome:
    """Run a case through the real pipeline: a new conversation, its history stored, then the last turn."""
    conversation = await to_thread.run_sync(runtime.log.create_conversation, {"case": case.id})
    if len(case.messages) > 1:
        await to_thread.run_sync(runtime.log.seed_history, conversation.id, case.messages[:-1])
    turn = await start_turn(runtime, conversation.id, case.messages[-1]["content"])
    return await turn.run()


def reason_matches(expected: str | None, got: str | None) -> bool:
    """`policy` expects any `policy:<rule>`; no expected reason accepts any."""
    if got is None:
        return False
    if expected is None:
        return True
    return got == expected or (expected == "policy" and got.startswith(POLICY_PREFIX))


def deterministic_family(reason: str | None) -> str | None:
    """The reason as scored for the deterministic layer: user_request, policy or repeated_failure."""
    if reason is None:
        return None
    if reason.startswith(POLICY_PREFIX):
        return "policy"
    return reason if reason in DETERMINISTIC else None


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    misses: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


def score_escalation(results: Iterable[tuple[Case, str | None]]) -> dict[str, Score]:
    """Precision and recall of the deterministic escalation layer, per reason family and overall.

    A prediction counts only with the right reason; `no_answer` and other non-deterministic outcomes on a
    case expected not to escalate are not held against the detector (they are reported apart).
    """
    scores: dict[str, Score] = {"overall": Score()}
    for case, got_reason in results:
        got = deterministic_family(got_reason)
        expected = case.expect.get("reason") if case.expect.get("escalate") else None
        expected_family = "policy" if expected == "policy" else expected
        for name in {n for n in (got, expected_family, "overall") if n}:
            score = scores.setdefault(name, Score())
            predicted = got is not None and (name == "overall" or got == name)
            wanted = expected_family is not None and (name == "overall" or expected_family == name)
            right = reason_matches(expected, got_reason) if expected else False
            if predicted and wanted and right:
                score.tp += 1
            else:
                if predicted:
                    score.fp += 1
                if wanted:
                    score.fn += 1
                if predicted or wanted:
                    score.misses.append(f"{case.id}: expected {expected}, got {got_reason}")
    return scores


def format_scores(scores: dict[str, Score]) -> str:
    """A small table: reason, precision, recall, counts."""
    lines = [f"{'reason':<18} {'precision':>9} {'recall':>7} {'tp':>4} {'fp':>4} {'fn':>4}"]
    for name in sorted(scores, key=lambda n: (n == "overall", n)):
        s = scores[name]
        lines.append(f"{name:<18} {s.precision:>9.3f} {s.recall:>7.3f} {s.tp:>4} {s.fp:>4} {s.fn:>4}")
    return "\n".join(lines)
