"""What can go wrong while importing: a whole source, or one page of it."""

from __future__ import annotations


class ImportFailed(Exception):
    """A whole source could not be read: nothing already imported from it is changed."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class PageFailed(Exception):
    """One page or file could not be read or has no usable text; its last good copy keeps serving."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason


class PageSkipped(PageFailed):
    """A page that is not an article (not HTML, no main content): reported, never an error."""


class ImportCapReached(Exception):
    """The import read as many bytes as it may in all; what was read is kept, the rest waits for a sync."""
