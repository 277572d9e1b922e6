"""Migrations build exactly the schema of the models; SQLite runs durable and concurrent-friendly."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, select, text, update

from service.db import (
    DatabaseThreads,
    create_db_engine,
    current_revision,
    head_revision,
    make_session_factory,
    upgrade,
    work,
)
from service.models import Base, Conversation


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


def test_work_commits_its_core_statements_and_its_sessions_changes_as_one_transaction(database_url: str) -> None:
    engine = create_db_engine(database_url)
    factory = make_session_factory(engine)
    table = Conversation.__table__

    def turns(conversation_id: str) -> int | None:
        with engine.connect() as connection:
            return connection.scalar(select(table.c.user_turns).where(table.c.id == conversation_id))

    with work(factory) as unit:
        unit.session.add(Conversation(id="c-orm", user_turns=1))  # left for `work` to flush
        unit.connection.execute(table.insert().values(id="c-core", status="open", user_turns=2))
    assert (turns("c-orm"), turns("c-core")) == (1, 2)

    with work(factory) as unit:  # a session made after the Core statements joins the same transaction
        unit.connection.execute(update(table).where(table.c.id == "c-core").values(user_turns=3))
        conversation = unit.session.get(Conversation, "c-orm")
        assert conversation is not None
        conversation.user_turns = 4
    assert (turns("c-orm"), turns("c-core")) == (4, 3)

    with pytest.raises(RuntimeError), work(factory) as unit:
        unit.connection.execute(update(table).where(table.c.id == "c-core").values(user_turns=30))
        unit.session.add(Conversation(id="c-lost", user_turns=5))
        unit.session.flush()
        raise RuntimeError("the turn failed")
    assert (turns("c-core"), turns("c-lost")) == (3, None), "an error rolls back both kinds of change"

    with work(factory) as unit:
        unit.connection.execute(update(table).where(table.c.id == "c-core").values(user_turns=6))
    assert turns("c-core") == 6, "no session asked for: the Core statements alone are committed"
    engine.dispose()


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The common umask 022, under which SQLite on its own makes a world-readable 0644 file."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_db_upgrade_creates_a_database_only_its_owner_can_read(tmp_path: Path, usual_umask: None) -> None:
    supportbot = str(Path(sys.executable).parent / "supportbot")
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("SUPPORTBOT_", "OPENAI_"))}
    environment["SUPPORTBOT_DATA_DIR"] = str(tmp_path / "data")

    result = subprocess.run([supportbot, "db", "upgrade"], capture_output=True, text=True, env=environment,
                            cwd=tmp_path, timeout=120)

    assert result.returncode == 0, result.stderr
    assert _mode(tmp_path / "data" / "supportbot.db") == 0o600


def test_a_new_sqlite_database_and_its_wal_files_are_private(tmp_path: Path, usual_umask: None) -> None:
    path = tmp_path / "bot.db"
    upgrade(f"sqlite:///{path}")
    engine = create_db_engine(f"sqlite:///{path}")

    with engine.begin() as connection:  # an open writer keeps the -wal and -shm files in place
        connection.execute(text("CREATE TABLE scratch (x INTEGER)"))
        connection.execute(text("INSERT INTO scratch VALUES (1)"))
        modes = {p.name: _mode(p) for p in tmp_path.iterdir()}
    engine.dispose()

    assert modes == {"bot.db": 0o600, "bot.db-wal": 0o600, "bot.db-shm": 0o600}


def test_an_existing_world_readable_database_is_left_alone_with_a_warning(
    tmp_path: Path, sqlite_template: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "shared.db"
    path.write_bytes(sqlite_template.read_bytes())
    path.chmod(0o644)

    with caplog.at_level(logging.WARNING, logger="service.db"):
        engine = create_db_engine(f"sqlite:///{path}")
        assert current_revision(engine) == head_revision()
        engine.dispose()

    assert _mode(path) == 0o644, "the owner's chosen mode is not changed behind their back"
    [warning] = [r.getMessage() for r in caplog.records if r.name == "service.db"]
    assert str(path) in warning and "0644" in warning and "chmod 600" in warning
