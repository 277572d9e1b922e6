"""Synthetic data: a conversation log of N messages, and knowledge bases of N known issues.

The log is written straight into a migrated database with executemany in large transactions (COPY on
PostgreSQL), about one conversation per six messages (three turns), with the columns a real log has:
provider, models, prompt version and snapshot, tokens, cost, latency, misses, reviews, thumbs up and
down, corrections, escalations. It is seeded, so every run builds the same rows; the SQLite file is
kept under bench/work/data/ and reused while the generator version is unchanged.
"""

from __future__ import annotations

import hashlib
import random
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from service.knowledge import KnownIssue, parse_knowledge_file, slugify
from service.models import Base

from .profiles import QUESTIONS
from .targets import ROOT

GENERATOR_VERSION = 3
MESSAGES_PER_CONVERSATION = 6
_NOW = datetime(2026, 11, 1, tzinfo=UTC)
_FOLLOW_UPS = ["Thanks, and can I do that for the whole team?", "Where exactly is that setting?",
               "Does this also work on the mobile app?", "Ok. How long does it take to apply?",
               "Is there a way to automate this via the API?", "Great, and what about older reports?"]
_CONTACT_BITS = ["You can reach me at jane.doe{n}@example.com", "my phone is +1 415 555 {n:04d}",
                 "our account id is ACME-{n}", "I'm on version 4.{n} of the desktop app"]


def _knowledge() -> list[KnownIssue]:
    issues: list[KnownIssue] = []
    for path in sorted((ROOT / "knowledge").glob("*.md")):
        issues += parse_knowledge_file(path)
    return issues


def _stamp(value: datetime) -> str:
    # The format SQLAlchemy's SQLite DateTime type writes and reads back.
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


class LogRows:
    """The rows of a synthetic conversation log, table by table, in insertion order."""

    def __init__(self, messages: int, seed: int = 7) -> None:
        self.conversations = max(1, messages // MESSAGES_PER_CONVERSATION)
        self.messages = messages
        self.random = random.Random(seed)
        self.issues = _knowledge()
        self.replies = {issue.id: f"**{issue.title}**\n\n{issue.solution}" for issue in self.issues}
        self.corrected = {issue.id: f"Corrected: {issue.solution}" for issue in self.issues}
        self.snapshots = [(hashlib.sha256(f"snapshot-{v}".encode()).hexdigest(), "support", v,
                           f"You are a helpful support agent (prompt {v}). " * 80) for v in ("v1", "v2")]
        self.conversation_rows: list[tuple[Any, ...]] = []
        self.message_rows: list[tuple[Any, ...]] = []
        self.feedback_rows: list[tuple[Any, ...]] = []
        self.correction_rows: list[tuple[Any, ...]] = []
        self.escalation_rows: list[tuple[Any, ...]] = []

    def build(self) -> LogRows:
        """Generate every row (about 1 GB of Python objects per million messages)."""
        message_id = 0
        remaining = self.messages
        for index in range(self.conversations):
            count = MESSAGES_PER_CONVERSATION if index < self.conversations - 1 else remaining
            remaining -= count
            message_id = self._conversation(message_id, count)
        return self

    def _conversation(self, message_id: int, count: int) -> int:
        rnd = self.random
        conversation_id = uuid.UUID(int=rnd.getrandbits(128)).hex
        created = _NOW - timedelta(seconds=rnd.randrange(180 * 86400))
        version = "v2" if rnd.random() < 0.8 else "v1"
        sha = self.snapshots[version == "v2"][0]
        counters = {"miss": 0, "unreviewed": 0, "down": 0}
        escalated = False
        at = created
        user_id = None
        for n in range(count):
            message_id += 1
            at += timedelta(seconds=rnd.randrange(5, 90))
            if n % 2 == 0:
                self.message_rows.append(self._user_message(message_id, conversation_id, n, at))
                user_id = message_id
                continue
            issue = rnd.choice(self.issues)
            misses: list[str] = []
            review = None
            roll = rnd.random()
            if roll < 0.03:
                review = "good"
            elif roll < 0.04:
                review, misses = "flagged", ["flagged"]
            if rnd.random() < 0.05:
                rating = "down" if rnd.random() < 0.4 else "up"
                self.feedback_rows.append((message_id, rating, None, _stamp(at), _stamp(at)))
                if rating == "down":
                    misses.append("thumbs_down")
                    counters["down"] += 1
            if rnd.random() < 0.02:
                misses.append("escalated")
                escalated = True
                self.escalation_rows.append((conversation_id, user_id, "model_decision", "the model asked for a person",
                                             "Customer needs a person.", None, _stamp(at), None, None))
            if misses:
                counters["miss"] += 1
                if rnd.random() < 0.5:
                    self.correction_rows.append((message_id, self.corrected[issue.id], "dana", _stamp(at)))
                elif review is None:
                    counters["unreviewed"] += 1
            tokens_in, tokens_out = rnd.randint(900, 1600), rnd.randint(60, 220)
            self.message_rows.append((
                message_id, conversation_id, "assistant", self.replies[issue.id], None, user_id,
                "openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", "support", version, sha, tokens_in, tokens_out,
                round(tokens_in * 0.15e-6 + tokens_out * 0.6e-6, 8), rnd.randint(700, 4000), "ok", None, None, None,
                ",".join(sorted(set(misses))) or None, review, issue.id, _stamp(at), "model"))
        status = "escalated" if escalated and rnd.random() < 0.5 else ("resolved" if escalated else "open")
        self.conversation_rows.append((
            conversation_id, status, (count + 1) // 2, None, _stamp(created), _stamp(at), f"support@{version}",
            counters["miss"], counters["unreviewed"], counters["down"], escalated, rnd.random() < 0.01))
        return message_id

    def _user_message(self, message_id: int, conversation_id: str, n: int, at: datetime) -> tuple[Any, ...]:
        rnd = self.random
        text = rnd.choice(QUESTIONS) if n == 0 else rnd.choice(_FOLLOW_UPS)
        if rnd.random() < 0.05:
            text += ". " + rnd.choice(_CONTACT_BITS).format(n=rnd.randrange(10000))
        return (message_id, conversation_id, "user", text, None, None, None, None, None, None, None, None, None,
                None, None, None, "ok", None, None, None, None, None, None, _stamp(at), "visitor")


CONVERSATION_COLUMNS = ("id", "status", "user_turns", "visitor", "created_at", "updated_at", "prompt_version",
                        "miss_count", "unreviewed_misses", "thumbs_down", "escalated_ever", "exclude_from_training")
MESSAGE_COLUMNS = ("id", "conversation_id", "role", "content", "client_message_id", "reply_to_id", "provider",
                   "model_requested", "model_reported", "prompt_name", "prompt_version", "prompt_sha256",
                   "tokens_in", "tokens_out", "cost_usd", "latency_ms", "status", "tool_calls", "corrects_id",
                   "author", "miss_reasons", "review", "known_issue", "created_at", "origin")
FEEDBACK_COLUMNS = ("message_id", "rating", "comment", "created_at", "updated_at")
CORRECTION_COLUMNS = ("message_id", "content", "author", "created_at")
ESCALATION_COLUMNS = ("conversation_id", "message_id", "reason", "detail", "summary", "contact", "created_at",
                      "resolved_at", "resolved_by")
SNAPSHOT_COLUMNS = ("sha256", "prompt_name", "prompt_version", "content", "created_at")


def _tables(rows: LogRows) -> Iterator[tuple[str, tuple[str, ...], list[tuple[Any, ...]]]]:
    snapshots = [(*s, _stamp(_NOW - timedelta(days=200))) for s in rows.snapshots]
    yield "prompt_snapshots", SNAPSHOT_COLUMNS, snapshots
    yield "conversations", CONVERSATION_COLUMNS, rows.conversation_rows
    yield "messages", MESSAGE_COLUMNS, rows.message_rows
    yield "feedback", FEEDBACK_COLUMNS, rows.feedback_rows
    yield "corrections", CORRECTION_COLUMNS, rows.correction_rows
    yield "escalations", ESCALATION_COLUMNS, rows.escalation_rows


def sqlite_log(directory: Path, messages: int) -> tuple[Path, dict[str, int], bool]:
    """A migrated SQLite file holding `messages` messages: (path, row counts, whether it was reused)."""
    from service.db import head_revision, upgrade

    directory.mkdir(parents=True, exist_ok=True)
    # Named by the schema too: a file built before a migration has other tables, and is not reused.
    path = directory / f"log-{messages}-v{GENERATOR_VERSION}-schema{head_revision()}.db"
    done = path.with_suffix(".done")
    if path.exists() and done.exists():
        return path, _counts_sqlite(path), True
    for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"), done):
        stale.unlink(missing_ok=True)
    upgrade(f"sqlite:///{path}")
    rows = LogRows(messages).build()
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=OFF")
    for table, columns, data in _tables(rows):
        marks = ", ".join("?" * len(columns))
        for start in range(0, len(data), 100_000):
            with connection:
                connection.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",
                                       data[start:start + 100_000])
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    done.write_text("ok\n")
    return path, _counts_sqlite(path), False


