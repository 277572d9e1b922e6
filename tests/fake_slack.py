"""A small fake Slack Web API over real HTTP: records every call, answers like Slack, can rate-limit."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .upstream_server import serving


@dataclass(frozen=True)
class Call:
    """One request as received: the method, when (time.monotonic), the bearer token and the arguments."""

    method: str
    at: float
    token: str
    args: dict[str, Any]


@dataclass
class FakeSlack:
    """`chat.postMessage` answers a fresh ts; `users.info` answers from `users`; `rate_limit` answers 429s first."""

    token: str
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    url: str = ""
    _limited: int = 0
    _retry_after: int = 1
    _error: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def rate_limit(self, times: int, retry_after: int) -> None:
        """The next `times` chat.postMessage calls answer 429 with `Retry-After: retry_after`."""
        self._limited, self._retry_after = times, retry_after

    def fail_with(self, error: str | None) -> None:
        """chat.postMessage answers `{"ok": false, "error": error}` until called with None."""
        self._error = error

    def posts(self) -> list[dict[str, Any]]:
        """The arguments of every chat.postMessage call that was answered ok (with the ts given)."""
        return [call.args for call in self.calls if call.method == "chat.postMessage" and "ts" in call.args]

    def attempts(self, method: str = "chat.postMessage") -> list[Call]:
        """Every call of `method`, answered or not."""
        return [call for call in self.calls if call.method == method]

    def app(self) -> Starlette:
        async def post_message(request: Request) -> Response:
            args = dict(await request.json())
            call = self._record("chat.postMessage", request, args)
            if self._limited > 0:
                self._limited -= 1
                return JSONResponse({"ok": False, "error": "ratelimited"}, status_code=429,
                                    headers={"Retry-After": str(self._retry_after)})
            if call.token != self.token:
                return JSONResponse({"ok": False, "error": "invalid_auth"})
            if self._error:
                return JSONResponse({"ok": False, "error": self._error})
            ts = f"{int(time.time())}.{len(self.calls):06d}"
            args["ts"] = ts
            return JSONResponse({"ok": True, "channel": args.get("channel"), "ts": ts})

        async def users_info(request: Request) -> Response:
            call = self._record("users.info", request, dict(request.query_params))
            if call.token != self.token:
                return JSONResponse({"ok": False, "error": "invalid_auth"})
            user = self.users.get(request.query_params.get("user", ""))
            if user is None:
                return JSONResponse({"ok": False, "error": "user_not_found"})
            return JSONResponse({"ok": True, "user": {
                "id": request.query_params["user"], "name": user.get("name", "someone"),
                "is_bot": user.get("is_bot", False),
                "profile": {"real_name": user.get("name", "Someone"), "email": user.get("email")}}})

        return Starlette(routes=[Route("/api/chat.postMessage", post_message, methods=["POST"]),
                                 Route("/api/users.info", users_info, methods=["GET"])])

    def _record(self, method: str, request: Request, args: dict[str, Any]) -> Call:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        call = Call(method, time.monotonic(), token, args)
        with self._lock:
            self.calls.append(call)
        return call


@contextmanager
def running_slack(token: str, users: dict[str, dict[str, Any]] | None = None) -> Iterator[FakeSlack]:
    """The fake Slack on a free loopback port; its Web API base URL is `fake.url`."""
    fake = FakeSlack(token=token, users=users or {})
    with serving(fake.app(), lifespan="off") as base:
        fake.url = f"{base}/api"
        yield fake
