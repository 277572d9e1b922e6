"""Every admin route declares its role: each route is called with no credentials, the shared admin token and a
person of each role, through a real server, and the answers are checked against the table below.

The table is written out here, not read from the code: a route added without an entry, or a route whose
declared roles differ from the table, fails the test.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute
from sqlalchemy import select

from service.api import create_app
from service.auth import AdminSessions
from service.config import secret_key
from service.models import ApiToken, AuditEntry, StaffRole, User
from service.people import API_TOKEN, new_token, token_sha256
from service.runtime import Runtime

from .conftest import make_settings
from .upstream_server import serving

ADMIN, AGENT, REVIEWER = StaffRole.ADMIN, StaffRole.AGENT, StaffRole.REVIEWER
STAFF = {ADMIN, AGENT, REVIEWER}
ANSWERING = {ADMIN, AGENT}
REVIEWING = {ADMIN, REVIEWER}
ADMINS = {ADMIN}
PUBLIC = None  # no credentials needed (sign-in pages, the stylesheet)
SIGNED_IN = "signed in"  # any live session, whatever the role (sign-out, own account)

# "METHOD path" -> who may use it. API routes take bearer tokens; pages take the session cookie.
TABLE: dict[str, object] = {
    # agents' queue and conversations
    "GET /admin/api/escalations": STAFF,
    "GET /admin/api/conversations/{conversation_id}": STAFF,
    "POST /admin/api/conversations/{conversation_id}/messages": ANSWERING,
    "POST /admin/api/conversations/{conversation_id}/resolve": ANSWERING,
    # review
    "GET /admin/api/conversations": STAFF,
    "GET /admin/api/misses": STAFF,
    "POST /admin/api/messages/{message_id}/correction": STAFF,
    "POST /admin/api/messages/{message_id}/review": REVIEWING,
    "POST /admin/api/conversations/{conversation_id}/exclude": REVIEWING,
    "GET /admin/api/prompts": STAFF,
    "GET /admin/api/prompts/diff": STAFF,
    "GET /admin/api/prompts/{ref}": STAFF,
    "GET /admin/api/audit": ADMINS,
    "GET /admin/api/export": REVIEWING,
    "GET /admin/api/report": STAFF,
    "POST /admin/api/messages/{message_id}/promote": ADMINS,
    # pages
    "GET /admin/static/admin.css": PUBLIC,
    "GET /admin/login": PUBLIC,
    "POST /admin/login": PUBLIC,
    "POST /admin/logout": SIGNED_IN,
    "GET /admin": STAFF,
    "GET /admin/conversations/{conversation_id}": STAFF,
    "POST /admin/messages/{message_id}/correction": STAFF,
    "POST /admin/messages/{message_id}/review": REVIEWING,
    "POST /admin/messages/{message_id}/promote": ADMINS,
    "POST /admin/conversations/{conversation_id}/exclude": REVIEWING,
    "POST /admin/conversations/{conversation_id}/resolve": ANSWERING,
    "POST /admin/conversations/{conversation_id}/reply": ANSWERING,
    "GET /admin/prompts": STAFF,
    "GET /admin/prompts/diff": STAFF,
    "GET /admin/prompts/{ref}": STAFF,
    "GET /admin/audit": ADMINS,
    "GET /admin/report": STAFF,
    "GET /admin/static/admin-live.js": PUBLIC,
    # people, tokens, sessions (service/api/users.py)
    "GET /admin/api/users": ADMINS,
    "POST /admin/api/users": ADMINS,
    "GET /admin/api/users/{email}": ADMINS,
    "PATCH /admin/api/users/{email}": ADMINS,
    "GET /admin/api/users/{email}/tokens": ADMINS,
    "POST /admin/api/users/{email}/tokens": ADMINS,
    "DELETE /admin/api/tokens/{token_id}": ADMINS,
    "DELETE /admin/api/users/{email}/sessions": ADMINS,
    "GET /admin/users": ADMINS,
    "POST /admin/users": ADMINS,
    "POST /admin/users/{email}/available": ADMINS,
    "POST /admin/users/{email}/disabled": ADMINS,
    "POST /admin/users/{email}/link": ADMINS,
    "POST /admin/users/{email}/role": ADMINS,
    "GET /admin/account": SIGNED_IN,
    "POST /admin/account/password": SIGNED_IN,
    "POST /admin/account/sessions": SIGNED_IN,
    "GET /admin/login/link": PUBLIC,
    "POST /admin/login/link": PUBLIC,
    "GET /admin/login/sso": PUBLIC,
    "GET /admin/login/sso/callback": PUBLIC,
    # handoffs: assignment, availability, canned replies (service/api/assignment.py)
    "POST /admin/api/conversations/{conversation_id}/claim": ANSWERING,
    "POST /admin/api/conversations/{conversation_id}/assign": ANSWERING,
    "POST /admin/conversations/{conversation_id}/claim": ANSWERING,
    "POST /admin/conversations/{conversation_id}/assign": ANSWERING,
    "POST /admin/api/me/availability": ANSWERING,
    "POST /admin/me/availability": ANSWERING,
    "GET /admin/api/canned-replies": ANSWERING,
    "POST /admin/api/canned-replies": ADMINS,
    "PATCH /admin/api/canned-replies/{reply_id}": ADMINS,
    "DELETE /admin/api/canned-replies/{reply_id}": ADMINS,
    "GET /admin/canned": ADMINS,
    "POST /admin/canned": ADMINS,
    "POST /admin/canned/{reply_id}": ADMINS,
    "POST /admin/canned/{reply_id}/delete": ADMINS,
    # experiments (service/api/experiments.py, the page in admin_pages.py)
    "GET /admin/api/experiments": REVIEWING,
    "POST /admin/api/experiments/stop": ADMINS,
    "POST /admin/api/experiments/resume": ADMINS,
    "GET /admin/experiments": REVIEWING,
    # privacy: erasure and access on request (service/api/privacy.py)
    "DELETE /admin/api/conversations/{conversation_id}": ADMINS,
    "POST /admin/api/erasure": ADMINS,
    "GET /admin/api/visitors/export": ADMINS,
    # live updates (service/api/live.py)
    "GET /admin/api/events": STAFF,
}

# Values for path parameters: ids that exist nowhere, so an admitted call changes nothing.
PATH_VALUES = {"conversation_id": "0" * 32, "message_id": "999999", "ref": "support@v1", "email": "nobody@example.com",
               "token_id": "999999", "reply_id": "999999", "id": "999999"}
BOTH_VERSIONS = "?a=support@v1&b=support@v1"
QUERY = {"GET /admin/api/prompts/diff": BOTH_VERSIONS, "GET /admin/prompts/diff": BOTH_VERSIONS}


def api_routes(routes: Iterable[object]) -> Iterator[APIRoute]:
    """The app's routes, through included routers (FastAPI keeps them inside the router they came from)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from api_routes(inner.routes)


