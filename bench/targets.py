"""The servers under test: start each on a loopback port, pinned, and stop it afterwards.

1. `mock`: the mock upstream itself (what latency is added to); 2. `relay`: the floor of issue 20,
a minimal FastAPI + openai relay speaking supportbot's API (bench/relay.py); 3. `passthrough`: an
OpenAI-protocol proxy that re-serializes every chunk (bench/passthrough.py, not the floor);
4. `supportbot-sqlite` and 5. `supportbot-postgres`: the full path, one worker;
6. `supportbot-sqlite-w2`: the same with `serve --workers 2`; 7. `supportbot-postgres-r2`: two replicas of
supportbot on one PostgreSQL database behind nginx with deploy/nginx.conf; 8. `litellm`: LiteLLM's proxy.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .nginx import NGINX_CONF, nginx_binary, nginx_command, render_nginx_conf
from .procstat import CpuPlan, pin_tree, process_tree

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
PG_ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
MODEL = "gpt-4o-mini"
# What supportbot sends: the shipped prompt versions' max_tokens (prompts/support/*.md.j2 front matter).
MAX_TOKENS = 400


@dataclass
class Target:
    """A running server and how to reach and measure it."""

    name: str
    label: str
    kind: str  # "openai" (POST /v1/chat/completions) or "supportbot"
    port: int
    process: subprocess.Popen[bytes]
    # Other processes whose CPU is part of this target's cost, counted apart: the PostgreSQL backends and a proxy.
    extra_pids: Callable[[], list[int]] = field(default=lambda: [])
    proxy_pids: Callable[[], list[int]] = field(default=lambda: [])
    # Further server processes beside `process` (the other replicas behind a proxy).
    members: list[subprocess.Popen[bytes]] = field(default_factory=list)
    cleanup: Callable[[], None] = field(default=lambda: None)
    version: str = ""
    api_key: str = "sk-bench"

    def pids(self) -> list[int]:
        """The server's processes (all workers, all replicas)."""
        return [pid for process in (self.process, *self.members) for pid in process_tree(process.pid)]

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and release what it created."""
        for process in (self.process, *self.members):
            _terminate(process)
        self.cleanup()


def _terminate(process: subprocess.Popen[bytes], signal_number: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(signal_number)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(port: int, path: str, process: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    """Poll GET `path` until the server answers; fail with its log when it died or never answered."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}; log {log}:\n{_tail(log)}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
                if response.status < 500:
                    return
        time.sleep(0.2)
    raise RuntimeError(f"server on port {port} not ready after {timeout:.0f} s; log {log}:\n{_tail(log)}")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _spawn(args: list[str], env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    # Started unpinned, so several start-ups (mostly imports) use every core; pinned once ready.
    handle = log.open("wb")
    return subprocess.Popen(args, env=env, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT)


def _ready(process: subprocess.Popen[bytes], port: int, path: str, timeout: float, log: Path,
           cores: frozenset[int] | None) -> None:
    try:
        wait_ready(port, path, process, timeout, log)
    except BaseException:
        # A server that never answered is skipped; it must not run on (workers and all) beside the benchmark.
        _stop_tree(process)
        raise
    pin_tree(process.pid, cores)


def _stop_tree(process: subprocess.Popen[bytes]) -> None:
    """Stop `process` (SIGTERM, then SIGKILL) and kill whatever of its descendants is left."""
    tree = process_tree(process.pid)
    _terminate(process)
    for pid in tree[1:]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _base_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONHASHSEED")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def start_mock(work: Path, plan: CpuPlan, timing: dict[str, float], workers: int) -> Target:
    """The mock upstream, `workers` processes on the load generator's cores."""
    port = free_port()
    env = _base_env() | {"MOCK_LATENCY_MS": str(timing["latency_ms"]), "MOCK_TTFT_MS": str(timing["ttft_ms"]),
                         "MOCK_CHUNKS": str(timing["chunks"]), "MOCK_INTERVAL_MS": str(timing["interval_ms"])}
    log = work / "mock.log"
    args = [sys.executable, "-m", "uvicorn", "bench.mock_upstream:app", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers), "--log-level", "warning", "--no-access-log", "--backlog", "4096",
            # Hosted APIs keep idle connections open far longer than uvicorn's 5 s default; a client that
            # does not retry (LiteLLM with num_retries 0) otherwise loses requests to the close race.
            "--timeout-keep-alive", "120"]
    process = _spawn(args, env, log, ROOT)
    _ready(process, port, "/health", 30, log, plan.clients)
    return Target("mock", "direct to the mock (no server in between)", "openai", port, process)


