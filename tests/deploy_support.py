"""What the deployment tests share: a PostgreSQL database of their own, nginx with the shipped config, a slow model."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, make_url, text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from bench.nginx import NGINX_CONF, nginx_binary, nginx_command, render_nginx_conf

from .conftest import IN_CI, PG_URL, postgres_available
from .processes import free_port


def require(available: bool, what: str) -> None:
    """Skip when `what` is missing on this machine, except under CI=true, where it must be there."""
    if not available:
        if IN_CI:
            pytest.fail(f"{what} is required under CI=true")
        pytest.skip(f"{what} is not available")


@contextmanager
def postgres_database(prefix: str = "sbdeploy") -> Iterator[str]:
    """A new, empty database on the test server (its URL), dropped afterwards: several processes may use it."""
    require(postgres_available(), f"PostgreSQL at {PG_URL}")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class Nginx:
    """nginx with deploy/nginx.conf (ports, upstreams, paths in `directory`), in the foreground."""

    def __init__(self, directory: Path, upstreams: list[str], conf: str | None = None) -> None:
        binary = nginx_binary()
        require(binary is not None, "nginx (scripts/ensure-nginx.sh installs Debian's)")
        assert binary is not None
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.conf_path = directory / "nginx.conf"
        directory.mkdir(parents=True, exist_ok=True)
        shipped = NGINX_CONF.read_text(encoding="utf-8") if conf is None else conf
        self.conf_path.write_text(render_nginx_conf(shipped, directory, self.port, upstreams), encoding="utf-8")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(nginx_command(self.binary, self.directory), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"nginx exited {self.process.returncode}:\n{self.error_log()}")
            try:
                httpx.get(f"{self.base}/healthz", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError(f"nginx did not listen:\n{self.error_log()}")

    def error_log(self) -> str:
        path = self.directory / "log" / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # nginx's graceful stop
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class ModelCall:
    """One chat completion the slow model answered: which replica asked, when chunks were produced."""

    replica: str
    stream: bool
    started: float
    first_chunk: float | None = None
    last_chunk: float | None = None


@dataclass
class SlowModel:
    """An OpenAI-compatible model under /<replica>/v1 that streams `chunks` pieces `interval` seconds apart."""

    chunks: int = 3
    interval: float = 0.01
    calls: list[ModelCall] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{replica}/v1/chat/completions", self._completions, methods=["POST"])])

    def calls_from(self, replica: str) -> int:
        with self.lock:
            return sum(1 for call in self.calls if call.replica == replica)

    async def _completions(self, request: Request) -> Response:
        body = await request.json()
        call = ModelCall(request.path_params["replica"], bool(body.get("stream")), time.monotonic())
        with self.lock:
            self.calls.append(call)
        chunks, interval = self.chunks, self.interval
        model = body.get("model", "gpt-4o-mini")
        usage = {"prompt_tokens": 100, "completion_tokens": chunks, "total_tokens": 100 + chunks}
        if not call.stream:
            await asyncio.sleep(interval * chunks)
            return JSONResponse({"id": "x", "object": "chat.completion", "created": 1, "model": model, "usage": usage,
                                 "choices": [{"index": 0, "finish_reason": "stop", "message": {
                                     "role": "assistant", "content": " ".join(f"word{n}" for n in range(chunks))}}]})

        async def events() -> AsyncIterator[bytes]:
            for n in range(chunks):
                await asyncio.sleep(interval)
                now = time.monotonic()
                call.first_chunk = call.first_chunk or now
                call.last_chunk = now
                yield _chunk(model, {"choices": [{"index": 0, "delta": {"content": f"word{n} "}}]})
            yield _chunk(model, {"choices": [], "usage": usage})
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")


def _chunk(model: str, fields: dict[str, object]) -> bytes:
    body = {"id": "x", "object": "chat.completion.chunk", "created": 1, "model": model, **fields}
    return f"data: {json.dumps(body)}\n\n".encode()
