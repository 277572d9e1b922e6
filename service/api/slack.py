"""Slack's Events API: signed requests only; a reply in a handoff's thread reaches the visitor."""

from __future__ import annotations

from typing import Any

from anyio import to_thread
from fastapi import APIRouter, BackgroundTasks, Request

from ..slack.replies import SlackReplies
from ..slack.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER
from .deps import RuntimeDep
from .schemas import ErrorBody

router = APIRouter(tags=["slack"])


@router.post("/slack/events", responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody}})
async def slack_events(request: Request, runtime: RuntimeDep, background: BackgroundTasks) -> dict[str, Any]:
    """Slack's event callbacks: the URL check, and replies in our threads (answered after the 200, which
    Slack wants within three seconds). Anything not signed with the signing secret is refused (401)."""
    replies = SlackReplies(runtime)
    body = await request.body()
    envelope = await to_thread.run_sync(replies.verified, request.headers.get(TIMESTAMP_HEADER),
                                        request.headers.get(SIGNATURE_HEADER), body)
    if envelope.get("type") == "url_verification":
        return {"challenge": str(envelope.get("challenge", ""))}
    reply = await to_thread.run_sync(replies.accept, envelope)
    if reply is not None:
        background.add_task(replies.answer, reply)
    return {"ok": True}
