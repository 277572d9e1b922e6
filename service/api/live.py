"""Live updates: the agents' event stream (SSE), and the visitor's typing and presence signals."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
from collections.abc import AsyncIterator, Callable
from types import FrameType
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Body, Cookie, Depends, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from ..errors import Unauthorized
from ..events import PRESENCE, STREAM_END, TYPING, Event, EventBus, RelayBus, new_event
from ..people import STAFF, Principal
from ..presence import record_heartbeat
from ..ratelimit import parse_rate
from .admin_pages import SessionsDep
from .deps import RuntimeDep, VisitorConversation, _count, api_principal, bearer_token, limit_ip, refuse_role
from .schemas import ErrorBody, error_responses

HEARTBEAT_SECONDS = 15.0  # a comment line this often keeps proxies from closing an idle stream
LISTENER_WAIT_SECONDS = 2.0  # how long a new stream waits for this replica's listener to be connected
# Typing and presence signals have their own budget per conversation, apart from the visitor's messages:
# a heartbeat every 15 s and a typing signal every few seconds stay well under it.
SIGNALS_PER_CONVERSATION = parse_rate("90/minute")

router = APIRouter()


async def live_principal(
    request: Request, runtime: RuntimeDep, helper: SessionsDep,
    sb_admin: Annotated[str | None, Cookie()] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> Principal:
    """A signed-in person by session cookie (the pages), else by bearer token (admin or personal); any staff."""
    who = await to_thread.run_sync(helper.signed_in, sb_admin) if sb_admin else None
    if who is None:
        if not authorization:
            raise Unauthorized("sign in, or send Authorization: Bearer <token>", code="not_signed_in")
        who = await api_principal(request, runtime, await bearer_token(authorization))
    if who.role not in STAFF:
        raise await refuse_role(runtime, who, STAFF, f"{request.method} {request.url.path}")
    return who


live_principal.roles = STAFF  # type: ignore[attr-defined]  # read by the role table test, as for `requires`
LiveStaff = Annotated[Principal, Depends(live_principal)]


def end_streams_on_signal(bus: EventBus) -> None:
    """On SIGTERM or SIGINT, end the open event streams, so a graceful shutdown does not wait out its grace
    period for them (they never end by themselves); then the server's own handler runs."""
    if threading.current_thread() is not threading.main_thread():
        return  # signals reach the main thread only (an app served from a thread, as in tests)
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(number)
        if not callable(previous):
            continue

        def chained(signum: int, frame: FrameType | None, previous: Callable[[int, FrameType | None], Any] = previous
                    ) -> None:
            loop.call_soon_threadsafe(bus.close_streams)
            previous(signum, frame)

        signal.signal(number, chained)


def sse_event(event: Event) -> str:
    """One event in the text/event-stream format: its id, its type as the event name, the JSON as data."""
    return f"id: {event.get('id', '')}\nevent: {event['type']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n"


async def event_stream(bus: EventBus, conversation_id: str | None) -> AsyncIterator[str]:
    """Events (of one conversation, if given) until the client goes away, with a heartbeat comment when idle."""
    async with bus.subscribe() as subscription:
        if isinstance(bus, RelayBus):
            # Opened before the replica's listener connected: wait a moment, so the first events are not missed
            # (when the outside system is down, this replica's own events still come).
            await bus.start()
            await bus.wait_listening(LISTENER_WAIT_SECONDS)
        yield "retry: 3000\n: connected\n\n"
        while True:
            event = await subscription.next(HEARTBEAT_SECONDS)
            if event is STREAM_END:
                return  # shutting down: the browser reconnects, to another replica or to this one restarted
            if event is None:
                yield ": heartbeat\n\n"
            elif conversation_id is None or event.get("conversation_id") in (conversation_id, None):
                yield sse_event(event)


# Not in the OpenAPI document: a stream that never ends is no operation a schema fuzzer can call (it waits
# for the whole body); the README describes it.
@router.get("/admin/api/events", include_in_schema=False)
async def admin_events(
    runtime: RuntimeDep, _who: LiveStaff,
    conversation_id: Annotated[str | None, Query(max_length=64, description="Only this conversation's events")] = None,
) -> StreamingResponse:
    """Live events for a signed-in person (session cookie or bearer token); ends when the client goes away."""
    return StreamingResponse(event_stream(runtime.events, conversation_id), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def limited_signals(conversation_id: VisitorConversation, runtime: RuntimeDep) -> str:
    """The visitor's conversation, counted against its budget of typing and presence signals (429 past it)."""
    limits = runtime.limits
    await _count(limits, lambda: limits._check(SIGNALS_PER_CONVERSATION, "visitor-signals", conversation_id))
    return conversation_id


SignallingVisitor = Annotated[str, Depends(limited_signals)]
VISITOR_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing, tampered or expired token"},
    404: {"model": ErrorBody, "description": "No such conversation for this token"},
    429: {"model": ErrorBody, "description": "Rate limited; see the Retry-After header"},
}


class TypingCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    typing: StrictBool = Field(description="True while the visitor types; false when they stop or clear the box.")


class PresenceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    online: StrictBool = Field(default=True, description="True: a heartbeat (the widget is open); false: the visitor "
                                                   "is leaving the page.")


@router.post("/api/conversations/{conversation_id}/typing", status_code=204, tags=["conversations"],
             dependencies=[Depends(limit_ip)], responses={**error_responses(400, 413, 422), **VISITOR_ERRORS})
async def visitor_typing(conversation_id: SignallingVisitor, body: TypingCreate, runtime: RuntimeDep) -> Response:
    """The visitor is typing (or stopped): shown to the agents watching the conversation; nothing is stored."""
    await runtime.events.publish(new_event(TYPING, conversation_id, typing=body.typing))
    return Response(status_code=204)


@router.post("/api/conversations/{conversation_id}/presence", status_code=204, tags=["conversations"],
             dependencies=[Depends(limit_ip)], responses={**error_responses(400, 413, 422), **VISITOR_ERRORS})
async def visitor_presence(conversation_id: SignallingVisitor, runtime: RuntimeDep,
                           body: Annotated[PresenceCreate | None, Body()] = None) -> Response:
    """The widget's heartbeat every 15 s while it is open (stored, throttled), or its goodbye when the page closes."""
    online = body.online if body else True
    if online:
        await to_thread.run_sync(record_heartbeat, runtime.log.sessions, conversation_id)
    await runtime.events.publish(new_event(PRESENCE, conversation_id, online=online))
    return Response(status_code=204)