def start_relay(work: Path, plan: CpuPlan, upstream: str, app: str = "app") -> Target:
    """The floor: the minimal relay of bench/relay.py (`plain_app`: reading plain JSON), one worker, driven like
    supportbot."""
    port = free_port()
    env = _base_env() | {"RELAY_BASE_URL": upstream, "RELAY_MODEL": MODEL, "RELAY_MAX_TOKENS": str(MAX_TOKENS)}
    log = work / "relay.log"
    args = [sys.executable, "-m", "uvicorn", f"bench.relay:{app}", "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--log-level", "warning", "--no-access-log"]
    process = _spawn(args, env, log, ROOT)
    _ready(process, port, "/healthz", 30, log, plan.service)
    return Target("relay", "minimal relay (the floor): FastAPI + chat.completions.create", "supportbot", port,
                  process)


def start_passthrough(work: Path, plan: CpuPlan, upstream: str) -> Target:
    """The OpenAI-protocol proxy of bench/passthrough.py (not the floor), one worker."""
    port = free_port()
    env = _base_env() | {"PASSTHROUGH_BASE_URL": upstream}
    log = work / "passthrough.log"
    args = [sys.executable, "-m", "uvicorn", "bench.passthrough:app", "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--log-level", "warning", "--no-access-log"]
    process = _spawn(args, env, log, ROOT)
    _ready(process, port, "/healthz", 30, log, plan.service)
    return Target("passthrough", "OpenAI-protocol proxy (re-serializes every chunk)", "openai", port, process)


def supportbot_env(data_dir: Path, database_url: str, upstream: str) -> dict[str, str]:
    """The environment supportbot is benchmarked with (README's production-like settings)."""
    return _base_env() | {
        "SUPPORTBOT_DATA_DIR": str(data_dir), "SUPPORTBOT_DATABASE_URL": database_url,
        "SUPPORTBOT_OPENAI_API_KEY": "sk-bench", "SUPPORTBOT_OPENAI_BASE_URL": upstream,
        "SUPPORTBOT_MODEL": MODEL, "SUPPORTBOT_LOG_LEVEL": "WARNING", "SUPPORTBOT_MAX_TURNS": "100000",
        "SUPPORTBOT_RATE_LIMIT_PER_VISITOR": "0", "SUPPORTBOT_RATE_LIMIT_PER_IP": "0",
        "SUPPORTBOT_RATE_LIMIT_CONVERSATIONS_PER_IP": "0",
        "SUPPORTBOT_ADMIN_TOKEN": "bench-admin-token-0123456789",
        # It runs in its data directory; the defaults (./prompts, ./knowledge) are relative to that.
        "SUPPORTBOT_PROMPTS_DIR": str(ROOT / "prompts"), "SUPPORTBOT_KNOWLEDGE_DIR": str(ROOT / "knowledge"),
    }


def prepare_supportbot(env: dict[str, str]) -> Path:
    """The data directory of `env`, created, with its database migrated (`supportbot db upgrade`)."""
    data_dir = Path(env["SUPPORTBOT_DATA_DIR"])
    data_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(VENV_BIN / "supportbot"), "db", "upgrade"], env=env, cwd=data_dir, check=True,
                   capture_output=True)
    return data_dir


