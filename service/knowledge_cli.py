"""`supportbot knowledge import|sync|list|remove`: imported knowledge sources from the command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from .config import Settings

if TYPE_CHECKING:  # the parser is built on every command; the importer loads only for `knowledge`
    from .imports.storing import SyncReport
    from .imports.syncing import KnowledgeImports


@contextmanager
def _imports(settings: Settings, max_pages: int | None = None) -> Iterator[KnowledgeImports]:
    from .db import command_sessions
    from .imports.syncing import KnowledgeImports, fetch_limits

    with command_sessions(settings.resolved_database_url) as sessions:
        yield KnowledgeImports(sessions, fetch_limits(settings, max_pages))


def format_report(report: SyncReport) -> str:
    """The report as printed: a counts line per source, then a line per failed or skipped page."""
    if report.error:
        return f"{report.source}: failed, nothing changed: {report.error}"
    lines = [f"{report.source}: {report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
             f"{report.removed} removed, {len(report.failed)} failed, {len(report.skipped)} skipped"]
    lines += [f"  failed  {url}: {reason} (the last good copy, if any, is kept)" for url, reason in report.failed]
    lines += [f"  skipped {url}: {reason}" for url, reason in report.skipped]
    if report.note:
        lines.append(f"  note: {report.note}")
    return "\n".join(lines)


def _print_reports(reports: list[SyncReport]) -> int:
    for report in reports:
        print(format_report(report), file=sys.stderr if report.error else sys.stdout)
    return 1 if any(r.error or r.failed for r in reports) else 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Dispatch a `knowledge` subcommand; exit 1 when a source or a page failed."""
    command = args.knowledge_command
    with _imports(settings, getattr(args, "max_pages", None)) as imports:
        if command == "import":
            return _print_reports([imports.import_source(args.source, args.max_pages)])
        if command == "sync":
            reports = imports.sync_all()
            if not reports:
                print("no imported sources; add one with `supportbot knowledge import SOURCE`")
            return _print_reports(reports)
        if command == "remove":
            if imports.remove(args.source):
                print(f"{args.source}: removed, with everything imported from it")
                return 0
            print(f"error: no imported source {args.source!r} (see `supportbot knowledge list`)", file=sys.stderr)
            return 1
        return _list(imports)


def _list(imports: KnowledgeImports) -> int:
    summaries = imports.summaries()
    if not summaries:
        print("no imported sources; add one with `supportbot knowledge import SOURCE`")
        return 0
    for s in summaries:
        synced = s.last_sync_at.strftime("%Y-%m-%d %H:%M UTC") if s.last_sync_at else "never"
        print(f"{s.location}  [{s.kind}]  {s.documents} documents, {s.entries} entries, "
              f"last sync {synced}: {s.status or 'never synced'}")
        if s.last_error:
            print(f"  last error: {s.last_error}")
    return 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `knowledge` subcommand and its own subcommands."""
    knowledge = commands.add_parser("knowledge", help="import knowledge from a help center, a folder or an export")
    sub = knowledge.add_subparsers(dest="knowledge_command", required=True)
    add = sub.add_parser("import", help="import (or re-import) SOURCE: an http(s) help-center URL, a folder of "
                                        "Markdown/HTML/text/PDF files, or a Zendesk or Intercom articles JSON export")
    add.add_argument("source")
    add.add_argument("--max-pages", type=int, default=None,
                     help="pages to read from a web source at most (default: SUPPORTBOT_KNOWLEDGE_IMPORT_MAX_PAGES)")
    sub.add_parser("sync", help="re-read every imported source: changed pages updated, removed ones dropped")
    sub.add_parser("list", help="imported sources, entry counts, last sync")
    remove = sub.add_parser("remove", help="forget SOURCE and everything imported from it")
    remove.add_argument("source")
