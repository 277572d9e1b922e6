"""The admin API for human agents: open escalations, conversations, agent replies, resolution."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from anyio import to_thread
from fastapi import APIRouter, Body, Query

from ..actions.stored import calls_by_message
from ..assignment import Assignments
from ..events import AGENT_REPLY, RESOLVED, new_event
from ..presence import is_online
from ..ratings import Ratings
from ..turns import check_message
from .deps import Answering, BeforeId, RuntimeDep, Staff
from .schemas import (
    ActionCallAdmin,
    AdminMessage,
    AgentMessageCreate,
    ConversationTranscript,
    CsatPublic,
    ErrorBody,
    EscalationAdmin,
    ResolvePublic,
    TranscriptMessage,
    error_responses,
)

router = APIRouter(prefix="/admin/api", tags=["admin"], responses=error_responses(400, 401, 413, 422))

ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Missing or wrong admin token"},
    404: {"model": ErrorBody, "description": "No such conversation"},
}


@router.get("/escalations", response_model=list[EscalationAdmin], responses=ADMIN_ERRORS)
async def list_escalations(
    runtime: RuntimeDep, _who: Staff,
    status: Literal["open", "resolved", "all"] = "open",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: BeforeId = None,
) -> list[EscalationAdmin]:
    """Escalations, newest first: the agents' queue."""
    rows = await to_thread.run_sync(runtime.handoff.escalations, status, limit, before)
    assignees = await to_thread.run_sync(Assignments(runtime.log.sessions).assignees,
                                         [row.conversation_id for row in rows])
    return [EscalationAdmin.model_validate(row).model_copy(update={"assignee": assignees.get(row.conversation_id)})
            for row in rows]


@router.get("/conversations/{conversation_id}", response_model=ConversationTranscript, responses=ADMIN_ERRORS)
async def get_conversation(conversation_id: str, runtime: RuntimeDep, _who: Staff) -> ConversationTranscript:
    """The whole conversation with every reply's prompt version, model, usage, feedback, action calls and
    escalations."""
    conversation, messages, escalations, feedback = await to_thread.run_sync(
        runtime.handoff.conversation_detail, conversation_id)
    actions = await to_thread.run_sync(calls_by_message, runtime.log.sessions, conversation_id)
    assignee = (await to_thread.run_sync(Assignments(runtime.log.sessions).assignees, [conversation_id])
                ).get(conversation_id)
    csat = await to_thread.run_sync(Ratings(runtime.log.sessions).get, conversation_id)
    return ConversationTranscript(
        id=conversation.id, status=conversation.status, created_at=conversation.created_at,
        visitor=conversation.visitor, visitor_online=is_online(conversation.visitor_seen_at),
        arm=conversation.arm,
        messages=[
            TranscriptMessage.model_validate(m).model_copy(update={
                "feedback": feedback[m.id].rating if m.id in feedback else None,
                "actions": [ActionCallAdmin.model_validate(call) for call in actions.get(m.id, ())]})
            for m in messages
        ],
        escalations=[EscalationAdmin.model_validate(e).model_copy(update={"assignee": assignee})
                     for e in escalations],
        assignee=assignee,
        csat=CsatPublic.model_validate(csat, from_attributes=True) if csat else None,
    )


@router.post("/conversations/{conversation_id}/messages", status_code=201, response_model=AdminMessage,
             responses={**ADMIN_ERRORS, 413: {"model": ErrorBody}, 422: {"model": ErrorBody}})
async def post_agent_message(
    conversation_id: str, body: AgentMessageCreate, runtime: RuntimeDep, who: Answering
) -> AdminMessage:
    """A human agent answers; the visitor sees it, under the person's name, in the transcript. It is the
    correction of the bot's miss. `author` names the writer only for the shared admin token (an automation
    relaying for someone); a person's reply is always under their own name."""
    content = check_message(runtime, body.content)
    author = (body.author or who.display_name) if who.user_id is None else who.display_name
    message = await to_thread.run_sync(lambda: runtime.handoff.agent_reply(
        conversation_id, content, author, body.corrects_message_id, actor=who.actor))
    await runtime.events.publish(new_event(AGENT_REPLY, conversation_id, message_id=message.id, author=author))
    return AdminMessage.model_validate(message)


@router.post("/conversations/{conversation_id}/resolve", response_model=ResolvePublic, responses=ADMIN_ERRORS)
async def resolve_conversation(
    conversation_id: str, runtime: RuntimeDep, who: Answering,
    body: Annotated[dict[str, str] | None, Body()] = None,
) -> ResolvePublic:
    """Close the handoff: escalations resolved, the bot answers this conversation again. `by` is honoured
    only for the shared admin token; a person resolves as themselves."""
    by = ((body or {}).get("by") or who.actor) if who.user_id is None else who.actor
    conversation = await to_thread.run_sync(runtime.handoff.resolve, conversation_id, by)
    await runtime.events.publish(new_event(RESOLVED, conversation_id, by=by))
    return ResolvePublic(conversation_id=conversation.id, status=conversation.status)
