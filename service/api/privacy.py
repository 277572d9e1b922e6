"""Personal data on request (admins only): erase a conversation or a person, export everything about a person."""

from __future__ import annotations

from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from ..erasure import Erasure, Person
from .admin import ADMIN_ERRORS
from .deps import Admins, RuntimeDep
from .schemas import ErrorBody, error_responses

router = APIRouter(prefix="/admin/api", tags=["privacy"], responses=error_responses(400, 401, 422))
ERRORS = {**ADMIN_ERRORS, 404: {"model": ErrorBody, "description": "Nothing is stored for that person or "
                                                                   "conversation (the request is audited)"}}
UserIdQuery = Annotated[str | None, Query(max_length=2000, description="the verified widget user id")]
EmailQuery = Annotated[str | None, Query(max_length=320, description="the contact e-mail address")]


class ErasureRequest(BaseModel):
    """Exactly one of `user_id` (the widget identity) and `email` (a handoff contact or visitor metadata)."""

    model_config = ConfigDict(extra="forbid")

    user_id: str | None = Field(default=None, max_length=2000, examples=["customer-42"])
    email: str | None = Field(default=None, max_length=320, examples=["ada@example.com"])


class ErasurePublic(BaseModel):
    conversations: list[str] = Field(description="the conversations erased")
    deleted: dict[str, int] = Field(description="rows deleted per table", examples=[{"messages": 6}])


@router.delete("/conversations/{conversation_id}", response_model=ErasurePublic, responses=ERRORS)
async def erase_conversation(conversation_id: str, runtime: RuntimeDep, who: Admins) -> dict[str, Any]:
    """Delete a conversation and everything about it (messages, action calls, feedback, corrections, escalations,
    rating, notifications); the audit log keeps who did it, when and how many rows, never the content."""
    report = await to_thread.run_sync(Erasure(runtime.log.sessions).erase_conversation, conversation_id, who.actor)
    return report.as_json()


@router.post("/erasure", response_model=ErasurePublic, responses=ERRORS)
async def erase_person(body: ErasureRequest, runtime: RuntimeDep, who: Admins) -> dict[str, Any]:
    """Delete every conversation of a person, by verified user id or contact e-mail (audited without either)."""
    person = Person(user_id=body.user_id, email=body.email)
    report = await to_thread.run_sync(Erasure(runtime.log.sessions).erase_person, person, who.actor)
    return report.as_json()


@router.get("/visitors/export", responses=ERRORS)
async def export_person(runtime: RuntimeDep, who: Admins, user_id: UserIdQuery = None,
                        email: EmailQuery = None) -> dict[str, Any]:
    """Everything stored about a person as JSON: their conversations with every row about each."""
    person = Person(user_id=user_id, email=email)
    return await to_thread.run_sync(Erasure(runtime.log.sessions).export_person, person, who.actor)
