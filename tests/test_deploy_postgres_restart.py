"""PostgreSQL restarted under traffic: requests fail fast with 503 while it is down, and the same running
`supportbot serve` answers again once it is back, without a restart.

The database is a private PostgreSQL cluster this test creates (initdb) and restarts (pg_ctl) in tmp_path on a
free port; the machine's shared server is never touched.
"""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import stat
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from .deploy_support import require
from .processes import ServiceProcess, free_port

pytestmark = pytest.mark.postgres

QUESTION = "How do I export a dashboard?"


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian: /usr/lib/postgresql/<version>/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


class Cluster:
    """A PostgreSQL cluster in `directory` on 127.0.0.1:`port`, run as an unprivileged user when we are root."""

    def __init__(self, directory: Path, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.data = directory / "pgdata"
        self.log = directory / "postgres.log"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/supportbot"
        self._as_user: Callable[[], None] | None = None
        self._directory = directory
        if os.geteuid() == 0:
            # initdb and postgres refuse to run as root: the `postgres` account runs them.
            account = pwd.getpwnam("postgres")

            def as_postgres() -> None:
                os.setgid(account.pw_gid)
                os.setuid(account.pw_uid)

            self._as_user = as_postgres
            os.chown(directory, account.pw_uid, account.pw_gid)

    def _let_the_account_in(self) -> None:
        """Make tmp_path's folders passable (not readable) for the account. Before every call: a pytest session
        starting meanwhile (another checkout's) sets its base folder back to 0700. The server, once started,
        works inside its data folder and needs no path to it."""
        if self._as_user is None:
            return
        for folder in [self._directory, *self._directory.parents]:
            if folder in (Path("/tmp"), Path("/")):
                break
            folder.chmod(folder.stat().st_mode | stat.S_IXOTH)

    def _run(self, *args: str) -> None:
        self._let_the_account_in()
        result = subprocess.run([str(self.bin / args[0]), *args[1:]], preexec_fn=self._as_user,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{args[0]} failed: {result.stderr}\n{self.log_text()}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        self.start()
        engine = create_engine(self.url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(text("CREATE DATABASE supportbot"))
        engine.dispose()

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o",
                  f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    bin_dir = postgres_bin()
    require(bin_dir is not None, "PostgreSQL's server programs (/usr/lib/postgresql/*/bin)")
    assert bin_dir is not None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            require(False, "a `postgres` account to run a private cluster as")
    created = Cluster(tmp_path, bin_dir)
    created.init()
    try:
        yield created
    finally:
        if created.running():
            created.stop()


@dataclass
class Outcome:
    """One request of the steady sender: when it started, how long it took, what came back."""

    started: float
    seconds: float
    status: int | str


async def _steady_sender(base: str, stop: threading.Event, outcomes: list[Outcome]) -> None:
    """A visitor who keeps sending; a 503 or error is recorded and the next message follows."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        conversation: dict[str, str] | None = None
        while not stop.is_set():
            began = time.monotonic()
            try:
                if conversation is None:
                    response = await client.post("/api/conversations")
                    if response.status_code == 201:
                        conversation = response.json()
                else:
                    response = await client.post(
                        f"/api/conversations/{conversation['conversation_id']}/messages",
                        headers={"Authorization": f"Bearer {conversation['token']}"},
                        json={"content": QUESTION, "client_message_id": uuid.uuid4().hex})
                status: int | str = response.status_code
            except httpx.HTTPError as error:
                status = type(error).__name__
            outcomes.append(Outcome(began, time.monotonic() - began, status))
            await asyncio.sleep(0.05)


def _wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not within {seconds:g} s: {what}"
        time.sleep(0.1)


def test_postgres_restart_under_traffic_fails_fast_with_503_and_recovers_without_a_restart(
    tmp_path: Path, cluster: Cluster
) -> None:
    (tmp_path / "service").mkdir()
    service = ServiceProcess(tmp_path / "service", SUPPORTBOT_DATABASE_URL=cluster.url, SUPPORTBOT_LOG_LEVEL="WARNING",
                             SUPPORTBOT_RATE_LIMIT_PER_IP="0", SUPPORTBOT_RATE_LIMIT_PER_VISITOR="0",
                             SUPPORTBOT_RATE_LIMIT_CONVERSATIONS_PER_IP="0", SUPPORTBOT_MAX_TURNS="100000")
    service.migrate()
    service.start()
    assert service.process is not None
    pid = service.process.pid
    stop = threading.Event()
    outcomes: list[Outcome] = []
    sender = threading.Thread(target=asyncio.run, args=(_steady_sender(service.base, stop, outcomes),))
    sender.start()
    try:
        _wait_for(lambda: any(o.status == 200 for o in outcomes), 30, "a message answered before the restart")
        cluster.stop()
        down_at = time.monotonic()  # after the stop returned: a request started while it was stopping may succeed
        _wait_for(lambda: sum(1 for o in outcomes if o.started > down_at) >= 5, 30, "requests while it is down")
        ready_while_down = httpx.get(f"{service.base}/readyz", timeout=10)
        alive_while_down = httpx.get(f"{service.base}/healthz", timeout=10)
        up_at = time.monotonic()
        cluster.start()
        _wait_for(lambda: any(o.status == 200 and o.started > up_at for o in outcomes), 30,
                  "a message answered after the restart")
        ready_after = httpx.get(f"{service.base}/readyz", timeout=10)
    finally:
        stop.set()
        sender.join(timeout=60)
        service.stop()

    during = [o for o in outcomes if down_at < o.started and o.started + o.seconds < up_at]
    assert during, "requests were sent while the database was down"
    assert {o.status for o in during} == {503}, f"while down: {sorted({str(o.status) for o in during})}"
    assert max(o.seconds for o in during) < 5, "a request waits no longer than a few seconds for a dead database"
    assert ready_while_down.status_code == 503 and alive_while_down.status_code == 200
    assert ready_after.status_code == 200
    assert service.process.pid == pid, "the same process recovered"
    unexpected = {str(o.status) for o in outcomes} - {"200", "201", "503"}
    assert not unexpected, f"only answers, created conversations and 503s: {unexpected}"