@dataclass
class Caller:
    """One set of credentials: a bearer token for the API and a session cookie (+ its CSRF token) for pages."""

    name: str
    role: StaffRole | None
    bearer: str | None = None
    cookie: str | None = None
    csrf: str | None = None


def add_person(runtime: Runtime, role: StaffRole) -> tuple[User, str]:
    """A person of `role` with a personal API token."""
    token = new_token()
    with runtime.log.sessions.begin() as db:
        user = User(email=f"{role}@team.example", name=f"{role.title()} Person", role=role)
        db.add(user)
        db.flush()
        db.add(ApiToken(user_id=user.id, kind=API_TOKEN, token_sha256=token_sha256(token)))
        db.expunge(user)
    return user, token


def callers(runtime: Runtime) -> list[Caller]:
    """No credentials, the shared admin token, and a person of each role."""
    helper = AdminSessions(secret_key(runtime.settings), runtime.admin_token, runtime.log.sessions)
    admin_cookie = helper.issue(None)
    found = [Caller("nobody", None),
             Caller("admin token", ADMIN, runtime.admin_token, admin_cookie,
                    helper.csrf_token(_session_id(helper, admin_cookie)))]
    for role in StaffRole:
        user, token = add_person(runtime, role)
        cookie = helper.issue(user)
        found.append(Caller(f"{role} person", role, token, cookie, helper.csrf_token(_session_id(helper, cookie))))
    return found


