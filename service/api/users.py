"""The team's people: the admin API (`/admin/api/users`, tokens, sessions) and the pages (`/admin/users`,
`/admin/account`, sign-in links).

Thin routes over service/people.py; every write is audited there with the acting person.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Cookie, Form, Path, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from ..auth import AdminSessions
from ..errors import SupportbotError
from ..forwarded import client_ip
from ..inbox import MAX_ID
from ..lockout import count_failure, sign_in_guard
from ..models import ApiToken, StaffRole, User
from ..people import STAFF, Principal, UserChange
from ..runtime import Runtime
from .admin_pages import (
    AdminsForm,
    AdminsPage,
    SessionsDep,
    back_to,
    form_requires,
    is_https,
    page_requires,
    render,
    same_origin_post,
)
from .deps import Admins, RuntimeDep
from .schemas import ErrorBody, error_responses

router = APIRouter(prefix="/admin/api", tags=["people"], responses={
    **error_responses(400, 401, 422), 403: {"model": ErrorBody, "description": "Admins only"}})
pages = APIRouter(prefix="/admin", include_in_schema=False)

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody, "description": "No such person or token"}}
Email = Annotated[str, Path(max_length=254, description="The person's e-mail address")]


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(max_length=254, examples=["ana@example.com"])
    name: str | None = Field(default=None, max_length=100)
    role: StaffRole
    password: str | None = Field(default=None, max_length=1024,
                                 description="At least 12 characters; without one the answer has a sign-in link")


class UserPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=100)
    role: StaffRole | None = None
    disabled: bool | None = Field(default=None, description="true ends their sessions and revokes their tokens")
    available: bool | None = Field(default=None, description="takes part in automatic assignment")
    password: str | None = Field(default=None, max_length=1024)


class UserPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    name: str
    role: StaffRole
    disabled: bool
    available: bool
    created_at: datetime
    sign_in_link: str | None = Field(default=None, description="Only when the person was added without a "
                                                               "password: a one-time link, shown this once")


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str | None = Field(default=None, max_length=100)


class TokenPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    label: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenPublic):
    token: str = Field(description="The personal API token, shown this once (only its SHA-256 is kept)")


class SessionsEnded(BaseModel):
    sessions_ended: int


def user_public(user: User, sign_in_link: str | None = None) -> UserPublic:
    """The API's view of a person."""
    return UserPublic(id=user.id, email=user.email, name=user.name, role=StaffRole(user.role),
                      disabled=user.disabled_at is not None, available=user.available, created_at=user.created_at,
                      sign_in_link=sign_in_link)


@router.post("/users", status_code=201, response_model=UserPublic, responses={409: {"model": ErrorBody}})
async def add_user(body: UserCreate, runtime: RuntimeDep, who: Admins) -> UserPublic:
    """Add a person; without a password the answer carries a one-time sign-in link."""
    user = await to_thread.run_sync(runtime.people.add, who.actor, body.email, body.role.value, body.name,
                                    body.password)
    link = None
    if body.password is None:
        link = await to_thread.run_sync(runtime.people.new_sign_in_link, who.actor, user.email,
                                        runtime.settings.sign_in_link_minutes, runtime.settings.public_url)
    return user_public(user, link)


@router.get("/users", response_model=list[UserPublic])
async def list_users(runtime: RuntimeDep, _who: Admins) -> list[UserPublic]:
    """Every person, enabled or not."""
    return [user_public(u) for u in await to_thread.run_sync(runtime.people.everyone)]


@router.get("/users/{email}", response_model=UserPublic, responses=NOT_FOUND)
async def get_user(email: Email, runtime: RuntimeDep, _who: Admins) -> UserPublic:
    """One person."""
    return user_public(await to_thread.run_sync(runtime.people.get, email))


@router.patch("/users/{email}", response_model=UserPublic, responses=NOT_FOUND)
async def change_user(email: Email, body: UserPatch, runtime: RuntimeDep, who: Admins) -> UserPublic:
    """Change name, role, availability or password; `disabled: true` ends their sessions and tokens."""
    change = UserChange(name=body.name, role=body.role.value if body.role else None, disabled=body.disabled,
                        available=body.available, password=body.password)
    return user_public(await to_thread.run_sync(runtime.people.change, who.actor, email, change))


@router.post("/users/{email}/tokens", status_code=201, response_model=TokenCreated, responses=NOT_FOUND)
async def add_token(email: Email, runtime: RuntimeDep, who: Admins, body: TokenCreate | None = None) -> TokenCreated:
    """A new personal API token for the person (shown once)."""
    row, token = await to_thread.run_sync(runtime.people.new_api_token, who.actor, email,
                                          body.label if body else None)
    return TokenCreated(**TokenPublic.model_validate(row).model_dump(), token=token)


