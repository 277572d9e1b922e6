"""Handling handoffs: claim and assign a conversation, availability for round-robin, canned replies.

`router` is the JSON API (bearer tokens); `pages` holds the admin pages' forms and the canned-replies page.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from ..assignment import ROUND_ROBIN_ACTOR, Assigned, Assignments
from ..canned import CannedChange, CannedReplies
from ..inbox import MAX_ID
from ..runtime import Runtime
from .admin_pages import AdminsForm, AdminsPage, AnsweringForm, SessionsDep, back_to, render
from .deps import Admins, Answering, RuntimeDep
from .schemas import ErrorBody, error_responses

router = APIRouter(prefix="/admin/api", tags=["assignment"], responses={
    **error_responses(400, 401, 422), 403: {"model": ErrorBody, "description": "Your role may not do this"}})
pages = APIRouter(prefix="/admin", include_in_schema=False)
ReplyId = Annotated[int, Path(ge=1, le=MAX_ID, description="A canned reply's id")]


class AssignCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assignee: str | None = Field(max_length=254, description="An enabled admin's or agent's e-mail; null to "
                                 "unassign", examples=["dana@example.com"])


class AssignmentPublic(BaseModel):
    conversation_id: str
    assignee: str | None = Field(description="The assignee's e-mail; null when nobody handles it")


class AvailabilityCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    available: bool


class AvailabilityPublic(BaseModel):
    email: str
    available: bool = Field(description="True: new handoffs may be given to you (SUPPORTBOT_AUTO_ASSIGN)")


class CannedReplyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shortcut: str = Field(max_length=51, examples=["/refund"])
    title: str = Field(max_length=200, examples=["Refund on its way"])
    content: str = Field(max_length=4000)


class CannedReplyPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shortcut: str | None = Field(default=None, max_length=51)
    title: str | None = Field(default=None, max_length=200)
    content: str | None = Field(default=None, max_length=4000)


class CannedReplyPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    shortcut: str = Field(description="Without the leading slash, lower-case")
    title: str
    content: str
    updated_by: str
    updated_at: datetime


def assignments(runtime: Runtime) -> Assignments:
    """The assignment desk on the runtime's database."""
    return Assignments(runtime.log.sessions)


def canned(runtime: Runtime) -> CannedReplies:
    """The canned replies on the runtime's database."""
    return CannedReplies(runtime.log.sessions)


async def announce(runtime: Runtime, result: Assigned, by: str) -> AssignmentPublic:
    """Publish the assignment to every agent's page; its JSON."""
    await runtime.events.publish(result.event(by))
    return AssignmentPublic(conversation_id=result.conversation_id, assignee=result.assignee)


async def announce_round_robin(runtime: Runtime, conversation_id: str) -> None:
    """After a handoff opened: tell the agents' pages whom round-robin gave it to (nothing when it is off)."""
    if not runtime.settings.auto_assign:
        return
    assignee = (await to_thread.run_sync(assignments(runtime).assignees, [conversation_id])).get(conversation_id)
    if assignee is not None:
        await runtime.events.publish(Assigned(conversation_id, assignee, None).event(ROUND_ROBIN_ACTOR))


@router.post("/conversations/{conversation_id}/claim", response_model=AssignmentPublic,
             responses=error_responses(404))
async def claim(conversation_id: str, runtime: RuntimeDep, who: Answering) -> AssignmentPublic:
    """Take the conversation: you become its assignee (a personal token; the shared admin token is no person)."""
    result = await to_thread.run_sync(assignments(runtime).claim, conversation_id, who)
    return await announce(runtime, result, who.actor)


@router.post("/conversations/{conversation_id}/assign", response_model=AssignmentPublic,
             responses=error_responses(404))
async def assign(conversation_id: str, body: AssignCreate, runtime: RuntimeDep, who: Answering) -> AssignmentPublic:
    """Give the conversation to an enabled admin or agent by e-mail, or to nobody (`null`)."""
    result = await to_thread.run_sync(assignments(runtime).assign, conversation_id, body.assignee, who.actor)
    return await announce(runtime, result, who.actor)


@router.post("/me/availability", response_model=AvailabilityPublic)
async def availability(body: AvailabilityCreate, runtime: RuntimeDep, who: Answering) -> AvailabilityPublic:
    """Mark yourself available for new handoffs (round-robin gives them to available agents), or not."""
    available = await to_thread.run_sync(assignments(runtime).set_available, who, body.available)
    return AvailabilityPublic(email=who.actor, available=available)


