"""Dependencies shared by routers, as `Annotated` aliases so route signatures read like prose.

They are `async def`: FastAPI runs a plain `def` dependency in a worker thread, a thread hop per
dependency per request for what takes microseconds (bench/findings.md). Only a rate-limit check against
a network store (Redis) still goes to a thread, as it blocks.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Annotated, Any

from anyio import to_thread
from fastapi import Depends, Header, Path, Query, Request
from pydantic import BeforeValidator

from ..errors import Forbidden, NotFound, Unauthorized
from ..forwarded import client_ip
from ..inbox import MAX_ID
from ..lockout import count_failure, refuse_if_locked_out, sign_in_guard
from ..models import StaffRole
from ..people import ADMIN_TOKEN, ADMINS, ANSWERING, CORRECTING, REVIEWING, STAFF, TOKEN_PREFIX, Principal
from ..ratelimit import RateLimits
from ..runtime import Runtime


async def get_runtime(request: Request) -> Runtime:
    """The process's runtime, attached to the app at creation."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def bearer_token(authorization: Annotated[str | None, Header()] = None) -> str:
    """The token of an `Authorization: Bearer ...` header, or 401."""
    if not authorization:
        raise Unauthorized("missing Authorization: Bearer <token> header", code="missing_token")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("expected Authorization: Bearer <token>", code="invalid_token")
    return token.strip()


async def visitor_conversation(
    conversation_id: str, runtime: RuntimeDep, token: Annotated[str, Depends(bearer_token)]
) -> str:
    """The conversation id from the path, once the visitor's token is shown to grant it."""
    granted = runtime.tokens.conversation_id(token)
    if granted != conversation_id:
        # Same answer as for an id that does not exist: a token never reveals other conversations.
        raise NotFound("conversation not found")
    return conversation_id


VisitorConversation = Annotated[str, Depends(visitor_conversation)]


async def api_principal(request: Request, runtime: RuntimeDep,
                        token: Annotated[str, Depends(bearer_token)]) -> Principal:
    """Who a bearer token belongs to: the shared admin token, or a person's personal token (`sbp_...`).

    401 for any other token (counted towards the client's lockout), 429 while the client is locked out.
    """
    guard, ip = sign_in_guard(request), client_ip(request, runtime.limits)
    await refuse_if_locked_out(guard, runtime.limits, ip)
    if hmac.compare_digest(token.encode(), runtime.admin_token.encode()):
        return ADMIN_TOKEN
    if token.startswith(TOKEN_PREFIX):
        who = await to_thread.run_sync(runtime.people.by_api_token, token)
        if who is not None:
            return who
    await count_failure(guard, runtime.limits, runtime.review, ip, "bearer")
    raise Unauthorized("invalid admin token or personal token (revoked, or its person disabled)",
                       code="invalid_admin_token")


async def refuse_role(runtime: Runtime, who: Principal, roles: frozenset[StaffRole], what: str) -> Forbidden:
    """The 403 for a person whose role does not reach `what`, audited (who tried what)."""
    await to_thread.run_sync(runtime.review.record, who.actor, "forbidden", what[:100], {"role": str(who.role)})
    allowed = ", ".join(sorted(roles))
    return Forbidden(f"your role ({who.role}) may not do this; it needs one of: {allowed}", code="forbidden_role")


def role_gate(roles: frozenset[StaffRole], identify: Callable[..., Awaitable[Principal]]) -> Any:
    """A dependency admitting whoever `identify` finds when their role is in `roles` (403, audited, otherwise)."""
    # `who` takes its dependency as a default: annotations are strings here (PEP 563), and FastAPI resolves
    # them in the module, where this closure's `identify` does not exist.
    async def check(request: Request, runtime: RuntimeDep, who: Principal = Depends(identify)) -> Principal:  # noqa: B008
        if who.role not in roles:
            raise await refuse_role(runtime, who, roles, f"{request.method} {request.url.path}")
        return who
    return Depends(check)


def requires(roles: frozenset[StaffRole]) -> Any:
    """An API route for the roles in `roles`, by bearer token. Every admin route declares one (the role table
    in tests/test_roles.py calls each with every role)."""
    return role_gate(roles, api_principal)


# What a route admits, by the role sets of service/people.py.
Staff = Annotated[Principal, requires(STAFF)]
Answering = Annotated[Principal, requires(ANSWERING)]
Correcting = Annotated[Principal, requires(CORRECTING)]
Reviewing = Annotated[Principal, requires(REVIEWING)]
Admins = Annotated[Principal, requires(ADMINS)]


async def limit_ip(request: Request, runtime: RuntimeDep) -> None:
    """Count the request against its client IP (429 past SUPPORTBOT_RATE_LIMIT_PER_IP)."""
    limits = runtime.limits
    ip = client_ip(request, limits)
    await _count(limits, lambda: limits.check_ip(ip))


async def limit_conversation_start(request: Request, runtime: RuntimeDep) -> None:
    """Count a new conversation against its client IP (429 past SUPPORTBOT_RATE_LIMIT_CONVERSATIONS_PER_IP)."""
    limits = runtime.limits
    ip = client_ip(request, limits)
    await _count(limits, lambda: limits.check_conversation_start(ip))


async def limited_visitor(conversation_id: VisitorConversation, runtime: RuntimeDep) -> str:
    """The visitor's conversation, counted against SUPPORTBOT_RATE_LIMIT_PER_VISITOR (429 past it)."""
    limits = runtime.limits
    await _count(limits, lambda: limits.check_visitor(conversation_id))
    return conversation_id


async def _count(limits: RateLimits, check: Callable[[], None]) -> None:
    if limits.in_memory:
        check()
    else:
        await to_thread.run_sync(check)


LimitedVisitor = Annotated[str, Depends(limited_visitor)]


# Ids are 64-bit integers in the database; larger numbers are a 422, never an overflow inside the driver.
MessageId = Annotated[int, Path(ge=1, le=MAX_ID, description="A message id")]
BeforeId = Annotated[int | None, Query(ge=1, le=MAX_ID, description="Return rows with a smaller id (next page)")]


def _iso_date(value: object) -> object:
    if isinstance(value, str) and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("expected a date as YYYY-MM-DD")
    return value


# Query dates are calendar days, YYYY-MM-DD only (not timestamps that happen to parse).
IsoDate = Annotated[date | None, BeforeValidator(_iso_date)]