@router.get("/users/{email}/tokens", response_model=list[TokenPublic], responses=NOT_FOUND)
async def list_tokens(email: Email, runtime: RuntimeDep, _who: Admins) -> list[TokenPublic]:
    """The person's personal API tokens, revoked ones too; never the secret."""
    rows: list[ApiToken] = await to_thread.run_sync(runtime.people.api_tokens, email)
    return [TokenPublic.model_validate(row) for row in rows]


@router.delete("/tokens/{token_id}", response_model=TokenPublic, responses=NOT_FOUND)
async def revoke_token(token_id: Annotated[int, Path(ge=1, le=MAX_ID)], runtime: RuntimeDep,
                       who: Admins) -> TokenPublic:
    """Revoke a personal API token: it stops working at once."""
    return TokenPublic.model_validate(await to_thread.run_sync(runtime.people.revoke_api_token, who.actor, token_id))


@router.delete("/users/{email}/sessions", response_model=SessionsEnded, responses=NOT_FOUND)
async def end_sessions(email: Email, runtime: RuntimeDep, who: Admins) -> SessionsEnded:
    """Sign the person out everywhere."""
    return SessionsEnded(sessions_ended=await to_thread.run_sync(runtime.people.end_sessions, who.actor, email))


# --- pages -------------------------------------------------------------------------------------------------

AnyonePage = Annotated[Principal, page_requires(STAFF)]  # any signed-in person: their own account
AnyoneForm = Annotated[Principal, form_requires(STAFF)]
LINK_GONE = "This sign-in link has expired or was already used. Ask an admin for a new one."


async def _users_page(request: Request, runtime: Runtime, helper: AdminSessions, actor: Principal,
                      status_code: int = 200, **extra: Any) -> HTMLResponse:
    # After a form post the page's own forms still need CSRF tokens bound to this session.
    request.state.admin_session = actor.session_id
    people = await to_thread.run_sync(runtime.people.everyone)
    last = await to_thread.run_sync(runtime.people.last_sign_ins)
    return render(request, helper, "admin/users.html", {"actor": actor, "section": "people", "people": people,
                  "last": last, "roles": [r.value for r in StaffRole], **extra}, status_code=status_code)


@pages.get("/users")
async def users_page(request: Request, runtime: RuntimeDep, helper: SessionsDep, actor: AdminsPage) -> HTMLResponse:
    """The team: roles, status, availability, last sign-in; forms to add and change people."""
    return await _users_page(request, runtime, helper, actor)


@pages.post("/users")
async def add_user_form(request: Request, runtime: RuntimeDep, helper: SessionsDep, actor: AdminsForm,
                        email: Annotated[str, Form()] = "", name: Annotated[str, Form()] = "",
                        role: Annotated[str, Form()] = "agent") -> Response:
    """Add a person; the page shows their one-time sign-in link, this once."""
    try:
        user = await to_thread.run_sync(runtime.people.add, actor.actor, email, role, name or None)
        link = await to_thread.run_sync(runtime.people.new_sign_in_link, actor.actor, user.email,
                                        runtime.settings.sign_in_link_minutes, runtime.settings.public_url)
    except SupportbotError as error:
        return await _users_page(request, runtime, helper, actor, error.status_code, error=error.message)
    return await _users_page(request, runtime, helper, actor, 201, link=link, link_for=user.email)


@pages.post("/users/{email}/link")
async def new_link_form(request: Request, email: Email, runtime: RuntimeDep, helper: SessionsDep,
                        actor: AdminsForm) -> Response:
    """A new one-time sign-in link for a person (to set a forgotten password)."""
    try:
        link = await to_thread.run_sync(runtime.people.new_sign_in_link, actor.actor, email,
                                        runtime.settings.sign_in_link_minutes, runtime.settings.public_url)
    except SupportbotError as error:
        return await _users_page(request, runtime, helper, actor, error.status_code, error=error.message)
    return await _users_page(request, runtime, helper, actor, link=link, link_for=email)


async def _change_form(request: Request, runtime: Runtime, helper: AdminSessions, actor: Principal, email: str,
                       change: UserChange) -> Response:
    try:
        await to_thread.run_sync(runtime.people.change, actor.actor, email, change)
    except SupportbotError as error:
        return await _users_page(request, runtime, helper, actor, error.status_code, error=error.message)
    return back_to("/admin/users")


@pages.post("/users/{email}/role")
async def role_form(request: Request, email: Email, runtime: RuntimeDep, helper: SessionsDep, actor: AdminsForm,
                    role: Annotated[str, Form()] = "") -> Response:
    """Change a person's role (applies to their live sessions at once)."""
    return await _change_form(request, runtime, helper, actor, email, UserChange(role=role))


