"""The escalation rules' literal prefilter (service/prefilter.py) may skip a search, never change its result."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.config import PROJECT_ROOT
from service.escalation import fold, normalize
from service.languages import parse_language_file
from service.policies import PolicyRule, parse_policy_file
from service.prefilter import Needle, Needles

KNOWLEDGE = PROJECT_ROOT / "knowledge"
EVAL = PROJECT_ROOT.parent / "shared" / "eval"


def _naive(patterns: tuple[re.Pattern[str], ...], text: str) -> tuple[int, int] | None:
    for pattern in patterns:
        found = pattern.search(text)
        if found:
            return found.span()
    return None


def _span(found: re.Match[str] | None) -> tuple[int, int] | None:
    return found.span() if found else None


def _shipped_rules() -> list[PolicyRule]:
    rules = list(parse_policy_file(KNOWLEDGE / "policies.yaml"))
    for path in sorted((KNOWLEDGE / "languages").glob("*.yaml")):
        language = parse_language_file(path).rules
        rules += [rule for rule in (language.human_request, language.failure, *language.policies) if rule]
    return rules


def _shipped_messages() -> list[str]:
    messages = []
    for path in sorted(EVAL.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                messages += [m["content"] for m in json.loads(line)["messages"] if m["role"] == "user"]
    assert len(messages) > 50, "the shared eval cases are beside the checkout"
    return messages


def test_every_shipped_rule_finds_what_a_plain_search_finds_in_every_eval_message() -> None:
    rules = _shipped_rules()
    texts = [variant for message in _shipped_messages() for variant in (message, normalize(message), fold(message))]
    with_literals = 0
    for rule in rules:
        for text in texts:
            assert _span(rule.first_match(text)) == _naive(rule.match, text), (rule.name, text)
        with_literals += sum(needle.literals is not None for needle in rule.needles.needles)
    total = sum(len(rule.match) for rule in rules)
    assert with_literals >= 0.9 * total, f"only {with_literals} of {total} expressions have literals to test first"


@pytest.mark.parametrize(("pattern", "literals"), [
    (r"\brefund(s|ed)?\b", ("refund",)),
    (r"\b(talk|speak) to (a|an) (human|person)\b", ("human", "person")),
    (r"(money back|chargeback)", ("chargeback", "money back")),
    (r"\b(re)?fund", ("fund",)),
    (r"(abc)?x", None),  # nothing proven: "x" alone is too short to test first
    (r"[a-z]+ing", ("ing",)),
    (r"(?:lawyer|attorney)s?|legal action", ("attorney", "lawyer", "legal action")),
    (r"(?=refund)\w+", None),
])
def test_the_literals_read_from_an_expression(pattern: str, literals: tuple[str, ...] | None) -> None:
    assert Needle.of(re.compile(pattern)).literals == literals


TRICKY = [
    r"\brefund(s|ed)?\b", r"(re)?fund", r"chargebacks?|money back", r"a(bc|bd)e", r"(?:xyz){2,}", r"(?:xyz)*q",
    r"ab+c", r"x(?=yz)yz", r"(?<!no )refund", r"(a|b)cd(e|f)", r"(abc|)def", r"[^a]bcd", r"abc\b", r"^abc",
    r"(?i)refund", r"(?i)straße", r"(?i)kelvin", r"(?i)ſtop", r"(?i:abc)def", r"a.c.e", r"(ab)\1",
    r"(?>abc)d", r"abc|ab", r"talk (to|with) (a|an)? ?human",
]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="abcdefhiklnoprstuxyzqKſ ÄßSTOP-", max_size=24))
def test_no_expression_is_skipped_where_it_would_match(text: str) -> None:
    for pattern in TRICKY:
        for flags in (0, re.IGNORECASE):
            compiled = re.compile(pattern, flags)
            assert _span(Needle.of(compiled).search(text)) == _span(compiled.search(text)), (pattern, flags, text)
    compiled_all = tuple(re.compile(pattern) for pattern in TRICKY)
    assert _span(Needles.of(compiled_all).first(text)) == _naive(compiled_all, text)


@pytest.mark.parametrize("text", ["REFUND please", "ſtop", "KELVIN", "\u212aelvin", "i want a refund", "refuſe",
                                  "please pause"])
def test_ignorecase_expressions_still_match_text_that_is_not_lower_case_ascii(text: str) -> None:
    # Under IGNORECASE "ſ" (long s) matches "s" and the Kelvin sign "k": a substring test must not decide those.
    patterns = tuple(re.compile(p, re.IGNORECASE) for p in (r"refund", r"stop", r"kelvin", r"refuse", r"pauſe"))
    assert _span(Needles.of(patterns).first(text)) == _naive(patterns, text)
    assert _naive(patterns, text) is not None
