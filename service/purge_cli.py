"""`supportbot purge [--older-than 30d] [--dry-run]`: apply the retention policy by hand, saying what it removes."""

from __future__ import annotations

import argparse
import re
import sys

from .config import Settings
from .retention import PurgeReport, purge, retention_policy

ACTOR = "cli"
_AGE = re.compile(r"^\s*(\d+)\s*d?\s*$")
_VERBS = {"delete": ("delete", "deleted"), "anonymize": ("anonymize", "anonymized"),
          "redact": ("redact", "redacted")}


def age_days(text: str) -> int:
    """`30d` or `30` -> 30 (days); at least 1."""
    match = _AGE.match(text)
    if match is None or int(match.group(1)) < 1:
        raise argparse.ArgumentTypeError(f"expected a number of days like 30d, got {text!r}")
    return int(match.group(1))


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The `purge` subcommand."""
    parser = commands.add_parser("purge", help="delete (or anonymize) conversations past the retention period")
    parser.add_argument("--older-than", type=age_days, metavar="DAYS",
                        help="e.g. 30d: conversations with no activity for longer (default: "
                             "SUPPORTBOT_RETENTION_DAYS)")
    parser.add_argument("--dry-run", action="store_true", help="print what would be removed; change nothing")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Purge and print each conversation and the rows per table; 2 when no retention period is known."""
    from .db import command_sessions

    days = args.older_than or settings.retention_days
    if not days:
        print("error: retention is off: set SUPPORTBOT_RETENTION_DAYS or pass --older-than 30d", file=sys.stderr)
        return 2
    policy = retention_policy(days, settings.retention_mode, settings.training_retention_days)
    with command_sessions(settings.resolved_database_url) as sessions:
        report = purge(sessions, policy, dry_run=args.dry_run, actor=ACTOR)
    print(format_report(report, days, settings.training_retention_days if policy.keeps_training else 0))
    return 0


def format_report(report: PurgeReport, days: int, training_days: int) -> str:
    """One line per conversation, then the totals."""
    kept = f"; reviewed training examples kept {training_days} days, redacted" if training_days else ""
    lines = [f"{'Would purge' if report.dry_run else 'Purged'} conversations with no activity for {days} days{kept}:"]
    for item in report.items:
        verb = _VERBS[item.action][0 if report.dry_run else 1]
        lines.append(f"  {verb:<10} {item.conversation_id}  last activity {item.last_activity:%Y-%m-%d %H:%M}  "
                     f"{item.messages} messages")
    if not report.items:
        lines.append("  nothing to do")
    counts = ", ".join(f"{count} {_VERBS[action][0 if report.dry_run else 1]}"
                       for action, count in sorted(report.counts().items()))
    if report.dry_run:
        lines.append(f"dry run: {counts or 'nothing'} would change; run without --dry-run to apply")
    else:
        rows = ", ".join(f"{table} {count}" for table, count in sorted(report.rows.items()))
        lines.append(f"{counts or 'nothing changed'}" + (f" (rows touched: {rows})" if rows else ""))
    return "\n".join(lines)
