"""Redaction of personal data in training exports, on a labeled test set."""

from __future__ import annotations

import json

import pytest

from service.config import PROJECT_ROOT
from service.redact import Redactor, luhn_valid

CASES = [json.loads(line) for line in (PROJECT_ROOT / "tests" / "data" / "redaction_cases.jsonl").open()]


@pytest.mark.parametrize("case", CASES, ids=[f"{c['kind']}-{i}" for i, c in enumerate(CASES)])
def test_redaction_case(case: dict[str, str]) -> None:
    assert Redactor().redact(case["text"]) == case["expected"]


def test_every_kind_is_covered() -> None:
    assert {c["kind"] for c in CASES} == {"email", "phone", "card", "ip", "secret", "ordinary"}


def test_placeholders_are_consistent_across_messages_of_one_example() -> None:
    redactor = Redactor()

    first = redactor.redact("I am jane@example.com")
    second = redactor.redact("Write to jane@example.com or bob@example.com")

    assert (first, second) == ("I am [EMAIL]", "Write to [EMAIL] or [EMAIL_2]")
    assert Redactor().redact("bob@example.com") == "[EMAIL]", "a new example starts numbering again"


def test_luhn() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
