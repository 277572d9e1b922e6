"""The service's periodic sync: every replica looks, one takes each due source under a lease and syncs it."""

from __future__ import annotations

import logging
from datetime import timedelta

from ..periodic import every
from .storing import SyncReport
from .syncing import KnowledgeImports

log = logging.getLogger(__name__)


class ScheduledSync:
    """Syncs each imported source once per `interval` seconds, whichever replica claims it first."""

    def __init__(self, imports: KnowledgeImports, interval: float) -> None:
        self.imports = imports
        self.interval = interval

    def run_due(self) -> list[SyncReport]:
        """Sync the sources last synced an interval ago or more that no other process holds; their reports."""
        due_before = self.imports.clock() - timedelta(seconds=self.interval)
        reports = []
        for source_id in self.imports.source_ids():
            if self.imports.claim(source_id, due_before=due_before):
                report = self.imports.sync_source(source_id, claimed=True)
                _log(report)
                reports.append(report)
        return reports

    async def run(self) -> None:
        """Look for due sources every so often (at most a minute apart) until cancelled."""
        await every(min(self.interval, 60.0), self.run_due, "scheduled knowledge sync")


def _log(report: SyncReport) -> None:
    if report.error:
        log.warning("knowledge sync of %s failed, everything imported stays: %s", report.source, report.error)
        return
    log.info("knowledge sync of %s: %d added, %d updated, %d unchanged, %d removed, %d failed",
             report.source, report.added, report.updated, report.unchanged, report.removed, len(report.failed))
    for url, reason in report.failed:
        log.warning("knowledge sync of %s: %s kept its last copy: %s", report.source, url, reason)
