"""Known-issue files: parsing with clear errors, the shipped example, BM25 retrieval."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from service.config import PROJECT_ROOT
from service.errors import ConfigError
from service.knowledge import KnowledgeBase, KnowledgeStore, KnownIssue, parse_knowledge_text

GOOD = """# Exports

## CSV export fails
keywords: csv, export, fails

Check the 100 MB file size limit.

## Slow dashboard
keywords: slow, dashboard
escalate: true

Clear the browser cache.
Then reload.
"""


def test_parses_entries_with_fields_and_multiline_solutions() -> None:
    first, second = parse_knowledge_text(GOOD, "k.md")

    assert (first.id, first.title) == ("csv-export-fails", "CSV export fails")
    assert first.keywords == ("csv", "export", "fails")
    assert first.escalate is False and first.source == "k.md:3"
    assert second.escalate is True
    assert second.solution == "Clear the browser cache.\nThen reload."


@pytest.mark.parametrize(("text", "line", "reason"), [
    ("## A\nkeywords: a\n", 1, "no solution"),
    ("## A\n\nSolution.\n", 1, "needs a 'keywords:' line"),
    ("## A\nkeywords: a\ncolour: red\n\nSolution.\n", 3, "unknown field 'colour'"),
    ("## A\nkeywords: a\nescalate: maybe\n\nSolution.\n", 1, "escalate must be true or false"),
    ("stray text\n## A\nkeywords: a\n\nSolution.\n", 1, "text before the first"),
    ("## A\nthis is not a field\n\nSolution.\n", 2, "expected 'keywords: ...'"),
    ("## \nkeywords: a\n\nSolution.\n", 1, "title is empty"),
])
def test_errors_name_the_line_and_reason(text: str, line: int, reason: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_knowledge_text(text, "knowledge/x.md")

    assert raised.value.path == "knowledge/x.md"
    assert raised.value.line == line
    assert reason in raised.value.reason


def test_shipped_example_knowledge_base_is_valid_and_large_enough() -> None:
    store = KnowledgeStore(PROJECT_ROOT / "knowledge", interval=0)

    base = store.current()

    assert store.errors() == ()
    assert len(base.issues) >= 25
    assert {i.id for i in base.issues} >= {"slow-dashboard-loads", "reset-your-password"}


@pytest.mark.parametrize(("question", "expected"), [
    ("My dashboard takes forever to load", "slow-dashboard-loads"),
    ("Export to CSV fails with an error", "csv-export-fails-with-an-error"),
    ("How do I reset my password?", "reset-your-password"),
    ("What is the API rate limit?", "api-rate-limit-and-429-errors"),
    ("SSO login with Okta loops back to the login page", "okta-sso-login-loops-back-to-the-login-page"),
])
def test_retrieval_ranks_the_matching_issue_first(question: str, expected: str) -> None:
    base = KnowledgeStore(PROJECT_ROOT / "knowledge", interval=0).current()

    hits = base.search(question, k=3)

    assert hits[0][0].id == expected
    assert hits == sorted(hits, key=lambda hit: -hit[1])


def test_query_of_only_stop_words_or_unknown_words_finds_nothing() -> None:
    base = KnowledgeStore(PROJECT_ROOT / "knowledge", interval=0).current()

    assert base.search("the and of", k=3) == []
    assert base.search("zxqv wplm", k=3) == []


def test_ten_thousand_entries_are_searchable() -> None:
    issues = tuple(
        KnownIssue(id=f"issue-{n}", title=f"Problem {n} with widget{n}", keywords=(f"widget{n}", "error"),
                   solution=f"Restart widget{n}.", escalate=False, source=f"big.md:{n}")
        for n in range(10_000)
    )
    base = KnowledgeBase(issues)

    hits = base.search("error in widget7342", k=5)

    assert hits[0][0].id == "issue-7342"
    assert len(hits) == 5


def test_store_reloads_changed_files_and_keeps_last_good_version(tmp_path: Path) -> None:
    path = tmp_path / "k.md"
    path.write_text(GOOD)
    store = KnowledgeStore(tmp_path, interval=0)
    assert len(store.current().issues) == 2

    path.write_text(GOOD + "\n## Broken entry\nkeywords: x\n")
    os.utime(path, ns=(1, 1))
    assert len(store.current().issues) == 2, "last good version keeps serving"
    assert "no solution" in store.errors()[0].reason

    path.write_text(GOOD + "\n## New entry\nkeywords: new\n\nFixed.\n")
    os.utime(path, ns=(2, 2))
    assert [i.id for i in store.current().issues][-1] == "new-entry"
    assert store.errors() == ()


def test_duplicate_titles_across_files_are_reported(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text(GOOD)
    (tmp_path / "b.md").write_text("## CSV export fails\nkeywords: csv\n\nOther.\n")
    store = KnowledgeStore(tmp_path, interval=0)

    base = store.current()

    assert len(base.issues) == 2
    assert "duplicate title" in store.errors()[0].reason
    assert store.errors()[0].path.endswith("b.md")
