"""The visitor API: start a conversation, send a message (JSON or SSE), read the transcript."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Body, Depends, Header, Path, Response
from fastapi.responses import StreamingResponse

from ..actions.log import decide, pending_confirmations
from ..auth import verified_visitor
from ..errors import PayloadTooLarge, SupportbotError
from ..events import ESCALATION, MESSAGE, new_event, preview
from ..models import ConversationStatus
from ..providers.base import TextDelta
from ..ratings import Ratings
from ..turns import Turn, TurnOutcome, check_message, start_turn
from .assignment import announce_round_robin
from .deps import LimitedVisitor, MessageId, RuntimeDep, VisitorConversation, limit_conversation_start, limit_ip
from .outage import DATABASE_DOWN, DATABASE_UNAVAILABLE, database_down_message
from .schemas import (
    ActionBrief,
    ConfirmationPublic,
    ConversationCreate,
    ConversationCreated,
    DecisionCreate,
    ErrorBody,
    EscalationPublic,
    FeedbackCreate,
    FeedbackPublic,
    HandoffCreate,
    MessageCreate,
    MessagePublic,
    RatingCreate,
    RatingPublic,
    ReplyPublic,
    SourcePublic,
    TranscriptPublic,
    TurnPublic,
    error_responses,
)

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/conversations", tags=["conversations"], dependencies=[Depends(limit_ip)],
                   responses=error_responses(400, 413, 422, 429))

VISITOR_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing, tampered or expired token"},
    404: {"model": ErrorBody, "description": "No such conversation for this token"},
    429: {"model": ErrorBody, "description": "Rate limited; see the Retry-After header"},
}


@router.post("", status_code=201, response_model=ConversationCreated,
             dependencies=[Depends(limit_conversation_start)],
             responses={401: {"model": ErrorBody, "description": "user_hash does not match user_id"},
                        413: {"model": ErrorBody, "description": "Metadata larger than SUPPORTBOT_MAX_METADATA_BYTES"},
                        422: {"model": ErrorBody}})
async def create_conversation(
    runtime: RuntimeDep, body: Annotated[ConversationCreate | None, Body()] = None
) -> ConversationCreated:
    """Start a conversation; the token returned grants access to it alone."""
    metadata = body.metadata if body else None
    _check_metadata_size(metadata, runtime.settings.max_metadata_bytes)
    visitor = verified_visitor(metadata, runtime.settings.identity_secret)
    conversation = await runtime.db_threads.run(runtime.log.create_conversation, visitor)
    return ConversationCreated(conversation_id=conversation.id, token=runtime.tokens.issue(conversation.id))


def _check_metadata_size(metadata: dict[str, str] | None, limit: int) -> None:
    # Anyone may start a conversation, and each one stores its metadata: the total is capped, not only
    # each value, so a flood of conversations cannot fill the disk at 40 KB a row.
    if not metadata:
        return
    size = len(json.dumps(metadata, ensure_ascii=False, separators=(",", ":")).encode())
    if size > limit:
        raise PayloadTooLarge(f"metadata is {size} bytes as JSON; the limit is {limit}", code="metadata_too_large")


@router.post(
    "/{conversation_id}/messages",
    response_model=TurnPublic,
    responses={
        **VISITOR_ERRORS,
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
              "description": "JSON, or with `Accept: text/event-stream`: `delta` events, then `done` or `error`"},
        413: {"model": ErrorBody, "description": "Message or body too long"},
        422: {"model": ErrorBody, "description": "Invalid body, or the conversation reached its turn limit"},
    },
)
async def send_message(
    conversation_id: LimitedVisitor,
    body: MessageCreate,
    runtime: RuntimeDep,
    accept: Annotated[str | None, Header()] = None,
) -> Response:
    """Send the visitor's message and get the bot's reply, as one JSON object or as Server-Sent Events."""
    began = time.perf_counter()
    turn = await start_turn(runtime, conversation_id, body.content, body.client_message_id)
    return await _answer(turn, accept, began)


@router.post(
    "/{conversation_id}/actions/{action_call_id}",
    response_model=TurnPublic,
    responses={
        **VISITOR_ERRORS,
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
              "description": "The turn that acts on the decision, as for a message: JSON or Server-Sent Events"},
        404: {"model": ErrorBody, "description": "No such confirmation in this conversation"},
        409: {"model": ErrorBody, "description": "Already decided otherwise (`confirmation_decided`), the visitor "
              "wrote since (`confirmation_expired`), or a person has the conversation (`conversation_with_agent`)"},
    },
)
async def decide_action(
    conversation_id: LimitedVisitor,
    action_call_id: Annotated[int, Path(ge=1, le=2**62)],
    body: DecisionCreate,
    runtime: RuntimeDep,
    accept: Annotated[str | None, Header()] = None,
) -> Response:
    """The visitor's Confirm or Cancel on an action that waits for it: stored once, then a turn makes the call
    (or tells the bot it was cancelled) and answers. Pressing again returns the same answer."""
    began = time.perf_counter()
    decision = await runtime.db_threads.run(decide, runtime.log.sessions, conversation_id, action_call_id,
                                            body.decision)
    label = runtime.texts.get("action_confirm_label" if decision.confirmed else "action_cancel_label",
                              decision.language)
    turn = await start_turn(runtime, conversation_id, label, decision.client_message_id, decision=decision)
    return await _answer(turn, accept, began)


async def _answer(turn: Turn, accept: str | None, began: float) -> Response:
    """A started turn's answer: Server-Sent Events when asked for, else one JSON object."""
    if accept and "text/event-stream" in accept:
        return StreamingResponse(
            _sse(turn), media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    outcome = await turn.run()
    await announce_turn(turn, outcome)
    timing = _server_timing(outcome, time.perf_counter() - began)
    return Response(turn_public(outcome).model_dump_json(), media_type="application/json",
                    headers={"Server-Timing": timing})


def turn_public(outcome: TurnOutcome) -> TurnPublic:
    """A turn's outcome in its public shape: the JSON response and the SSE `done` event alike."""
    return TurnPublic(
        message_id=outcome.message_id,
        reply=ReplyPublic(message_id=outcome.reply_id, content=outcome.reply, status=outcome.status,
                          sources=[SourcePublic.model_validate(source) for source in outcome.sources]),
        escalated=outcome.escalation is not None,
        escalation=EscalationPublic(**outcome.escalation.public()) if outcome.escalation else None,
        prompt_version=outcome.prompt_version,
        language=outcome.language,
        actions=[ActionBrief(**action) for action in outcome.actions],
        confirmation=ConfirmationPublic(**outcome.confirmation.public()) if outcome.confirmation else None,
    )


@router.get("/{conversation_id}", response_model=TranscriptPublic, responses=VISITOR_ERRORS)
async def get_transcript(conversation_id: VisitorConversation, runtime: RuntimeDep) -> TranscriptPublic:
    """The conversation's messages, oldest first: the visitor's, the bot's and human agents'."""
    conversation, messages = await to_thread.run_sync(runtime.log.transcript, conversation_id)
    waiting = await to_thread.run_sync(pending_confirmations, runtime.log.sessions, conversation_id)
    return TranscriptPublic(
        conversation_id=conversation.id,
        status=conversation.status,
        created_at=conversation.created_at,
        messages=[
            MessagePublic(id=m.id, role=m.role, content=m.content, status=m.status,
                          created_at=m.created_at, sources=m.sources,
                          author=m.author if m.role == "agent" else None,
                          confirmation=ConfirmationPublic(**waiting[m.id].public()) if m.id in waiting else None)
            for m in messages
        ],
    )


async def announce_turn(turn: Turn, outcome: TurnOutcome) -> None:
    """Tell the agents' pages (every replica) about the stored turn: the visitor's message, a new handoff."""
    start = turn.start
    if start.reply is not None:
        return  # a resend of a message answered before: announced then
    events = turn.runtime.events
    await events.publish(new_event(MESSAGE, start.conversation_id, message_id=outcome.message_id,
                                   reply_id=outcome.reply_id, preview=preview(start.user_message.content)))
    if outcome.escalation is not None and start.conversation_status != ConversationStatus.ESCALATED:
        await events.publish(new_event(ESCALATION, start.conversation_id, message_id=outcome.message_id,
                                       reason=outcome.escalation.reason))
        await announce_round_robin(turn.runtime, start.conversation_id)


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


async def _sse(turn: Turn) -> AsyncIterator[str]:
    try:
        async for event in turn.events(stream=True):
            if isinstance(event, TextDelta):
                yield _event("delta", {"text": event.text})
            elif isinstance(event, TurnOutcome):
                yield _event("done", turn_public(event).model_dump(mode="json"))
                await announce_turn(turn, event)
    except SupportbotError as error:
        yield _event("error", error.to_dict())
    except DATABASE_DOWN as error:
        # As the JSON answer would say it (503): the stream has begun, so it is the stream's last event.
        log.error("conversation=%s database unavailable during a streamed turn: %s", turn.start.conversation_id,
                  getattr(error, "orig", None) or error)
        yield _event("error", {"error": {"code": DATABASE_UNAVAILABLE, "message": database_down_message("POST")}})
    except Exception:
        log.exception("conversation=%s streaming turn failed", turn.start.conversation_id)
        yield _event("error", {"error": {"code": "internal_error", "message": "the reply could not be completed"}})


def _server_timing(outcome: TurnOutcome, total: float) -> str:
    parts = [f"{name};dur={seconds * 1000:.2f}" for name, seconds in outcome.timings.items()]
    parts.append(f"total;dur={total * 1000:.2f}")
    return ", ".join(parts)


@router.post("/{conversation_id}/handoff", response_model=TurnPublic,
             responses={**VISITOR_ERRORS, 413: {"model": ErrorBody}, 422: {"model": ErrorBody}})
async def request_handoff(
    conversation_id: LimitedVisitor, runtime: RuntimeDep,
    body: Annotated[HandoffCreate | None, Body()] = None,
) -> TurnPublic:
    """The "talk to a human" button: hand the conversation to a person, optionally with a contact and note."""
    body = body or HandoffCreate()
    note = check_message(runtime, body.note) if body.note and body.note.strip() else None
    result = await to_thread.run_sync(lambda: runtime.handoff.request_handoff(
        conversation_id, body.contact, note, texts=runtime.texts.get))
    escalation = result.escalation
    if result.note is not None:
        await runtime.events.publish(new_event(MESSAGE, conversation_id, message_id=result.note.id,
                                               reply_id=result.reply.id, preview=preview(result.note.content)))
    if result.created:
        await runtime.events.publish(new_event(ESCALATION, conversation_id, message_id=escalation.message_id,
                                               reason=escalation.reason))
        await announce_round_robin(runtime, conversation_id)
    return TurnPublic(
        message_id=result.note.id if result.note else None,
        reply=ReplyPublic(message_id=result.reply.id, content=result.reply.content, status="ok"),
        escalated=True,
        escalation=EscalationPublic(reason=escalation.reason, detail=escalation.detail),
        prompt_version=None,
        language=result.language,
    )


@router.post("/{conversation_id}/messages/{message_id}/feedback", response_model=FeedbackPublic,
             responses={**VISITOR_ERRORS, 422: {"model": ErrorBody}})
async def give_feedback(
    conversation_id: VisitorConversation, message_id: MessageId, body: FeedbackCreate, runtime: RuntimeDep
) -> FeedbackPublic:
    """Thumbs up or down on a bot reply; the last rating counts. A run of thumbs-down hands over."""
    feedback, escalation = await to_thread.run_sync(lambda: runtime.handoff.record_feedback(
        conversation_id, message_id, body.rating, body.comment,
        downs_to_escalate=runtime.settings.escalate_after_failures))
    if escalation is not None:
        await runtime.events.publish(new_event(ESCALATION, conversation_id, message_id=escalation.message_id,
                                               reason=escalation.reason))
        await announce_round_robin(runtime, conversation_id)
    return FeedbackPublic(
        message_id=message_id, rating=feedback.rating, comment=feedback.comment,
        escalated=escalation is not None,
        escalation=EscalationPublic(reason=escalation.reason, detail=escalation.detail) if escalation else None,
    )


@router.post("/{conversation_id}/rating", status_code=201, response_model=RatingPublic,
             responses={**VISITOR_ERRORS,
                        409: {"model": ErrorBody, "description": "already_rated: a conversation is rated once"},
                        422: {"model": ErrorBody, "description": "Invalid body, or nothing_to_rate (no answer yet)"}})
async def rate_conversation(
    conversation_id: LimitedVisitor, body: RatingCreate, runtime: RuntimeDep
) -> RatingPublic:
    """CSAT: the visitor rates the whole conversation, 1-5 with an optional comment, once."""
    csat = await to_thread.run_sync(Ratings(runtime.log.sessions).rate, conversation_id, body.score, body.comment)
    return RatingPublic(conversation_id=conversation_id, score=csat.score, comment=csat.comment,
                        created_at=csat.created_at)