@pages.post("/users/{email}/disabled")
async def disabled_form(request: Request, email: Email, runtime: RuntimeDep, helper: SessionsDep,
                        actor: AdminsForm, disabled: Annotated[bool, Form()] = True) -> Response:
    """Disable (sessions end, tokens revoked) or enable a person."""
    return await _change_form(request, runtime, helper, actor, email, UserChange(disabled=disabled))


@pages.post("/users/{email}/available")
async def available_form(request: Request, email: Email, runtime: RuntimeDep, helper: SessionsDep,
                         actor: AdminsForm, available: Annotated[bool, Form()] = False) -> Response:
    """Mark a person available (or not) for automatic assignment."""
    return await _change_form(request, runtime, helper, actor, email, UserChange(available=available))


async def _account_page(request: Request, helper: AdminSessions, actor: Principal, status_code: int = 200,
                        **extra: Any) -> HTMLResponse:
    request.state.admin_session = actor.session_id
    return render(request, helper, "admin/account.html", {"actor": actor, "section": "account", **extra},
                  status_code=status_code)


@pages.get("/account")
async def account_page(request: Request, helper: SessionsDep, actor: AnyonePage, done: str = "") -> HTMLResponse:
    """The signed-in person's own account: set a password, sign out other sessions."""
    return await _account_page(request, helper, actor, done=done)


@pages.post("/account/password")
async def password_form(request: Request, runtime: RuntimeDep, helper: SessionsDep, actor: AnyoneForm,
                        password: Annotated[str, Form()] = "", password_again: Annotated[str, Form()] = "") -> Response:
    """Set one's own password (twice, the same); one's other sessions end."""
    if password != password_again:
        return await _account_page(request, helper, actor, 422, error="The two passwords differ.")
    try:
        await to_thread.run_sync(runtime.people.set_own_password, actor, password)
    except SupportbotError as error:
        return await _account_page(request, helper, actor, error.status_code, error=error.message)
    return back_to("/admin/account?done=password")


@pages.post("/account/sessions")
async def other_sessions_form(request: Request, runtime: RuntimeDep, helper: SessionsDep,
                              actor: AnyoneForm) -> Response:
    """Sign out every other session of one's own."""
    if actor.user_id is None:
        return await _account_page(request, helper, actor, 422,
                                   error="Signed in with the shared admin token: there are no sessions of yours.")
    await to_thread.run_sync(runtime.people.end_sessions, actor.actor, actor.actor, actor.session_id)
    return back_to("/admin/account?done=sessions")


@pages.get("/login/link")
async def sign_in_link_page(request: Request, runtime: RuntimeDep, helper: SessionsDep,
                            token: str = "") -> HTMLResponse:
    """A sign-in link's landing page: a button that spends the link (a link checker's GET leaves it unused)."""
    user = await to_thread.run_sync(runtime.people.sign_in_link_owner, token[:200]) if token else None
    if user is None:
        return render(request, helper, "admin/login.html", {"next": "/admin", "actor": None, "error": LINK_GONE},
                      status_code=400)
    return render(request, helper, "admin/login.html", {"next": "/admin", "actor": None, "link_token": token,
                                                        "link_email": user.email})


@pages.post("/login/link")
async def sign_in_link(request: Request, runtime: RuntimeDep, helper: SessionsDep,
                       token: Annotated[str, Form()] = "", csrf: Annotated[str, Form()] = "",
                       sb_csrf: Annotated[str | None, Cookie()] = None) -> Response:
    """Spend a sign-in link: a session for its person, then their account page to set a password."""
    same_origin_post(request)
    page = {"next": "/admin", "actor": None}
    if not helper.csrf_valid(sb_csrf, csrf):
        return render(request, helper, "admin/login.html", {**page, "error": "The form expired. Open the link again."},
                      status_code=400)
    user = await to_thread.run_sync(runtime.people.use_sign_in_link, token[:200]) if token else None
    if user is None:
        await count_failure(sign_in_guard(request), runtime.limits, runtime.review,
                            client_ip(request, runtime.limits), "sign-in-link")
        return render(request, helper, "admin/login.html", {**page, "error": LINK_GONE}, status_code=400)
    await to_thread.run_sync(runtime.review.record, user.email, "login", None, {"via": "sign_in_link"})
    response = back_to("/admin/account")
    cookie = await to_thread.run_sync(helper.issue, user)
    response.set_cookie(AdminSessions.COOKIE, cookie, max_age=helper.max_age, httponly=True,
                        samesite="strict", path="/admin", secure=is_https(request))
    return response
