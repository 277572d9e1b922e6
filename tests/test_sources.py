"""What a reply cites: the `url:` field of knowledge entries, one source per page, which entries count."""

from __future__ import annotations

import pytest

from service.errors import ConfigError
from service.knowledge import KnownIssue, parse_knowledge_text
from service.sources import Source, answered_from, cite, relevant_in_prompt, sources_from_json


def issue(title: str, url: str | None = None, page_title: str | None = None) -> KnownIssue:
    """A knowledge entry as a hand-written file or an import would give it."""
    return KnownIssue(id=title.lower().replace(" ", "-"), title=title, keywords=("k",), solution="Do this.",
                      escalate=False, source="test", url=url, page_title=page_title)


def test_url_field_is_read_from_a_hand_written_entry() -> None:
    cited, plain, relative = parse_knowledge_text(
        "## Change the invoice currency\nkeywords: currency\nurl: https://help.acme.example/a/currency\n\nDo it.\n"
        "## No page\nkeywords: nothing\n\nText.\n"
        "## Pause billing\nurl: /help/pause\nkeywords: pause\n\nPause it.\n", "k.md")

    assert cited.url == "https://help.acme.example/a/currency"
    assert plain.url is None
    assert relative.url == "/help/pause"
    assert cited.solution == "Do it."  # the url line is a field, not part of the answer


@pytest.mark.parametrize(("url", "reason"), [
    ("javascript:alert(1)", "must be an http(s) URL"),
    ("data:text/html,<b>x</b>", "must be an http(s) URL"),
    ("ftp://files.acme.example/a", "must be an http(s) URL"),
    ("//evil.example/a", "must be an http(s) URL"),
    ("help/article", "must be an http(s) URL"),
    ("https://", "must be an http(s) URL"),
    ("http://[::1/a", "must be an http(s) URL"),
    ("https://help.acme.example/a b", "contains spaces"),
    ("https://help.acme.example/" + "a" * 2000, "the limit is 2000"),
])
def test_a_url_that_cannot_be_a_link_is_an_error_naming_its_line(url: str, reason: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_knowledge_text(f"# Billing\n\n## A\nkeywords: a\nurl: {url}\n\nSolution.\n", "knowledge/billing.md")

    assert raised.value.path == "knowledge/billing.md"
    assert raised.value.line == 5
    assert raised.value.reason.startswith("url ") and reason in raised.value.reason


def test_sections_of_one_page_are_one_source_with_the_pages_title() -> None:
    sections = [
        issue("Currency: change it", "https://help.example.com/currency#change", page_title="Invoice currency"),
        issue("Pause billing", "https://help.example.com/pause"),
        issue("Currency: past invoices", "https://help.example.com/currency#past", page_title="Invoice currency"),
    ]

    assert cite(sections) == (
        Source("Invoice currency", "https://help.example.com/currency#change"),  # the best section's link
        Source("Pause billing", "https://help.example.com/pause"),
    )


def test_entries_without_a_page_are_cited_by_title_and_at_most_three_sources_are_kept() -> None:
    entries = [issue("One"), issue("One"), issue("Two", "/help/two"), issue("Three"), issue("Four")]

    assert cite(entries) == (Source("One", None), Source("Two", "/help/two"), Source("Three", None))


def test_a_url_that_is_not_a_safe_link_is_never_cited_as_one() -> None:
    imported = [issue("Scripted", "javascript:alert(1)", page_title="Page"), issue("Other host", "//evil.example/x")]

    assert cite(imported) == (Source("Scripted", None), Source("Other host", None))


def test_offline_answer_cites_the_entry_it_answered_from() -> None:
    entries = [issue("Pause billing", "/help/pause"), issue("Refunds", "https://help.example.com/refunds")]

    assert answered_from(entries, "refunds") == (Source("Refunds", "https://help.example.com/refunds"),)
    assert answered_from(entries, "gone-since") == ()


def test_hosted_answer_cites_the_relevant_entries_that_were_in_its_prompt() -> None:
    refunds, pause, seats, sso = issue("Refunds", "/r"), issue("Pause", "/p"), issue("Seats", "/s"), issue("SSO", "/o")
    hits = [(refunds, 9.0), (pause, 4.0), (seats, 1.0), (sso, 8.0)]  # the fourth is past the three best

    cited = relevant_in_prompt(hits, prompt_issue_ids=["refunds", "seats", "sso"], min_score=3.0)

    # pause was not in the prompt, seats scores below the threshold, sso is not among the three best hits
    assert cited == (Source("Refunds", "/r"),)


def test_hosted_answer_cites_only_hits_that_match_about_as_well_as_the_best() -> None:
    refunds, pause, seats = issue("Refunds", "/r"), issue("Pause", "/p"), issue("Seats", "/s")
    hits = [(refunds, 0.9), (pause, 0.75), (seats, 0.5)]  # all above the threshold; seats far below the best

    cited = relevant_in_prompt(hits, prompt_issue_ids=["refunds", "pause", "seats"], min_score=0.3)

    assert cited == (Source("Refunds", "/r"), Source("Pause", "/p"))


def test_stored_sources_are_read_back_and_null_means_none() -> None:
    stored = [{"title": "Refunds", "url": "https://help.example.com/refunds"}, {"title": "Pause", "url": None}]

    assert sources_from_json(stored) == (Source("Refunds", "https://help.example.com/refunds"), Source("Pause", None))
    assert sources_from_json(None) == ()
