"""The sources a reply drew on: the knowledge entries behind it, cited as one link per page.

What "drew on" means, by provider:
- the offline provider answers with one entry's text: that entry is the source;
- a hosted model is given entries in its prompt and may use any of them: the sources are the entries
  that retrieval ranks best for the visitor's message (at most MAX_SOURCES, each scoring at least the
  offline answer threshold and at least NEAR_BEST of the best hit's score) and that were in the prompt.
  The model is not asked to cite; an entry that matches the question about as well as the best one is
  taken as one the answer drew on (bench/sources.py measures how often that is the right article).
A fixed text (handoff, budget, leak guard, model unavailable) draws on nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .knowledge import KnownIssue, url_problem

MAX_SOURCES = 3
# Hits scoring well below the best one are more often other topics than the answer's (bench/sources.py: on the
# labeled set, 0.8 keeps the right article about as often as no limit and cuts the other citations by a third).
NEAR_BEST = 0.8


@dataclass(frozen=True)
class Source:
    """One cited page: its title and its URL (None for a hand-written entry without a `url:` field)."""

    title: str
    url: str | None

    def as_json(self) -> dict[str, str | None]:
        """The stored and public shape, `{"title", "url"}`."""
        return {"title": self.title, "url": self.url}


def cite(issues: Iterable[KnownIssue], limit: int = MAX_SOURCES) -> tuple[Source, ...]:
    """One source per page, best first: sections of one article become one source with the article's title."""
    cited: dict[str, Source] = {}
    for issue in issues:
        url = issue.url if issue.url and url_problem(issue.url) is None else None
        # Sections of one page differ at most in their #fragment; the first (best) one's link is kept.
        key = "url:" + url.partition("#")[0] if url else "title:" + issue.title
        if key not in cited:
            cited[key] = Source(title=(issue.page_title or issue.title) if url else issue.title, url=url)
    return tuple(cited.values())[:limit]


def answered_from(issues: Iterable[KnownIssue], issue_id: str) -> tuple[Source, ...]:
    """The offline provider's source: the entry it answered from (the first in `issues` with that id)."""
    issue = next((issue for issue in issues if issue.id == issue_id), None)
    return cite([issue]) if issue else ()


def relevant_in_prompt(
    hits: Sequence[tuple[KnownIssue, float]], prompt_issue_ids: Iterable[str], min_score: float
) -> tuple[Source, ...]:
    """A hosted model's sources: the prompt's entries among the best hits, near the best score and above `min_score`."""
    given = set(prompt_issue_ids)
    floor = max(min_score, NEAR_BEST * hits[0][1]) if hits else min_score
    return cite(issue for issue, score in hits[:MAX_SOURCES] if score >= floor and issue.id in given)


def sources_from_json(value: Any) -> tuple[Source, ...]:
    """Sources as stored on a message (NULL for messages older than sources, and for fixed texts)."""
    if not isinstance(value, list):
        return ()
    return tuple(Source(title=str(item.get("title") or ""), url=item.get("url") or None)
                 for item in value if isinstance(item, dict))
