"""Dependencies shared by routers, as `Annotated` aliases so route signatures read like prose."""

from __future__ import annotations

import hmac
import re
from datetime import date
from typing import Annotated

from fastapi import Depends, Header, Path, Query, Request
from pydantic import BeforeValidator

from ..errors import NotFound, Unauthorized
from ..runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    """The process's runtime, attached to the app at creation."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def bearer_token(authorization: Annotated[str | None, Header()] = None) -> str:
    """The token of an `Authorization: Bearer ...` header, or 401."""
    if not authorization:
        raise Unauthorized("missing Authorization: Bearer <token> header", code="missing_token")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("expected Authorization: Bearer <token>", code="invalid_token")
    return token.strip()


def visitor_conversation(
    conversation_id: str, runtime: RuntimeDep, token: Annotated[str, Depends(bearer_token)]
) -> str:
    """The conversation id from the path, once the visitor's token is shown to grant it."""
    granted = runtime.tokens.conversation_id(token)
    if granted != conversation_id:
        # Same answer as for an id that does not exist: a token never reveals other conversations.
        raise NotFound("conversation not found")
    return conversation_id


VisitorConversation = Annotated[str, Depends(visitor_conversation)]


def admin_actor(runtime: RuntimeDep, token: Annotated[str, Depends(bearer_token)]) -> str:
    """The acting admin, once the admin token is shown; 401 otherwise."""
    if not hmac.compare_digest(token.encode(), runtime.admin_token.encode()):
        raise Unauthorized("invalid admin token", code="invalid_admin_token")
    return "admin"


AdminActor = Annotated[str, Depends(admin_actor)]


def limit_ip(request: Request, runtime: RuntimeDep) -> None:
    """Count the request against its client IP (429 past SUPPORTBOT_RATE_LIMIT_PER_IP)."""
    peer = request.client.host if request.client else None
    runtime.limits.check_ip(runtime.limits.client_ip(peer, request.headers.get("x-forwarded-for")))


def limited_visitor(conversation_id: VisitorConversation, runtime: RuntimeDep) -> str:
    """The visitor's conversation, counted against SUPPORTBOT_RATE_LIMIT_PER_VISITOR (429 past it)."""
    runtime.limits.check_visitor(conversation_id)
    return conversation_id


LimitedVisitor = Annotated[str, Depends(limited_visitor)]


# Ids are 64-bit integers in the database; larger numbers are a 422, never an overflow inside the driver.
MessageId = Annotated[int, Path(ge=1, le=2**63 - 1, description="A message id")]
BeforeId = Annotated[int | None, Query(ge=1, le=2**63 - 1, description="Return rows with a smaller id (next page)")]


def _iso_date(value: object) -> object:
    if isinstance(value, str) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("expected a date as YYYY-MM-DD")
    return value


# Query dates are calendar days, YYYY-MM-DD only (not timestamps that happen to parse).
IsoDate = Annotated[date | None, BeforeValidator(_iso_date)]
