"""Long articles split at their `##` / `###` headings into sections that keep the page's title and URL."""

from __future__ import annotations

import re
from dataclasses import dataclass

SMALL_ARTICLE_CHARS = 1500  # an article this short stays one entry
MAX_SECTION_CHARS = 4000  # a section longer than this is cut at paragraph breaks
_HEADING = re.compile(r"^(#{2,3})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


@dataclass(frozen=True)
class Section:
    """A part of an article: its heading (None for the part before the first heading) and text."""

    heading: str | None
    text: str


def split_sections(markdown: str) -> list[Section]:
    """The article as sections: one when it is short, else one per `##`/`###` heading (long ones cut further)."""
    markdown = markdown.strip()
    if not markdown:
        return []
    if len(markdown) <= SMALL_ARTICLE_CHARS:
        return [Section(None, markdown)]
    sections: list[Section] = []
    heading: str | None = None
    lines: list[str] = []
    in_fence = False
    for line in markdown.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match:
            sections.extend(_finish(heading, lines))
            heading, lines = match.group(2).strip(), []
        else:
            lines.append(line)
    sections.extend(_finish(heading, lines))
    return sections


def _finish(heading: str | None, lines: list[str]) -> list[Section]:
    text = "\n".join(lines).strip()
    if not text:
        return []
    return [Section(heading, chunk) for chunk in _chunks(text)]


def _chunks(text: str) -> list[str]:
    """`text` in pieces of at most MAX_SECTION_CHARS, cut between paragraphs (a longer paragraph stays whole)."""
    if len(text) <= MAX_SECTION_CHARS:
        return [text]
    chunks: list[str] = []
    current = ""
    for paragraph in re.split(r"\n\s*\n", text):
        if current and len(current) + len(paragraph) + 2 > MAX_SECTION_CHARS:
            chunks.append(current)
            current = ""
        current = f"{current}\n\n{paragraph}" if current else paragraph
    if current:
        chunks.append(current)
    return chunks
