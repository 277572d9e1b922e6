"""Engine, transactions and migrations: the one place that knows how to reach the database."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from anyio import CancelScope
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from .shipped import shipped_dir

T = TypeVar("T")

log = logging.getLogger(__name__)


def normalize_url(url: str) -> str:
    """Use psycopg 3 for plain `postgresql://` URLs (the driver this project installs)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the writer; FULL makes each commit durable across power loss.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _prepare_sqlite_file(url: str) -> None:
    """Create a SQLite database's directory, and its file with mode 0600 before SQLite makes it 0644."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return
    if parsed.query.get("uri"):  # a `file:` URI is SQLite's to interpret, not a path
        return
    path = Path(parsed.database)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # An empty file is a valid empty database. SQLite gives the -wal and -shm files the mode of
        # the database file, so they are private too. O_EXCL: a file another process made is left alone.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        _warn_if_readable_by_others(path)


_warned_paths: set[Path] = set()


def _warn_if_readable_by_others(path: Path) -> None:
    """Say once per process that an existing database is open to other users; its mode is the owner's call."""
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:  # e.g. a dangling symlink: SQLite will say what is wrong when it opens it
        return
    if mode & 0o077 and path not in _warned_paths:
        _warned_paths.add(path)
        log.warning("database file %s has mode %04o: other users on this machine may read the conversations; "
                    "run `chmod 600 %s` (and its -wal and -shm files)", path, mode, path)


def create_db_engine(url: str) -> Engine:
    """An engine for SQLite (WAL, synchronous=FULL) or PostgreSQL."""
    url = normalize_url(url)
    _prepare_sqlite_file(url)
    if make_url(url).get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"check_same_thread": False}, pool_size=8)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit, so results outlive the transaction."""
    factory = sessionmaker(engine, expire_on_commit=False)
    # SQLite has one writer at a time. Queueing this process's writers on a lock is fair and cheap;
    # left to SQLite's busy handler, dozens of threads poll with growing sleeps and some time out
    # under load ("database is locked"). Other processes still wait through busy_timeout.
    _write_locks[id(factory)] = threading.Lock() if engine.dialect.name == "sqlite" else None
    return factory


@contextmanager
def command_sessions(url: str) -> Iterator[sessionmaker[Session]]:
    """Sessions for one command-line run: an engine opened for it and disposed when the command ends."""
    engine = create_db_engine(url)
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()


_write_locks: dict[int, threading.Lock | None] = {}


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    with _writer(factory), factory() as session, session.begin():
        yield session


def _writer(factory: sessionmaker[Session]) -> AbstractContextManager[object]:
    """This process's write lock for the factory's database (SQLite), or nothing to wait for (PostgreSQL)."""
    lock = _write_locks.get(id(factory))
    return lock if lock is not None else nullcontext()


class Work:
    """One transaction's Core connection, and an ORM session on that same connection only when a caller asks.

    The turn's two writes are Core statements; the ORM's session costs more to open, commit and close than those
    statements cost to run (bench/findings.md, 0k), so it is made only for the rare paths that use the ORM (an
    escalation, usage budgets, review counters). Its changes are flushed into the transaction before the commit.
    """

    def __init__(self, connection: Connection, factory: sessionmaker[Session]) -> None:
        self.connection = connection
        self._factory = factory
        self._session: Session | None = None

    @property
    def session(self) -> Session:
        """An ORM session inside this transaction (it never commits or ends it: `work` does)."""
        if self._session is None:
            self._session = self._factory(bind=self.connection, join_transaction_mode="rollback_only")
        return self._session


@contextmanager
def work(factory: sessionmaker[Session]) -> Iterator[Work]:
    """One unit of work on a Core connection, as `transaction`: commit on success, roll back on any error."""
    engine: Engine = factory.kw["bind"]
    with _writer(factory), engine.begin() as connection:
        unit = Work(connection, factory)
        try:
            yield unit
            if unit._session is not None:
                unit._session.flush()
        finally:
            if unit._session is not None:
                unit._session.close()


class DatabaseThreads:
    """Runs a turn's blocking database calls on a small pool of worker threads of its own.

    Dozens of threads each doing a short transaction spend more CPU handing the GIL (and SQLite's
    write lock) around than on the work: in the benchmark, anyio's 40 shared worker threads doubled the
    CPU per turn at 50 and 200 concurrent conversations. A plain executor is used rather than a limit
    on anyio's threads, because a thread there is handed the next call only when the event loop gets
    round to it; here a free thread takes the next queued call at once, however busy the loop is.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._executor: ThreadPoolExecutor | None = None

    @classmethod
    def for_engine(cls, engine: Engine, configured: int = 0) -> DatabaseThreads:
        """`configured` threads, or by default 2 for SQLite and 4 for PostgreSQL."""
        return cls(configured or (2 if engine.dialect.name == "sqlite" else 4))

    async def run(self, func: Callable[..., T], *args: Any) -> T:
        """`func(*args)` on one of the threads; like anyio's threads, a cancelled caller still waits for it."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.size, thread_name_prefix="supportbot-db")
        future = asyncio.wrap_future(self._executor.submit(func, *args))
        with CancelScope(shield=True):
            result = await future
        return result

    def shutdown(self) -> None:
        """Stop the threads once their calls are done; a later call starts new ones (as engines re-pool)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)


def ping(engine: Engine) -> None:
    """Raise if the database cannot answer a trivial query."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def alembic_config(url: str) -> Config:
    """Alembic configuration built in code, so no ini file has to be found at run time."""
    config = Config()
    config.set_main_option("script_location", str(shipped_dir("migrations")))
    config.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations up to `revision`."""
    _prepare_sqlite_file(normalize_url(url))
    command.upgrade(alembic_config(url), revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


class SchemaOutdated(Exception):
    """The database is not at the revision this code needs."""


def require_current_schema(url: str) -> None:
    """Raise SchemaOutdated, with the command to fix it, unless the database is migrated to head."""
    engine = create_db_engine(url)
    try:
        at, head = current_revision(engine), head_revision()
    finally:
        engine.dispose()
    if at != head:
        raise SchemaOutdated(f"database is at revision {at}, this code needs {head}: run `supportbot db upgrade`")


def head_revision() -> str | None:
    """The newest revision of the shipped migrations."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
