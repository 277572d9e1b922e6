"""The FastAPI application: routers, the one error shape, body limits and CORS."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..allocator import fix_mmap_threshold
from ..config import Settings, get_settings
from ..errors import SupportbotError
from ..retention import scheduled_purge
from ..runtime import Runtime
from ..slack.delivery import slack_sender
from ..telemetry import metrics, tracing
from . import (
    admin,
    admin_pages,
    assignment,
    chat,
    experiments,
    health,
    live,
    oidc,
    privacy,
    review,
    slack,
    users,
    widget,
)
from .metrics import router as metrics_router
from .outage import DATABASE_DOWN, DATABASE_RETRY_AFTER, DATABASE_UNAVAILABLE, database_down_message

log = logging.getLogger(__name__)

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type"}


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """The one JSON error shape."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def _validation_message(error: RequestValidationError) -> tuple[int, str, str]:
    problems = error.errors()
    if any(p.get("type") == "json_invalid" for p in problems):
        return 400, "invalid_json", "request body is not valid JSON"
    parts = []
    for problem in problems[:5]:
        where = ".".join(str(p) for p in problem.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {problem.get('msg', 'invalid')}")
    return 422, "validation_error", "; ".join(parts)


def allowed_methods(routes: Iterable[BaseRoute], scope: Scope) -> set[str]:
    """Every method some route of the app serves on the request's path (through included routers)."""
    found: set[str] = set()
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            found |= allowed_methods(inner.routes, scope)
        elif isinstance(route, APIRoute) and route.matches(scope)[0] is not Match.NONE:
            found |= route.methods or set()
    return found


def install_error_handlers(app: FastAPI) -> None:
    """Render every error, ours or the framework's, as `{"error": {"code", "message"}}`."""

    @app.exception_handler(SupportbotError)
    async def _domain(_request: Request, error: SupportbotError) -> JSONResponse:
        return error_response(error.status_code, error.code, error.message, headers=error.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, error: RequestValidationError) -> JSONResponse:
        status, code, message = _validation_message(error)
        return error_response(status, code, message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(error.status_code, "http_error")
        headers = error.headers
        if error.status_code == 405:
            # Starlette names the methods of the first route on the path; a path served by several route
            # functions (GET and POST on /admin/api/users) supports all of theirs.
            headers = {**(headers or {}), "Allow": ", ".join(sorted(allowed_methods(app.routes, request.scope)))}
        return error_response(error.status_code, code, str(error.detail), headers=headers)

    @app.exception_handler(admin_pages.LoginRequired)
    async def _login(_request: Request, error: admin_pages.LoginRequired) -> RedirectResponse:
        return RedirectResponse(f"/admin/login?{urlencode({'next': error.next_url})}", status_code=303)

    async def _database_down(request: Request, error: Exception) -> JSONResponse:
        # One line, not a traceback per request: an outage fails every request the same way.
        log.error("database unavailable on %s %s: %s", request.method, request.url.path,
                  getattr(error, "orig", None) or error)
        return error_response(503, DATABASE_UNAVAILABLE, database_down_message(request.method),
                              headers={"Retry-After": str(DATABASE_RETRY_AFTER)})

    for kind in DATABASE_DOWN:
        app.add_exception_handler(kind, _database_down)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        # No promise about what was stored: the failure may have come before or after a write.
        return error_response(500, "internal_error", "internal error: the request did not complete; "
                                                     "the details are in the server log")


class BodyLimit:
    """Refuses request bodies over `max_bytes` with 413 before any route reads them."""

    # A client that writes its whole body before reading (urllib, most scripts) sees a connection reset,
    # not the 413, when the server closes with the body unread: so the rest is read and dropped first,
    # within these bounds; beyond them the connection is closed without waiting.
    DRAIN_SECONDS = 5.0
    DRAIN_MIN_BYTES = 4 * 1024 * 1024

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.drain_bytes = max(10 * max_bytes, self.DRAIN_MIN_BYTES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            # A client that asked `Expect: 100-continue` waits for our word before sending: the 413 is it.
            waits = headers.get(b"expect", b"").lower() == b"100-continue"
            drained = (not waits and length.isdigit() and int(length) <= self.drain_bytes
                       and await self._drain(receive, 0))
            await self._refuse(scope, receive, send, drained)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                drained = not message.get("more_body", False) or await self._drain(receive, size)
                await self._refuse(scope, receive, send, drained)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _drain(self, receive: Receive, received: int) -> bool:
        """Read and drop the rest of a refused body; False when it is too long or too slow to wait for."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.DRAIN_SECONDS):
                while received <= self.drain_bytes:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return False
                    received += len(message.get("body", b""))
                    if not message.get("more_body", False):
                        return True
        return False

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, drained: bool) -> None:
        # Rest not read (too long, too slow): close, rather than go on receiving a body nobody wants.
        headers = None if drained else {"Connection": "close"}
        response = error_response(413, "payload_too_large", f"request body over {self.max_bytes} bytes", headers)
        await response(scope, receive, send)


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    """The application for `settings` (or a prepared `runtime`, as tests and benchmarks build one)."""
    runtime = runtime or Runtime.build(settings or get_settings())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        fix_mmap_threshold()  # before the language models load: their buffers, freed, must not stay resident
        log.info("supportbot %s ready: %s", __version__, runtime.describe())
        try:
            runtime.prompts.resolve(runtime.settings.prompt)
        except LookupError as error:
            # Serving anyway (a fixed file is picked up without a restart), but every turn answers 503 until then.
            log.warning("the prompt is not available, so every message gets 503 prompt_unavailable until it is: "
                        "%s (run `supportbot init` for a starting prompts/ and knowledge/, or set "
                        "SUPPORTBOT_PROMPTS_DIR)", error)
        for problem in [*runtime.prompts.errors(), *runtime.knowledge.errors(), *runtime.policies.errors(),
                        *runtime.languages.errors()]:
            log.error("invalid file: %s", problem)
        sender = runtime.webhook_sender()
        worker = asyncio.create_task(sender.run(runtime.settings.outbox_poll_interval)) if sender else None
        slack_out = slack_sender(runtime)
        slack_worker = asyncio.create_task(slack_out.run(runtime.settings.outbox_poll_interval)) if slack_out else None
        sync = runtime.knowledge_sync()
        syncer = asyncio.create_task(sync.run()) if sync else None
        guard = runtime.experiment_guard()
        guarding = asyncio.create_task(guard.run(runtime.settings.experiment_guard_interval)) if guard else None
        kept = runtime.settings
        purger = scheduled_purge(runtime.log.sessions, kept.retention_days, kept.retention_mode,
                                 kept.training_retention_days, kept.retention_interval)
        purging = asyncio.create_task(purger.run()) if purger else None
        sweeper = runtime.interrupted_turns()
        sweeping = asyncio.create_task(sweeper.run()) if sweeper else None
        await runtime.events.start()  # listens in the background: Redis or PostgreSQL down does not stop start-up
        live.end_streams_on_signal(runtime.events)
        await runtime.warm_up()
        # What start-up built (modules, the runtime, its caches) lives as long as the process. Frozen
        # out of the collector's reach, a full collection scans only what turns allocate: unfrozen it
        # took up to 80 ms and stalled every stream in flight (bench/findings.md, streaming).
        gc.collect()
        gc.freeze()
        yield
        if worker is not None and sender is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
            await sender.aclose()
        if slack_worker is not None and slack_out is not None:
            slack_worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await slack_worker
            await slack_out.aclose()
        for task in (syncer, guarding, purging, sweeping):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await runtime.aclose()
        tracing.flush()
        metrics.forget_this_process()

    app = FastAPI(
        title="supportbot",
        version=__version__,
        description="Support chatbot API: conversations, messages (JSON or Server-Sent Events), transcripts.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    metrics.watch_pool(runtime.log.engine)
    tracing.configure_from_environment(runtime.settings.trace_content)
    install_error_handlers(app)
    for router in (health.router, chat.router, admin.router, widget.router, review.router, users.router,
                   users.pages, oidc.router, assignment.router, assignment.pages, live.router, slack.router,
                   admin_pages.router, experiments.router, privacy.router):
        app.include_router(router)
    app.include_router(metrics_router)
    origins = runtime.settings.allowed_origins
    if origins:
        # Bearer tokens, not cookies: credentials stay off, so no origin ever gets `*` with credentials.
        app.add_middleware(
            CORSMiddleware, allow_origins=origins, allow_credentials=False,
            allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type", "Accept"],
            expose_headers=["Server-Timing", "Retry-After"], max_age=600,
        )
    app.add_middleware(BodyLimit, max_bytes=runtime.settings.max_body_bytes)
    return app