def _counts_sqlite(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as connection:
        return {table.name: connection.execute(f"SELECT count(*) FROM {table.name}").fetchone()[0]
                for table in Base.metadata.sorted_tables}


def postgres_log(url: str, messages: int) -> dict[str, int]:
    """Load the same rows into a migrated PostgreSQL database (COPY), then ANALYZE as autovacuum would."""
    import psycopg

    from service.db import upgrade

    upgrade(url)
    rows = LogRows(messages).build()
    plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
    counts = {}
    with psycopg.connect(plain) as connection:
        connection.execute("SET TIME ZONE 'UTC'")
        for table, columns, data in _tables(rows):
            with connection.cursor() as cursor, cursor.copy(
                    f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in data:
                    copy.write_row(row)
            counts[table] = len(data)
        # Ids were given explicitly: move the sequences past them, as a real log's would be.
        for table in ("messages", "feedback", "corrections", "escalations"):
            connection.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                               f"(SELECT coalesce(max(id), 1) FROM {table}))")
        connection.commit()
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute("ANALYZE")
    return counts


def synthetic_issues(count: int, seed: int = 11) -> list[KnownIssue]:
    """`count` known issues built from the words of the real knowledge base, with unique titles."""
    rnd = random.Random(seed)
    real = _knowledge()
    words = sorted({w.lower().strip(".,:;()\"'") for issue in real for w in issue.solution.split()
                    if len(w) > 3 and w.isascii()})
    topics = sorted({k for issue in real for k in issue.keywords})
    issues = []
    for n in range(count):
        base = real[n % len(real)]
        title = f"{base.title} ({rnd.choice(topics)} {n})"
        keywords = tuple(rnd.sample(topics, 5))
        solution = " ".join(rnd.choice(words) for _ in range(rnd.randint(40, 90))) + "."
        issues.append(KnownIssue(id=slugify(title), title=title, keywords=keywords, solution=solution,
                                 escalate=False, source=f"synthetic:{n}"))
    return issues
