"""Import a source, sync every source, list and remove them: what `supportbot knowledge ...` runs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from ..config import Settings
from ..db import transaction
from ..models import KnowledgeDocument, KnowledgeEntry, KnowledgeSource, utcnow
from .documents import Document, Listing, NotModified
from .errors import ImportFailed, PageFailed
from .fetching import Fetcher, FetchLimits
from .storing import SyncReport, apply_listing, record_failure, validators

LEASE_SECONDS = 1800.0  # a sync holds its source this long at most; a crashed one frees it after


@dataclass(frozen=True)
class SourceSummary:
    """One line of `supportbot knowledge list`."""

    location: str
    kind: str
    documents: int
    entries: int
    last_sync_at: datetime | None
    status: str | None
    last_error: str | None


def fetch_limits(settings: Settings, max_pages: int | None = None) -> FetchLimits:
    """The import limits the settings ask for."""
    return FetchLimits(timeout=settings.knowledge_import_timeout, delay=settings.knowledge_import_delay,
                       max_page_bytes=settings.knowledge_import_max_page_bytes,
                       max_total_bytes=settings.knowledge_import_max_bytes,
                       max_pages=max_pages or settings.knowledge_import_max_pages)


def classify(source: str) -> tuple[str, str]:
    """(kind, location) of what the user typed: a web URL, a folder, or an export file."""
    if source.startswith(("http://", "https://")):
        return "web", source
    if "://" in source:
        raise ImportFailed(source, "only http(s) URLs, folders and .json export files can be imported")
    path = Path(source).expanduser().resolve()
    if path.is_dir():
        return "folder", str(path)
    if path.is_file():
        return "export", str(path)
    raise ImportFailed(source, "no such file or folder, and not an http(s) URL")


def read_listing(kind: str, location: str, limits: FetchLimits, known: dict[str, tuple[str | None, str | None]],
                 client: httpx.Client | None = None) -> Listing:
    """Everything the source holds now; ImportFailed when the source as a whole cannot be read."""
    # Imported here: the readers pull in trafilatura, pypdf and lxml (~30 MB resident), which a server that
    # never syncs a source should not carry (bench/findings.md 0j).
    from .crawling import crawl
    from .sources import list_export, list_folder

    if kind == "folder":
        return list_folder(Path(location), limits.max_page_bytes)
    if kind == "export":
        return list_export(Path(location), limits.max_total_bytes)
    try:
        fetcher = Fetcher(location, limits, client=client)
    except PageFailed as error:
        raise ImportFailed(location, error.reason) from None
    try:
        return crawl(fetcher, known)
    finally:
        fetcher.close()


class KnowledgeImports:
    """Imports and syncs sources into the database, each under a lease so two processes never overlap."""

    def __init__(self, sessions: sessionmaker[Session], limits: FetchLimits, clock: Callable[[], datetime] = utcnow,
                 client: httpx.Client | None = None) -> None:
        self.sessions = sessions
        self.limits = limits
        self.clock = clock
        self.client = client

    def import_source(self, source: str, max_pages: int | None = None) -> SyncReport:
        """Import a new source, or sync one already imported (with new options)."""
        try:
            kind, location = classify(source)
        except ImportFailed as error:
            return SyncReport(source, error=error.reason)
        options = {"max_pages": max_pages} if max_pages else None
        with self.sessions() as session:
            source_id = session.scalar(select(KnowledgeSource.id).where(KnowledgeSource.location == location))
        if source_id is None:
            return self._first_import(kind, location, options)
        if options:
            with transaction(self.sessions) as session:
                session.execute(update(KnowledgeSource).where(KnowledgeSource.id == source_id).values(options=options))
        return self.sync_source(source_id)

    def _first_import(self, kind: str, location: str, options: dict[str, Any] | None) -> SyncReport:
        try:
            listing = read_listing(kind, location, self._limits(options), {}, self.client)
            _require_something(location, listing)
        except ImportFailed as error:
            return SyncReport(location, error=error.reason)
        with transaction(self.sessions) as session:
            row = KnowledgeSource(kind=kind, location=location, options=options)
            session.add(row)
            session.flush()
            return apply_listing(session, row, listing, self.clock())

    def _limits(self, options: dict[str, Any] | None) -> FetchLimits:
        pages = (options or {}).get("max_pages")
        if isinstance(pages, int) and pages > 0:
            return FetchLimits(**{**self.limits.__dict__, "max_pages": pages})
        return self.limits

    def claim(self, source_id: int, due_before: datetime | None = None) -> bool:
        """Take the source's lease (and, with `due_before`, only if it was last synced before then)."""
        now = self.clock()
        conditions = [KnowledgeSource.id == source_id,
                      or_(KnowledgeSource.locked_until.is_(None), KnowledgeSource.locked_until < now)]
        if due_before is not None:
            conditions.append(or_(KnowledgeSource.last_sync_at.is_(None), KnowledgeSource.last_sync_at <= due_before))
        with transaction(self.sessions) as session:
            result = session.execute(update(KnowledgeSource).where(*conditions)
                                     .values(locked_until=now + timedelta(seconds=LEASE_SECONDS)))
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def sync_source(self, source_id: int, claimed: bool = False) -> SyncReport:
        """Re-read one source: changed pages updated, removed ones dropped, failing ones kept as they were."""
        with self.sessions() as session:
            row = session.get(KnowledgeSource, source_id)
            if row is None:
                return SyncReport(f"source {source_id}", error="no such source")
            kind, location, options = row.kind, row.location, row.options
            known = validators(session, source_id)
        if not claimed and not self.claim(source_id):
            return SyncReport(location, error="another process is syncing it right now; try again later")
        try:
            listing = read_listing(kind, location, self._limits(options), known, self.client)
            _require_something(location, listing)
        except ImportFailed as error:
            record_failure(self.sessions, source_id, error.reason, self.clock())
            return SyncReport(location, error=error.reason)
        except BaseException:
            record_failure(self.sessions, source_id, "the sync stopped unexpectedly", self.clock())
            raise
        with transaction(self.sessions) as session:
            row = session.get(KnowledgeSource, source_id)
            if row is None:
                return SyncReport(location, error="the source was removed during the sync")
            return apply_listing(session, row, listing, self.clock())

    def sync_all(self) -> list[SyncReport]:
        """Sync every source, one after the other."""
        return [self.sync_source(source_id) for source_id in self.source_ids()]

    def source_ids(self) -> list[int]:
        """Every source's id, oldest first."""
        with self.sessions() as session:
            return list(session.scalars(select(KnowledgeSource.id).order_by(KnowledgeSource.id)))

    def remove(self, source: str) -> bool:
        """Forget a source and everything imported from it; False when there is no such source."""
        candidates = {source}
        try:
            candidates.add(classify(source)[1])
        except ImportFailed:
            pass
        with transaction(self.sessions) as session:
            row = session.scalar(select(KnowledgeSource).where(KnowledgeSource.location.in_(candidates)))
            if row is None:
                return False
            session.delete(row)
            return True

    def summaries(self) -> list[SourceSummary]:
        """Every source with its document and entry counts and last sync."""
        with self.sessions() as session:
            documents = dict(session.execute(select(KnowledgeDocument.source_id, func.count())
                                             .group_by(KnowledgeDocument.source_id)).all())
            entries = dict(session.execute(
                select(KnowledgeDocument.source_id, func.count(KnowledgeEntry.id))
                .join(KnowledgeEntry, KnowledgeEntry.document_id == KnowledgeDocument.id)
                .group_by(KnowledgeDocument.source_id)).all())
            rows = session.scalars(select(KnowledgeSource).order_by(KnowledgeSource.id)).all()
            return [SourceSummary(r.location, r.kind, int(documents.get(r.id, 0)), int(entries.get(r.id, 0)),
                                  r.last_sync_at, r.last_sync_status, r.last_error) for r in rows]


def _require_something(location: str, listing: Listing) -> None:
    """A source that yielded no page at all (every one failed or was skipped) fails as a whole."""
    if any(isinstance(item, Document | NotModified) for item in listing.items):
        return
    if not listing.items:
        raise ImportFailed(location, "nothing to import")
    first = listing.items[0]
    more = f" (and {len(listing.items) - 1} more)" if len(listing.items) > 1 else ""
    raise ImportFailed(location, f"nothing importable: {first.url}: {getattr(first, 'reason', '')}{more}")
