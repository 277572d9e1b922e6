"""What a source yields: documents read now, documents unchanged since last time, and problems."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal


@dataclass(frozen=True)
class Document:
    """One page, file or article as read now: its title, main content as Markdown and HTTP validators."""

    url: str
    title: str
    markdown: str
    anchors: dict[str, str] = field(default_factory=dict)  # heading text -> element id, for `url#id` links
    etag: str | None = None
    last_modified: str | None = None
    updated_at: datetime | None = None

    @property
    def content_hash(self) -> str:
        """What decides whether the document changed."""
        return content_hash(self.title, self.markdown)


@dataclass(frozen=True)
class NotModified:
    """The server said the copy we have is current (HTTP 304): nothing to read again."""

    url: str


@dataclass(frozen=True)
class Problem:
    """A page that failed (keeps its last copy), is gone (removed) or was skipped (not an article)."""

    url: str
    reason: str
    kind: Literal["failed", "gone", "skipped"]


Item = Document | NotModified | Problem


@dataclass
class Listing:
    """Everything a source yielded; `complete` is False when it was cut short, so nothing unseen is removed."""

    items: list[Item] = field(default_factory=list)
    complete: bool = True
    note: str | None = None


def content_hash(*parts: str) -> str:
    """SHA-256 of the parts, joined by blank lines."""
    return hashlib.sha256("\n\n".join(parts).encode("utf-8")).hexdigest()
