"""Escalation detection: labeled cases through the real pipeline, the detector's parts, the policy file."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import httpx
import pytest
import respx

from service.cases import Case, format_scores, load_cases, replay_case, score_escalation
from service.config import PROJECT_ROOT
from service.errors import ConfigError
from service.escalation import Turnlet, asks_for_human, count_failures, normalize
from service.policies import PolicyStore, parse_policy_text
from service.runtime import Runtime

from . import fake_model
from .conftest import make_settings
from .factories import send, start_conversation

OWN_CASES = PROJECT_ROOT / "tests" / "data" / "escalation_cases.jsonl"
SHARED_CASES = PROJECT_ROOT.parent / "shared" / "eval" / "escalation-dev.jsonl"
MULTILINGUAL_CASES = sorted((PROJECT_ROOT / "tests" / "data").glob("escalation_cases_multilingual*.jsonl"))
SHARED_MULTILINGUAL = PROJECT_ROOT.parent / "shared" / "eval" / "escalation-multilingual-dev.jsonl"


def _cases_by_language(paths: list[Path]) -> dict[str, list[Case]]:
    """The labeled cases of `paths`, grouped by their `lang` field."""
    grouped: dict[str, list[Case]] = defaultdict(list)
    for path in paths:
        languages = {number: json.loads(raw).get("lang") for number, raw in
                     enumerate(path.read_text(encoding="utf-8").splitlines(), start=1) if raw.strip()}
        for case in load_cases(path):
            grouped[languages[case.line]].append(case)
    return dict(grouped)


MULTILINGUAL = _cases_by_language(MULTILINGUAL_CASES)


async def _score_file(runtime: Runtime, path: Path) -> tuple[str, dict[str, object]]:
    return await _score_cases(runtime, load_cases(path))


async def _score_cases(runtime: Runtime, cases: list[Case]) -> tuple[str, dict[str, object]]:
    results: list[tuple[Case, str | None]] = []
    for case in cases:
        outcome = await replay_case(runtime, case)
        results.append((case, outcome.escalation.reason if outcome.escalation else None))
    scores = score_escalation(results)
    table = format_scores(scores) + "\n" + "\n".join(scores["overall"].misses)
    return table, scores  # type: ignore[return-value]


def _assert_thresholds(table: str, scores: dict[str, object]) -> None:
    for name, score in scores.items():
        assert score.precision >= 0.95, f"{name} precision below 0.95\n{table}"  # type: ignore[attr-defined]
        assert score.recall >= 0.90, f"{name} recall below 0.90\n{table}"  # type: ignore[attr-defined]


async def test_own_labeled_set_meets_precision_and_recall(
    tmp_path: Path, sqlite_url: str, reliability: list[dict[str, object]],
) -> None:
    runtime = Runtime.build(make_settings(tmp_path, sqlite_url))
    cases = load_cases(OWN_CASES)
    assert len(cases) >= 150
    assert {c.expect.get("reason") for c in cases} >= {"user_request", "policy", "repeated_failure", None}

    table, scores = await _score_file(runtime, OWN_CASES)

    print(table)
    _assert_thresholds(table, scores)
    await runtime.aclose()
    dodges = [c for c in cases if c.id.startswith(("disguise", "synonym", "takeover"))]
    overall = scores["overall"]
    reliability.append({
        "section": "attacks",
        "item": f"escalation dodges through the turn pipeline: {len(dodges)} of the {len(cases)} labeled cases in "
                "tests/data/escalation_cases.jsonl are leetspeak, spelled-out letters, zero-width characters, "
                "look-alike and full-width letters, synonyms and account takeover, "
                f"{sum(1 for c in dodges if not c.expect.get('escalate'))} of them look-alikes that must stay",
        "result": f"precision {overall.precision:.2f}, recall {overall.recall:.2f} "  # type: ignore[attr-defined]
                  f"on the whole file",
    })


@pytest.mark.skipif(not SHARED_CASES.exists(), reason="shared eval cases not beside the checkout")
async def test_shared_dev_set_meets_precision_and_recall(tmp_path: Path, sqlite_url: str) -> None:
    runtime = Runtime.build(make_settings(tmp_path, sqlite_url))

    table, scores = await _score_file(runtime, SHARED_CASES)

    print(table)
    _assert_thresholds(table, scores)
    await runtime.aclose()


@pytest.mark.parametrize("language", ["de", "es", "fr"])
def test_multilingual_case_file_covers_each_language(language: str) -> None:
    cases = MULTILINGUAL.get(language, [])
    stays = [c for c in cases if not c.expect.get("escalate")]
    failures = [c for c in cases if c.expect.get("reason") == "repeated_failure" and len(c.messages) >= 5]

    assert len(cases) >= 25 and len(stays) * 3 >= len(cases) and len(failures) >= 3
    assert {c.expect.get("reason") for c in cases} >= {"user_request", "policy", "repeated_failure", None}


@pytest.mark.parametrize("language", sorted(MULTILINGUAL))
async def test_multilingual_labeled_set_meets_precision_and_recall_per_language(
    language: str, tmp_path: Path, sqlite_url: str,
) -> None:
    runtime = Runtime.build(make_settings(tmp_path, sqlite_url))

    table, scores = await _score_cases(runtime, MULTILINGUAL[language])

    print(f"{language}: {len(MULTILINGUAL[language])} cases\n{table}")
    _assert_thresholds(table, scores)
    await runtime.aclose()


@pytest.mark.skipif(not SHARED_MULTILINGUAL.exists(), reason="shared eval cases not beside the checkout")
async def test_shared_multilingual_dev_set_meets_precision_and_recall_per_language(
    tmp_path: Path, sqlite_url: str,
) -> None:
    runtime = Runtime.build(make_settings(tmp_path, sqlite_url))

    for language, cases in sorted(_cases_by_language([SHARED_MULTILINGUAL]).items()):
        table, scores = await _score_cases(runtime, cases)
        print(f"{language}: {len(cases)} cases\n{table}")
        _assert_thresholds(f"{language}\n{table}", scores)
    await runtime.aclose()


@pytest.mark.parametrize(("language", "text", "reason"), [
    ("de", "Ich will mein Geld zurück, sofort!", "policy:refund"),
    ("de", "Kann ich bitte mit einem Menschen sprechen?", "user_request"),
    ("es", "Quiero hablar con una persona, no con un bot.", "user_request"),
    ("es", "Exijo el reembolso de la última factura.", "policy:refund"),
    ("fr", "Je voudrais parler à un conseiller, s'il vous plaît.", "user_request"),
    ("fr", "Je veux être remboursé de ma dernière facture.", "policy:refund"),
])
async def test_request_in_another_language_is_handed_over_before_any_model_call(
    language: str, text: str, reason: str,
    hosted_client: httpx.AsyncClient, hosted_runtime: Runtime, model_mock: respx.MockRouter,
) -> None:
    route = model_mock.post("/chat/completions").mock(return_value=fake_model.completion("Sure, here is how."))
    conversation_id, auth = await start_conversation(hosted_client)

    body = (await send(hosted_client, conversation_id, auth, text)).json()

    assert route.call_count == 0, "the deterministic layer hands over before the model is asked"
    assert body["escalated"] is True and body["escalation"]["reason"] == reason
    assert f"{language})" in body["escalation"]["detail"], "the language's own rule matched"
    assert body["reply"]["content"] == hosted_runtime.languages.text(language, "handoff")


@pytest.mark.parametrize("text", [
    "Can I talk to a human?", "get me an agnet", "let me speek to a humen", "HUMAN PLEASE", "operator!!!",
    "Could a support representative call me back?", "I'd rather chat with a person than a robot",
])
def test_requests_for_a_person_in_any_phrasing(text: str) -> None:
    assert asks_for_human(normalize(text))


@pytest.mark.parametrize("text", [
    "The Human Resources dashboard template is broken", "Our user agent strings show up as 'unknown'",
    "The monitoring agent fails to install on Ubuntu", "I'm a real person, just tell me how to export PDFs",
    "How do I speak to the API using curl?", "A person on my team cannot see shared dashboards",
    "How do I add a human-readable label to a metric?", "Can you contact the webhook endpoint again?",
])
def test_look_alikes_are_not_requests_for_a_person(text: str) -> None:
    assert asks_for_human(normalize(text)) is None


def test_misspelling_repair_never_touches_real_words() -> None:
    assert normalize("Can I speek to a humen") == "can i speak to a human"
    assert normalize("please contact me, I'm not sure") == "please contact me, i'm not sure"


def test_failure_count_needs_replies_in_between_and_stops_at_success() -> None:
    history = [Turnlet("user", "Export fails"), Turnlet("assistant", "Check the size limit."),
               Turnlet("user", "that didn't help"), Turnlet("assistant", "Split by date.")]

    assert count_failures(history, normalize("still not working")) == 2
    assert count_failures(history, normalize("that fixed it, thanks")) == 0
    assert count_failures(history[:2], normalize("didn't help")) == 1
    assert count_failures([Turnlet("user", "hi"), Turnlet("user", "still?")], normalize("still broken")) == 0


def test_asking_the_same_thing_again_counts_as_a_failure() -> None:
    history = [Turnlet("user", "How do I export my dashboard to PDF?"), Turnlet("assistant", "Use Share.")]
    again = [*history, Turnlet("user", "how do I export my dashboard to PDF"), Turnlet("assistant", "Share.")]

    assert count_failures(again, normalize("How do I export my dashboard to PDF??")) == 2


def test_policy_rules_match_requests_not_look_alikes() -> None:
    rules = PolicyStore(PROJECT_ROOT / "knowledge", interval=0).rules()
    fired = {text: next((r.name for r in rules if r.matches(normalize(text))), None) for text in [
        "I want a refund for last month", "Where is the refund policy documented?",
        "We will sue you", "Our legal team needs the DPA", "my acount got hacked",
        "How do I enable 2FA for better security?", "delete my account and all my data",
        "How do I delete a dashboard?", "I want to cancel my subscription", "How do I cancel a running query?",
        "refund policy page loads slowly",
    ]}

    assert fired == {
        "I want a refund for last month": "refund", "Where is the refund policy documented?": None,
        "We will sue you": "legal", "Our legal team needs the DPA": None, "my acount got hacked": "security",
        "How do I enable 2FA for better security?": None, "delete my account and all my data": "privacy",
        "How do I delete a dashboard?": None, "I want to cancel my subscription": "cancellation",
        "How do I cancel a running query?": None, "refund policy page loads slowly": None,
    }


@pytest.mark.parametrize(("text", "line", "reason"), [
    ("rules:\n  - name: refund\n    match:\n      - '(unclosed'\n", 4, "invalid regular expression"),
    ("rules:\n  - name: Bad Name\n    match: ['x']\n", 2, "lower-case"),
    ("rules:\n  - name: a\n    colour: red\n    match: ['x']\n", 2, "unknown rule field"),
    ("rules:\n  - name: a\n", 2, "needs 'name' and 'match'"),
    ("nope: 1\n", 1, "top-level 'rules:'"),
])
def test_policy_file_errors_name_the_line(text: str, line: int, reason: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_policy_text(text, "knowledge/policies.yaml")

    assert raised.value.line == line and reason in raised.value.reason


def test_broken_policy_edit_keeps_last_good_rules(tmp_path: Path) -> None:
    path = tmp_path / "policies.yaml"
    path.write_text("rules:\n  - name: refund\n    match: ['refund']\n")
    store = PolicyStore(tmp_path, interval=0)
    assert [r.name for r in store.rules()] == ["refund"]

    path.write_text("rules:\n  - name: refund\n    match: ['(broken']\n")
    os.utime(path, ns=(10**9, 10**9))

    assert [r.name for r in store.rules()] == ["refund"]
    assert "invalid regular expression" in store.errors()[0].reason


def test_case_file_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_text('{"id": "a", "messages": [{"role": "user", "content": "hi"}], "expect": {}}\n'
                    '{"id": "b", "messages": [{"role": "assistant", "content": "hi"}]}\n')

    with pytest.raises(ConfigError) as raised:
        load_cases(path)

    assert raised.value.line == 2 and "last message" in raised.value.reason