def _session_id(helper: AdminSessions, cookie: str) -> str:
    live = helper.signed_in(cookie)
    assert live is not None and live.session_id
    return str(live.session_id)


def concrete(path: str) -> str:
    """The route's path with its parameters filled in."""
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: PATH_VALUES.get(m.group(1), "999999"), path)


def call(base: str, key: str, caller: Caller) -> httpx.Response:
    """Call a route as `caller` (streams are closed once their status is known)."""
    method, path = key.split(" ", 1)
    url = base + concrete(path) + QUERY.get(key, "")
    headers: dict[str, str] = {}
    cookies: dict[str, str] = {}
    data: dict[str, str] | None = None
    if path.startswith("/admin/api/"):
        if caller.bearer:
            headers["Authorization"] = f"Bearer {caller.bearer}"
    elif caller.cookie:
        cookies["sb_admin"] = caller.cookie
        if method == "POST":
            data = {"csrf": caller.csrf or ""}
    if method == "POST" and path.startswith("/admin/") and not path.startswith("/admin/api/"):
        headers["Origin"] = base
    with httpx.Client(cookies=cookies, follow_redirects=False, timeout=20) as client:
        kwargs: dict[str, object] = {"headers": headers}
        if data is not None:
            kwargs["data"] = data
        elif method in {"POST", "PATCH", "PUT"} and path.startswith("/admin/api/"):
            kwargs["json"] = {}
        with client.stream(method, url, **kwargs) as response:  # type: ignore[arg-type]
            return response


def expected_admitted(rule: object, caller: Caller) -> bool:
    """Whether the table admits `caller` on a route with `rule`."""
    if rule is PUBLIC:
        return True
    if caller.role is None:
        return False
    if rule == SIGNED_IN:
        return True
    assert isinstance(rule, set)
    return caller.role in rule


@pytest.fixture
def served(tmp_path: Path, sqlite_url: str) -> Iterator[tuple[str, Runtime, list[str], list[Caller]]]:
    """The service on a real port (SQLite: which roles reach a route does not depend on the database)."""
    runtime = Runtime.build(make_settings(tmp_path, sqlite_url))
    app = create_app(runtime=runtime)
    routes = sorted(f"{method} {route.path}" for route in api_routes(app.routes)
                    if route.path.startswith("/admin") for method in (route.methods or set()) - {"HEAD"})
    people = callers(runtime)
    with serving(app) as base:
        yield base, runtime, routes, people
    runtime.log.engine.dispose()


def test_the_table_names_every_admin_route(served: tuple[str, Runtime, list[str], list[Caller]]) -> None:
    _, _, routes, _ = served
    assert sorted(routes) == sorted(TABLE), (
        f"routes without a row: {sorted(set(routes) - set(TABLE))}; rows without a route: "
        f"{sorted(set(TABLE) - set(routes))}")


def test_every_route_admits_exactly_the_roles_of_its_row(
        served: tuple[str, Runtime, list[str], list[Caller]]) -> None:
    base, runtime, routes, people = served
    wrong: list[str] = []
    for key in sorted(routes, key=lambda k: k == "POST /admin/logout"):  # signing out ends the sessions: last
        rule = TABLE.get(key, ADMINS)
        for caller in people:
            status = call(base, key, caller).status_code
            admitted = expected_admitted(rule, caller)
            # No credentials: 401 from the API and form posts, a redirect to sign-in for pages; a person: 403.
            refused_as: set[int] = set() if admitted else ({401, 303} if caller.role is None else {403})
            if admitted and status in {401, 403}:
                wrong.append(f"{key} as {caller.name}: {status}, expected admitted")
            if not admitted and status not in refused_as:
                wrong.append(f"{key} as {caller.name}: {status}, expected {sorted(refused_as)}")
    assert not wrong, "\n".join(wrong)
    with runtime.log.sessions() as db:
        refusals = db.scalars(select(AuditEntry).where(AuditEntry.action == "forbidden")).all()
    assert refusals and all(r.actor.endswith("@team.example") for r in refusals), \
        "each refusal is audited under the person who tried"