def _supportbot(name: str, label: str, work: Path, plan: CpuPlan, env: dict[str, str], workers: int = 1,
                log_name: str | None = None) -> Target:
    supportbot = str(VENV_BIN / "supportbot")
    data_dir = prepare_supportbot(env)
    log = work / f"{log_name or name}.log"
    port = free_port()
    args = [supportbot, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    process = _spawn(args, env, log, data_dir)
    # The targets start side by side on the machine's cores: about 3.5 s alone, supportbot took 47 s in the full
    # run of 2026-12-06, and `serve --workers 2` (three processes) more than the 60 s allowed before.
    _ready(process, port, "/healthz", 180, log, plan.service)
    return Target(name, label, "supportbot", port, process)


def start_supportbot_sqlite(work: Path, plan: CpuPlan, upstream: str, workers: int = 1) -> Target:
    """supportbot on its default SQLite file, in a fresh data directory, with `workers` worker processes."""
    data_dir = work / f"sb-sqlite-{uuid.uuid4().hex[:8]}"
    env = supportbot_env(data_dir, f"sqlite:///{data_dir / 'supportbot.db'}", upstream)
    if workers == 1:
        return _supportbot("supportbot-sqlite", "supportbot, SQLite", work, plan, env)
    return _supportbot(f"supportbot-sqlite-w{workers}", f"supportbot, SQLite, serve --workers {workers}", work,
                       plan, env, workers)


def create_pg_database(prefix: str) -> tuple[str, Callable[[], None]]:
    """A fresh PostgreSQL database; returns its SQLAlchemy URL and the function that drops it."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{name}", drop


def pg_backends(database: str) -> list[int]:
    """Pids of the PostgreSQL backends connected to `database`."""
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as connection:
        rows = connection.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,)).fetchall()
    return [row[0] for row in rows]


def postgres_available() -> str | None:
    """None when the benchmark's PostgreSQL answers, else why not."""
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except Exception as error:  # noqa: BLE001 - any failure means: skip the PostgreSQL target
        return f"{type(error).__name__}: {error}".strip()
    return None


def start_supportbot_postgres(work: Path, plan: CpuPlan, upstream: str) -> Target:
    """supportbot on a database created for this run (dropped when the target stops)."""
    url, drop = create_pg_database("sb_bench")
    database = url.rsplit("/", 1)[1]
    env = supportbot_env(work / f"sb-pg-{database}", url, upstream)
    try:
        target = _supportbot("supportbot-postgres", "supportbot, PostgreSQL", work, plan, env)
    except Exception:
        drop()
        raise
    target.extra_pids = lambda: pg_backends(database)
    target.cleanup = drop
    return target


def start_supportbot_replicas(work: Path, plan: CpuPlan, upstream: str, replicas: int = 2) -> Target:
    """`replicas` supportbot processes (one worker each) on one PostgreSQL database created for this run, behind
    nginx with deploy/nginx.conf, as the README's multi-replica deployment runs them.

    The replicas share the secret key (a token issued by one is accepted by the other) and trust nginx's
    forwarded address. They are pinned to the service cores like every server measured; nginx, like the
    PostgreSQL server, is not pinned, and its CPU is counted apart (`proxy_pids`).
    """
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx not installed (scripts/ensure-nginx.sh installs Debian's)")
    url, drop = create_pg_database("sb_bench_replicas")
    database = url.rsplit("/", 1)[1]
    name = f"supportbot-postgres-r{replicas}"
    started: list[Target] = []
    nginx: subprocess.Popen[bytes] | None = None
    try:
        shared = {"SUPPORTBOT_SECRET_KEY": secrets.token_hex(32), "SUPPORTBOT_TRUSTED_PROXIES": "127.0.0.1"}
        for index in range(1, replicas + 1):
            env = supportbot_env(work / f"sb-replica{index}-{database}", url, upstream) | shared
            started.append(_supportbot(name, f"replica {index}", work, plan, env, log_name=f"{name}-{index}"))
        directory = work / f"nginx-{database}"
        directory.mkdir(parents=True, exist_ok=True)
        port = free_port()
        (directory / "nginx.conf").write_text(render_nginx_conf(
            NGINX_CONF.read_text(encoding="utf-8"), directory, port, [f"127.0.0.1:{r.port}" for r in started]),
            encoding="utf-8")
        nginx = _spawn(nginx_command(binary, directory), _base_env(), directory / "log" / "stdout.log", directory)
        wait_ready(port, "/healthz", nginx, 30, directory / "log" / "error.log")
    except Exception:
        for target in started:
            target.stop()
        if nginx is not None:
            _terminate(nginx, signal.SIGQUIT)
        drop()
        raise
    proxy = nginx

    def cleanup() -> None:
        _terminate(proxy, signal.SIGQUIT)  # nginx's graceful stop
        drop()

    return Target(name, f"supportbot, PostgreSQL, {replicas} replicas behind nginx", "supportbot", port,
                  started[0].process, extra_pids=lambda: pg_backends(database),
                  proxy_pids=lambda: process_tree(proxy.pid), members=[t.process for t in started[1:]],
                  cleanup=cleanup)