@router.get("/canned-replies", response_model=list[CannedReplyPublic])
async def list_canned(runtime: RuntimeDep, _who: Answering) -> list[CannedReplyPublic]:
    """Every canned reply, by shortcut."""
    rows = await to_thread.run_sync(canned(runtime).all)
    return [CannedReplyPublic.model_validate(row) for row in rows]


@router.post("/canned-replies", status_code=201, response_model=CannedReplyPublic, responses=error_responses(409))
async def create_canned(body: CannedReplyCreate, runtime: RuntimeDep, who: Admins) -> CannedReplyPublic:
    """Save a canned reply under a shortcut (`/refund` or `refund`: letters, digits, - and _)."""
    row = await to_thread.run_sync(lambda: canned(runtime).create(body.shortcut, body.title, body.content, who.actor))
    return CannedReplyPublic.model_validate(row)


@router.patch("/canned-replies/{reply_id}", response_model=CannedReplyPublic, responses=error_responses(404, 409))
async def update_canned(reply_id: ReplyId, body: CannedReplyPatch, runtime: RuntimeDep,
                        who: Admins) -> CannedReplyPublic:
    """Change a canned reply's shortcut, title or content."""
    change = CannedChange(body.shortcut, body.title, body.content)
    row = await to_thread.run_sync(lambda: canned(runtime).update(reply_id, change, who.actor))
    return CannedReplyPublic.model_validate(row)


@router.delete("/canned-replies/{reply_id}", status_code=204, responses=error_responses(404))
async def delete_canned(reply_id: ReplyId, runtime: RuntimeDep, who: Admins) -> Response:
    """Remove a canned reply."""
    await to_thread.run_sync(canned(runtime).delete, reply_id, who.actor)
    return Response(status_code=204)


# Pages: forms posted from the conversation, inbox and canned-replies pages (session, origin and CSRF checked).


@pages.post("/conversations/{conversation_id}/claim")
async def claim_form(conversation_id: str, runtime: RuntimeDep, actor: AnsweringForm) -> Response:
    result = await to_thread.run_sync(assignments(runtime).claim, conversation_id, actor)
    await announce(runtime, result, actor.actor)
    return back_to(f"/admin/conversations/{conversation_id}")


@pages.post("/conversations/{conversation_id}/assign")
async def assign_form(conversation_id: str, runtime: RuntimeDep, actor: AnsweringForm,
                      assignee: Annotated[str, Form(max_length=254)] = "") -> Response:
    """The select's empty choice unassigns."""
    result = await to_thread.run_sync(assignments(runtime).assign, conversation_id, assignee or None, actor.actor)
    await announce(runtime, result, actor.actor)
    return back_to(f"/admin/conversations/{conversation_id}")


@pages.post("/me/availability")
async def availability_form(runtime: RuntimeDep, actor: AnsweringForm,
                            available: Annotated[str, Form()] = "false") -> Response:
    await to_thread.run_sync(assignments(runtime).set_available, actor, available == "true")
    return back_to("/admin")


@pages.get("/canned")
async def canned_page(request: Request, runtime: RuntimeDep, helper: SessionsDep, actor: AdminsPage) -> HTMLResponse:
    """Canned replies: add, edit, remove."""
    rows = await to_thread.run_sync(canned(runtime).all)
    return render(request, helper, "admin/canned.html", {"actor": actor, "section": "canned", "replies": rows})


@pages.post("/canned")
async def create_canned_form(runtime: RuntimeDep, actor: AdminsForm, shortcut: Annotated[str, Form()] = "",
                             title: Annotated[str, Form()] = "", content: Annotated[str, Form()] = "") -> Response:
    row = await to_thread.run_sync(lambda: canned(runtime).create(shortcut, title, content, actor.actor))
    return back_to(f"/admin/canned#r{row.id}")


@pages.post("/canned/{reply_id}")
async def update_canned_form(reply_id: ReplyId, runtime: RuntimeDep, actor: AdminsForm,
                             shortcut: Annotated[str, Form()] = "", title: Annotated[str, Form()] = "",
                             content: Annotated[str, Form()] = "") -> Response:
    change = CannedChange(shortcut, title, content)
    await to_thread.run_sync(lambda: canned(runtime).update(reply_id, change, actor.actor))
    return back_to(f"/admin/canned#r{reply_id}")


@pages.post("/canned/{reply_id}/delete")
async def delete_canned_form(reply_id: ReplyId, runtime: RuntimeDep, actor: AdminsForm) -> Response:
    await to_thread.run_sync(canned(runtime).delete, reply_id, actor.actor)
    return back_to("/admin/canned")
