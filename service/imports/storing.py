"""Imported knowledge in the database: a source's listing applied in one transaction, and read back to serve."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ..db import transaction
from ..knowledge import KnownIssue
from ..models import KnowledgeDocument, KnowledgeEntry, KnowledgeSource
from .documents import Document, Listing, NotModified, Problem, content_hash
from .splitting import split_sections

log = logging.getLogger(__name__)


@dataclass
class SyncReport:
    """What one import or sync of a source did, page by page counted."""

    source: str
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None  # the whole source failed: nothing was changed
    note: str | None = None

    @property
    def status(self) -> str:
        """ok, partial (some pages failed) or failed (the source failed)."""
        return "failed" if self.error else "partial" if self.failed else "ok"

    @property
    def changed(self) -> bool:
        """Whether the source's entries changed."""
        return bool(self.added or self.updated or self.removed)


def entry_rows(document: Document) -> list[KnowledgeEntry]:
    """The document's sections as entry rows, each linking to its heading's anchor when the page has one."""
    rows = []
    for position, section in enumerate(split_sections(document.markdown)):
        anchor = document.anchors.get(section.heading or "")
        url = f"{document.url}#{anchor}" if anchor else document.url
        title = f"{document.title}: {section.heading}" if section.heading else document.title
        rows.append(KnowledgeEntry(position=position, title=title[:500], heading=section.heading, url=url[:2000],
                                   text=section.text, content_hash=content_hash(title, section.text)))
    return rows


def apply_listing(session: Session, source: KnowledgeSource, listing: Listing, now: datetime) -> SyncReport:
    """Bring the source's stored documents in line with `listing`; failed pages keep their last good copy."""
    report = SyncReport(source.location, note=listing.note)
    stored = {d.url: d for d in session.scalars(select(KnowledgeDocument).where(
        KnowledgeDocument.source_id == source.id))}
    seen: set[str] = set()
    for item in listing.items:
        if item.url in seen:
            report.skipped.append((item.url, "listed twice; the first copy was kept"))
            continue
        seen.add(item.url)
        existing = stored.get(item.url)
        if isinstance(item, Document):
            _store_document(session, source, existing, item, now, report)
        elif isinstance(item, NotModified):
            report.unchanged += 1
            if existing is not None:
                existing.fetched_at, existing.last_error = now, None
        else:
            _record_problem(session, existing, item, report)
    if listing.complete:
        for url, document in stored.items():
            if url not in seen:
                session.delete(document)
                report.removed += 1
    source.last_sync_at, source.last_sync_status, source.locked_until = now, report.status, None
    source.last_error = "; ".join(f"{u}: {r}" for u, r in report.failed[:5]) or None
    if report.changed:
        source.revision = uuid.uuid4().hex
    return report


def _store_document(session: Session, source: KnowledgeSource, existing: KnowledgeDocument | None,
                    document: Document, now: datetime, report: SyncReport) -> None:
    rows = entry_rows(document)
    if not rows:
        report.skipped.append((document.url, "no text"))
        return
    if existing is not None and existing.content_hash == document.content_hash:
        report.unchanged += 1
    else:
        if existing is None:
            existing = KnowledgeDocument(source_id=source.id, url=document.url[:2000])
            session.add(existing)
            report.added += 1
        else:
            session.execute(delete(KnowledgeEntry).where(KnowledgeEntry.document_id == existing.id))
            report.updated += 1
        existing.title, existing.content_hash = document.title[:500], document.content_hash
        session.flush()
        for row in rows:
            row.document_id = existing.id
            session.add(row)
    existing.etag, existing.last_modified = document.etag, document.last_modified
    existing.updated_at, existing.fetched_at, existing.last_error = document.updated_at, now, None


def _record_problem(session: Session, existing: KnowledgeDocument | None, problem: Problem,
                    report: SyncReport) -> None:
    if problem.kind == "gone" and existing is not None:
        session.delete(existing)
        report.removed += 1
    elif problem.kind == "skipped":
        report.skipped.append((problem.url, problem.reason))
        if existing is not None:  # imported once, not an article now (e.g. a list of links): it stops answering
            session.delete(existing)
            report.removed += 1
    elif problem.kind == "failed":
        report.failed.append((problem.url, problem.reason))
        if existing is not None:
            existing.last_error = problem.reason


def record_failure(sessions: sessionmaker[Session], source_id: int, reason: str, now: datetime) -> None:
    """The whole source failed: say so on the source and release it; its documents stay as they were."""
    with transaction(sessions) as session:
        source = session.get(KnowledgeSource, source_id)
        if source is not None:
            source.last_sync_at, source.last_sync_status, source.last_error = now, "failed", reason
            source.locked_until = None


def validators(session: Session, source_id: int) -> dict[str, tuple[str | None, str | None]]:
    """url -> (etag, last_modified) of the source's stored pages, for conditional requests."""
    rows = session.execute(select(KnowledgeDocument.url, KnowledgeDocument.etag, KnowledgeDocument.last_modified)
                           .where(KnowledgeDocument.source_id == source_id).order_by(KnowledgeDocument.id))
    return {url: (etag, modified) for url, etag, modified in rows}


def as_known_issue(entry: KnowledgeEntry, document: KnowledgeDocument, source: KnowledgeSource) -> KnownIssue:
    """An imported entry as the knowledge base serves it; only a web address is cited as a link."""
    url = entry.url if entry.url.startswith(("http://", "https://")) else None
    return KnownIssue(id=f"imported-{entry.id}", title=entry.title, keywords=(), solution=entry.text,
                      escalate=False, source=source.location, url=url, page_title=document.title)


def load_imported(session: Session) -> tuple[KnownIssue, ...]:
    """Every imported entry, in source, document and section order."""
    rows = session.execute(
        select(KnowledgeEntry, KnowledgeDocument, KnowledgeSource)
        .join(KnowledgeDocument, KnowledgeEntry.document_id == KnowledgeDocument.id)
        .join(KnowledgeSource, KnowledgeDocument.source_id == KnowledgeSource.id)
        .order_by(KnowledgeSource.id, KnowledgeDocument.id, KnowledgeEntry.position))
    return tuple(as_known_issue(entry, document, source) for entry, document, source in rows)


class ImportedKnowledge:
    """The imported entries for KnowledgeStore: re-read when a source's revision changed, checked per interval.

    The check is one small query (the sources' ids and revisions), so every replica sees a sync within
    `interval` seconds. While the database cannot be read, the last entries read keep serving.
    """

    def __init__(self, sessions: sessionmaker[Session], interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._sessions = sessions
        self._interval = interval
        self._clock = clock
        self._checked = float("-inf")
        self._stamp: Any = None
        self._issues: tuple[KnownIssue, ...] = ()
        self._lock = threading.Lock()

    def __call__(self) -> tuple[KnownIssue, ...]:
        now = self._clock()
        if now - self._checked < self._interval:
            return self._issues
        with self._lock:
            if now - self._checked >= self._interval:
                self._checked = now
                self._refresh()
        return self._issues

    def _refresh(self) -> None:
        try:
            with self._sessions() as session:
                stamp = tuple(session.execute(select(KnowledgeSource.id, KnowledgeSource.revision)
                                              .order_by(KnowledgeSource.id)).all())
                if stamp != self._stamp:
                    self._issues, self._stamp = load_imported(session), stamp
        except SQLAlchemyError as error:
            log.warning("imported knowledge not re-read (the last copy keeps serving): %s",
                        getattr(error, "orig", None) or error)
