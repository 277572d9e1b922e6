"""Migrations build exactly the schema of the models; SQLite runs durable and concurrent-friendly."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import anyio
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from service.db import DatabaseThreads, create_db_engine, current_revision, head_revision, upgrade
from service.models import Base


def test_migrations_on_a_blank_database_match_the_models(database_url: str) -> None:
    engine = create_engine(database_url)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()

    assert differences == []


def test_database_is_at_head_and_has_the_core_tables(database_url: str) -> None:
    engine = create_db_engine(database_url)

    assert current_revision(engine) == head_revision()
    assert {"conversations", "messages", "prompt_snapshots", "escalations", "feedback"} <= set(
        inspect(engine).get_table_names())
    engine.dispose()


def test_upgrade_creates_the_sqlite_file_and_its_directory(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "new" / "dir" / "bot.db"

    upgrade(f"sqlite:///{path}")

    assert path.exists()


def test_sqlite_uses_wal_and_full_sync(sqlite_url: str) -> None:
    engine = create_db_engine(sqlite_url)
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
    engine.dispose()


async def test_a_turns_database_calls_run_at_most_size_at_a_time() -> None:
    threads = DatabaseThreads(2)
    running, peak = 0, 0
    lock = threading.Lock()

    def call(n: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        return n * 10

    async with anyio.create_task_group() as group:
        results: list[int] = []

        async def one(n: int) -> None:
            results.append(await threads.run(call, n))

        for n in range(8):
            group.start_soon(one, n)

    assert sorted(results) == [n * 10 for n in range(8)]
    assert peak == 2
    threads.shutdown()
    assert await threads.run(call, 7) == 70, "usable again after a shutdown (the app's lifespan can restart)"
    threads.shutdown()


def test_database_threads_default_to_two_on_sqlite_and_four_on_postgresql(tmp_path: Path) -> None:
    sqlite = create_db_engine(f"sqlite:///{tmp_path / 'x.db'}")
    postgres = create_engine("postgresql+psycopg://nobody@127.0.0.1:9/none")  # never connected

    assert DatabaseThreads.for_engine(sqlite).size == 2
    assert DatabaseThreads.for_engine(postgres).size == 4
    assert DatabaseThreads.for_engine(postgres, configured=6).size == 6
    sqlite.dispose()
