"""On SQLite a turn's transactions run on the event loop while no other writer holds the lock, and move to the
database threads, before doing anything, when one does: the loop never waits for another writer.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, event, select, text

from service.config import Settings
from service.db import DatabaseThreads, _write_locks, create_db_engine, make_session_factory, transaction
from service.models import Message
from service.runtime import Runtime

from .conftest import make_settings
from .factories import send, start_conversation


@pytest.fixture
def settings(tmp_path: Path, sqlite_url: str) -> Settings:
    return make_settings(tmp_path, sqlite_url)


@contextmanager
def commit_threads(engine: Engine) -> Iterator[list[str]]:
    """The name of the thread of every commit on `engine` while the block runs."""
    names: list[str] = []

    def record(_connection: object) -> None:
        names.append(threading.current_thread().name)

    event.listen(engine, "commit", record)
    try:
        yield names
    finally:
        event.remove(engine, "commit", record)


def stored(runtime: Runtime, conversation_id: str) -> list[str]:
    with runtime.log.sessions() as session:
        return list(session.scalars(select(Message.role).where(Message.conversation_id == conversation_id)
                                    .order_by(Message.id)))


def busy_timeouts(engine: Engine) -> set[int]:
    """`PRAGMA busy_timeout` of every connection the pool holds (checked out all at once, so each is seen)."""
    connections = [engine.connect() for _ in range(engine.pool.checkedin())]
    try:
        return {int(c.exec_driver_sql("PRAGMA busy_timeout").scalar_one()) for c in connections}
    finally:
        for connection in connections:
            connection.close()


async def test_a_turn_is_stored_on_the_event_loop_when_no_other_writer_holds_the_lock(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    conversation_id, auth = await start_conversation(client)
    loop_thread = threading.current_thread().name
    with commit_threads(runtime.log.engine) as threads:
        response = await send(client, conversation_id, auth, "How do I export to CSV?")
    assert response.status_code == 200, response.text
    assert threads == [loop_thread, loop_thread], "the message's and the reply's commits, both on the loop"
    assert stored(runtime, conversation_id) == ["user", "assistant"]
    assert busy_timeouts(runtime.log.engine) == {30000}, "a connection kept the loop's zero busy timeout"


@pytest.mark.parametrize("writer", ["another connection", "this process's database thread"])
async def test_another_writer_moves_the_turn_to_a_thread_and_the_loop_keeps_serving(
    client: httpx.AsyncClient, runtime: Runtime, writer: str
) -> None:
    conversation_id, auth = await start_conversation(client)
    release = threading.Event()
    holding = threading.Event()

    def hold_the_lock() -> None:
        if writer == "another connection":  # as another process (a second worker, a CLI command) would
            database = runtime.log.engine.url.database
            assert database is not None
            other = sqlite3.connect(database, isolation_level=None)
            other.execute("BEGIN IMMEDIATE")
            holding.set()
            release.wait(30)
            other.execute("COMMIT")
            other.close()
        else:
            with transaction(runtime.log.sessions):
                holding.set()
                release.wait(30)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    try:
        assert await asyncio.to_thread(holding.wait, 10)
        with commit_threads(runtime.log.engine) as threads:
            turn = asyncio.create_task(send(client, conversation_id, auth, "How do I export to CSV?"))
            ticks = 0
            while ticks < 20:  # the loop runs other work while the turn waits for the lock on a thread
                await asyncio.sleep(0.01)
                ticks += 1
            assert not turn.done(), "the turn went past a write lock another writer holds"
            release.set()
            response = await asyncio.wait_for(turn, 30)
    finally:
        release.set()
        holder.join(30)
    assert response.status_code == 200, response.text
    assert threads[0].startswith("supportbot-db"), threads
    assert stored(runtime, conversation_id) == ["user", "assistant"]
    assert busy_timeouts(runtime.log.engine) == {30000}


async def test_a_commit_that_fails_on_the_loop_stores_nothing_and_says_so(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    conversation_id, auth = await start_conversation(client)

    def fail_on_the_loop(_connection: object) -> None:
        if threading.current_thread() is threading.main_thread():
            from sqlalchemy.exc import OperationalError

            raise OperationalError("COMMIT", {}, Exception("disk I/O error"))

    event.listen(runtime.log.engine, "commit", fail_on_the_loop)
    try:
        refused = await send(client, conversation_id, auth, "How do I export to CSV?")
    finally:
        event.remove(runtime.log.engine, "commit", fail_on_the_loop)
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "database_unavailable"
    assert stored(runtime, conversation_id) == []
    again = await send(client, conversation_id, auth, "How do I export to CSV?")
    assert again.status_code == 200, again.text
    assert stored(runtime, conversation_id) == ["user", "assistant"]


async def test_switched_off_every_call_runs_on_the_threads(tmp_path: Path, sqlite_url: str) -> None:
    runtime = Runtime.build(make_settings(tmp_path, sqlite_url, db_on_loop=False))
    try:
        with commit_threads(runtime.log.engine) as threads:
            conversation = await runtime.db_threads.run(runtime.log.create_conversation, None)
        assert conversation.id and threads and all(name.startswith("supportbot-db") for name in threads)
    finally:
        await runtime.aclose()


async def test_a_call_that_committed_once_waits_for_the_lock_instead_of_starting_again(tmp_path: Path) -> None:
    """A second transaction of one call that finds the lock taken cannot move the call (its first transaction
    would run twice): it waits on the loop, as any writer does."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'two.db'}")
    sessions = make_session_factory(engine)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, step TEXT)"))
    threads = DatabaseThreads(1, on_loop=True)
    calls: list[str] = []
    other = sqlite3.connect(str(tmp_path / "two.db"), isolation_level=None, check_same_thread=False)

    def two_transactions() -> None:
        calls.append(threading.current_thread().name)
        with transaction(sessions) as session:
            session.execute(text("INSERT INTO t (step) VALUES ('first')"))
        other.execute("BEGIN IMMEDIATE")  # another writer takes the lock between the two
        threading.Timer(0.2, lambda: other.execute("COMMIT")).start()
        with transaction(sessions) as session:
            session.execute(text("INSERT INTO t (step) VALUES ('second')"))

    try:
        await threads.run(two_transactions)
        with engine.connect() as connection:
            steps = list(connection.execute(text("SELECT step FROM t ORDER BY id")).scalars())
        assert calls == [threading.current_thread().name] and steps == ["first", "second"]
    finally:
        other.close()
        threads.shutdown()
        _write_locks.pop(id(sessions), None)
        engine.dispose()
