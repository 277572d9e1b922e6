"""The review UI: server-rendered pages under /admin, a signed session cookie, CSRF on every form."""

from __future__ import annotations

import hmac
import json
import secrets
from functools import partial
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from anyio import to_thread
from fastapi import APIRouter, Cookie, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from .. import experiment_text
from ..actions.stored import calls_by_message
from ..assignment import Assignments
from ..auth import AdminSessions
from ..authorship import byline
from ..canned import CannedReplies
from ..charts import experiment_charts, rate_chart
from ..config import secret_key
from ..errors import NotFound, RateLimited, SupportbotError, Unauthorized
from ..events import AGENT_REPLY, RESOLVED, new_event
from ..experiments import experiment_reports
from ..forwarded import client_ip, request_scheme, require_same_origin
from ..inbox import ASSIGNED, VIEWS, InboxQuery
from ..lockout import count_failure, refuse_if_locked_out, sign_in_guard
from ..markdown import render_markdown
from ..models import StaffRole
from ..people import ADMIN_TOKEN_ACTOR, ADMINS, ANSWERING, CORRECTING, REVIEWING, STAFF, Principal
from ..presence import is_online
from ..promote import promote
from ..prompt_tools import assemble_for_display, prompt_diff
from ..prompts import estimate_tokens
from ..ratings import Ratings
from ..report import build_report, weekly_rates
from ..review import is_model_turn
from ..runtime import Runtime
from ..sign_in import account_backoff, sign_in_with_password
from .deps import BeforeId, IsoDate, MessageId, RuntimeDep, role_gate
from .review import prompt_versions

PACKAGE = Path(__file__).resolve().parent.parent
templates = Jinja2Templates(directory=str(PACKAGE / "templates"))
templates.env.filters["markdown"] = render_markdown
# JSON as plain text (autoescaped where it is printed), unlike `tojson`, which is for <script> and shows \u003c.
templates.env.filters["json_text"] = partial(json.dumps, ensure_ascii=False)
templates.env.globals["byline"] = byline
templates.env.tests["model_turn"] = is_model_turn
ADMIN_CSS = (PACKAGE / "static" / "admin.css").read_bytes()
ADMIN_LIVE_JS = (PACKAGE / "static" / "admin-live.js").read_bytes()
VIEW_LABELS = {"all": "All conversations", "misses": "Misses", "escalated": "Escalated",
               "thumbs_down": "Thumbs down", "unreviewed": "Misses to review"}
# Pages run only this origin's script file (live updates, never inline) and load nothing from elsewhere;
# forms post only to this origin.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # same-origin, not no-referrer: under no-referrer a browser posts forms with `Origin: null`, and the
    # Origin check needs the real one; other sites still get no referrer.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

router = APIRouter(prefix="/admin", include_in_schema=False)


class LoginRequired(Exception):
    """A page was asked for without a session: send the browser to the sign-in form."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


def sessions(request: Request) -> AdminSessions:
    """The session/CSRF helper of this process (keyed by the service's secret)."""
    state = request.app.state
    if not hasattr(state, "admin_sessions"):
        runtime = state.runtime
        state.admin_sessions = AdminSessions(secret_key(runtime.settings), runtime.admin_token, runtime.log.sessions)
    helper: AdminSessions = state.admin_sessions
    return helper


SessionsDep = Annotated[AdminSessions, Depends(sessions)]


def is_https(request: Request) -> bool:
    """The client's scheme is https (a trusted proxy's X-Forwarded-Proto counts): cookies get Secure."""
    return request_scheme(request, request.app.state.runtime.limits) == "https"


def same_origin_post(request: Request) -> None:
    """Refuse (403) an admin form posted from another site (Origin or Referer not this service)."""
    runtime = request.app.state.runtime
    require_same_origin(request, runtime.limits, runtime.settings.public_url)


async def page_actor(request: Request, helper: SessionsDep,
                     sb_admin: Annotated[str | None, Cookie()] = None) -> Principal:
    """The signed-in person; pages without a live session redirect to the sign-in form."""
    live = await to_thread.run_sync(helper.signed_in, sb_admin)
    if live is None:
        raise LoginRequired(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
    # The page's forms carry a CSRF token bound to this session (see render).
    request.state.admin_session = live.session_id
    request.state.principal = live
    return live


async def form_actor(request: Request, helper: SessionsDep, sb_admin: Annotated[str | None, Cookie()] = None,
                     csrf: Annotated[str, Form()] = "") -> Principal:
    """The person posting a form: a live session, a same-site origin and a CSRF token made for this session."""
    same_origin_post(request)
    live = await to_thread.run_sync(helper.signed_in, sb_admin)
    if live is None:
        raise Unauthorized("sign in first", code="not_signed_in")
    if not live.session_id or not helper.csrf_valid(live.session_id, csrf):
        raise Unauthorized("the form is stale or was not sent from this site; reload and try again",
                           code="csrf_failed")
    return live


def page_requires(roles: frozenset[StaffRole]) -> Any:
    """A page for the roles in `roles`: others get a 403 (audited); no session redirects to sign-in."""
    return role_gate(roles, page_actor)


def form_requires(roles: frozenset[StaffRole]) -> Any:
    """A form post for the roles in `roles` (session, origin and CSRF checked first)."""
    return role_gate(roles, form_actor)


PageActor = Annotated[Principal, Depends(page_actor)]  # any signed-in person (sign-out)
FormActor = Annotated[Principal, Depends(form_actor)]
StaffPage = Annotated[Principal, page_requires(STAFF)]
ReviewingPage = Annotated[Principal, page_requires(REVIEWING)]
AdminsPage = Annotated[Principal, page_requires(ADMINS)]
AnsweringForm = Annotated[Principal, form_requires(ANSWERING)]
CorrectingForm = Annotated[Principal, form_requires(CORRECTING)]
ReviewingForm = Annotated[Principal, form_requires(REVIEWING)]
AdminsForm = Annotated[Principal, form_requires(ADMINS)]


def render(request: Request, helper: AdminSessions, name: str, context: dict[str, Any],
           status_code: int = 200) -> HTMLResponse:
    """A page with the security headers; its forms' CSRF token is bound to the session, or before sign-in to a nonce."""
    nonce = request.cookies.get(AdminSessions.CSRF_COOKIE) or secrets.token_urlsafe(24)
    binding = getattr(request.state, "admin_session", None) or nonce
    response = templates.TemplateResponse(request, name, {**context, "csrf": helper.csrf_token(binding)},
                                          status_code=status_code, headers=SECURITY_HEADERS)
    if AdminSessions.CSRF_COOKIE not in request.cookies:
        response.set_cookie(AdminSessions.CSRF_COOKIE, nonce, httponly=True, samesite="strict", path="/admin",
                            secure=is_https(request))
    return response


def back_to(url: str) -> RedirectResponse:
    """303 after a form post, so a reload does not post again."""
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


@router.get("/static/admin.css")
async def admin_css() -> Response:
    return Response(ADMIN_CSS, media_type="text/css", headers={"Cache-Control": "public, max-age=3600"})


@router.get("/static/admin-live.js")
async def admin_live_js() -> Response:
    """The pages' live updates (service/static/admin-live.js); the pages work without it."""
    return Response(ADMIN_LIVE_JS, media_type="text/javascript",
                    headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"})


@router.get("/login")
async def login_form(request: Request, helper: SessionsDep, next: str = "/admin") -> HTMLResponse:
    return render(request, helper, "admin/login.html", {"next": _safe_next(next), "actor": None})


@router.post("/login")
async def login(
    request: Request, runtime: RuntimeDep, helper: SessionsDep, token: Annotated[str, Form()] = "",
    email: Annotated[str, Form()] = "", password: Annotated[str, Form()] = "",
    csrf: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/admin",
    sb_csrf: Annotated[str | None, Cookie()] = None,
) -> Response:
    """E-mail and password, or the admin token (failures counted per client IP and, for passwords, per
    account; 429 while either waits); on success, a session."""
    same_origin_post(request)
    form = {"next": _safe_next(next), "actor": None, "email": email[:254]}
    if not helper.csrf_valid(sb_csrf, csrf):
        return render(request, helper, "admin/login.html", {**form, "error": "The form expired. Please try again."},
                      status_code=400)
    guard, ip = sign_in_guard(request), client_ip(request, runtime.limits)
    user = None
    try:
        await refuse_if_locked_out(guard, runtime.limits, ip)
        if email.strip():
            user = await sign_in_with_password(runtime.people, account_backoff(request), runtime.review,
                                               email, password)
            if user is None:
                await count_failure(guard, runtime.limits, runtime.review, ip, "sign-in")
                # One answer for a wrong password, an unknown address and a disabled person.
                return render(request, helper, "admin/login.html", {**form,
                              "error": "Wrong e-mail or password."}, status_code=401)
        elif not hmac.compare_digest(token.encode(), runtime.admin_token.encode()):
            # Counted, not audited: one audit row when a lockout starts, never one per failure.
            await count_failure(guard, runtime.limits, runtime.review, ip, "sign-in")
            return render(request, helper, "admin/login.html", {**form,
                          "error": "That is not the admin token."}, status_code=401)
    except RateLimited as locked:
        page = render(request, helper, "admin/login.html", {**form,
                      "error": f"Too many failed sign-ins. Try again in {locked.retry_after} s."}, status_code=429)
        page.headers["Retry-After"] = str(locked.retry_after)
        return page
    await to_thread.run_sync(runtime.review.record, user.email if user else ADMIN_TOKEN_ACTOR, "login", None,
                             {"via": "password"} if user else None)
    response = back_to(_safe_next(next))
    cookie = await to_thread.run_sync(helper.issue, user)
    response.set_cookie(AdminSessions.COOKIE, cookie, max_age=helper.max_age, httponly=True,
                        samesite="strict", path="/admin", secure=is_https(request))
    return response


@router.post("/logout")
async def logout(actor: FormActor, helper: SessionsDep, sb_admin: Annotated[str | None, Cookie()] = None) -> Response:
    """End the session server-side (for every replica), then drop the cookie."""
    await to_thread.run_sync(helper.revoke, sb_admin)
    response = back_to("/admin/login")
    response.delete_cookie(AdminSessions.COOKIE, path="/admin")
    return response


def _safe_next(target: str) -> str:
    # Only paths inside the admin area: never an open redirect to another site.
    return target if target.startswith("/admin") and not target.startswith("//") else "/admin"


@router.get("")
async def inbox_page(
    request: Request, runtime: RuntimeDep, helper: SessionsDep, actor: StaffPage, view: str = "all",
    prompt_version: str = "", since: IsoDate = None, until: IsoDate = None, q: str = "",
    cursor: str | None = None, language: str = "", assigned: str = "all",
) -> HTMLResponse:
    """Conversations with filters, search and keyset pagination; mine / unassigned / all."""
    assigned = assigned if assigned in ASSIGNED and (assigned != "mine" or actor.user_id is not None) else "all"
    query = InboxQuery(view=view if view in VIEWS else "all", prompt_version=prompt_version or None,  # type: ignore[arg-type]
                       since=since, until=until, q=q or None, cursor=cursor, language=language or None,
                       assigned=assigned, user_id=actor.user_id)  # type: ignore[arg-type]
    rows, next_cursor = await to_thread.run_sync(runtime.inbox.conversations, query)
    params = {k: v for k, v in {"view": view, "prompt_version": prompt_version, "since": since or "",
                                "until": until or "", "q": q, "language": language,
                                "assigned": "" if assigned == "all" else assigned}.items() if v}
    next_url = f"/admin?{urlencode({**params, 'cursor': next_cursor})}" if next_cursor else None
    refs = sorted(v.ref for versions in runtime.prompts.versions().values() for v in versions.values())
    return render(request, helper, "admin/inbox.html", {
        "actor": actor, "section": "review" if view == "unreviewed" else "inbox", "rows": rows, "query": query,
        "views": list(VIEW_LABELS.items()), "prompt_refs": refs, "next_url": next_url,
        "languages": _language_names(runtime), "filters": params,
        # Agents take round-robin handoffs only while they say they are available.
        "available": await to_thread.run_sync(Assignments(runtime.log.sessions).available, actor.user_id)
        if actor.role == StaffRole.AGENT and actor.user_id and runtime.settings.auto_assign else None,
    })


def _language_names(runtime: Runtime) -> list[tuple[str, str]]:
    """(code, name) of each configured language, named as its language file names it."""
    files = runtime.languages.languages()
    return [(code, files[code].name if code in files else code) for code in runtime.settings.languages]


@router.get("/conversations/{conversation_id}")
async def conversation_page(
    request: Request, conversation_id: str, runtime: RuntimeDep, helper: SessionsDep, actor: StaffPage
) -> HTMLResponse:
    """The transcript with every reply's details, review forms and the agent reply form."""
    conversation, messages, escalations, feedback = await to_thread.run_sync(
        runtime.handoff.conversation_detail, conversation_id)
    corrections = await to_thread.run_sync(runtime.review.corrections,
                                           [m.id for m in messages if m.role == "assistant"])
    desk = Assignments(runtime.log.sessions)
    return render(request, helper, "admin/conversation.html", {
        "actor": actor, "section": "inbox", "conversation": conversation, "messages": messages,
        "escalations": escalations, "feedback": feedback, "corrections": corrections,
        "actions": await to_thread.run_sync(calls_by_message, runtime.log.sessions, conversation_id),
        "visitor_online": is_online(conversation.visitor_seen_at),
        "assignee": (await to_thread.run_sync(desk.assignees, [conversation_id])).get(conversation_id),
        "answerers": await to_thread.run_sync(desk.answerers),
        "canned_replies": await to_thread.run_sync(CannedReplies(runtime.log.sessions).all),
        "csat": await to_thread.run_sync(Ratings(runtime.log.sessions).get, conversation_id),
    })


@router.post("/messages/{message_id}/correction")
async def correction_form(message_id: MessageId, runtime: RuntimeDep, actor: CorrectingForm,
                          content: Annotated[str, Form()] = "") -> Response:
    if not content.strip():
        raise SupportbotError("the corrected answer is empty", code="empty_correction")
    correction = await to_thread.run_sync(runtime.review.correct, message_id, content.strip(), actor.actor)
    return await _back_to_message(runtime, correction.message_id)


@router.post("/messages/{message_id}/review")
async def review_form(message_id: MessageId, runtime: RuntimeDep, actor: ReviewingForm,
                      verdict: Annotated[str, Form()] = "") -> Response:
    await to_thread.run_sync(runtime.review.set_verdict, message_id, verdict, actor.actor)
    return await _back_to_message(runtime, message_id)


async def _back_to_message(runtime: RuntimeDep, message_id: int) -> Response:
    from ..models import Message

    def conversation_of() -> str:
        with runtime.log.sessions() as session:
            message = session.get(Message, message_id)
            if message is None:
                raise NotFound("message not found")
            return message.conversation_id

    conversation_id = await to_thread.run_sync(conversation_of)
    return back_to(f"/admin/conversations/{conversation_id}#m{message_id}")


@router.post("/messages/{message_id}/promote")
async def promote_form(message_id: MessageId, runtime: RuntimeDep, actor: AdminsForm) -> Response:
    await to_thread.run_sync(lambda: promote(runtime.log.sessions, runtime.knowledge, message_id, actor.actor))
    return await _back_to_message(runtime, message_id)


@router.post("/conversations/{conversation_id}/exclude")
async def exclude_form(conversation_id: str, runtime: RuntimeDep, actor: ReviewingForm,
                       excluded: Annotated[str, Form()] = "true") -> Response:
    await to_thread.run_sync(runtime.review.exclude, conversation_id, excluded == "true", actor.actor)
    return back_to(f"/admin/conversations/{conversation_id}")


@router.post("/conversations/{conversation_id}/resolve")
async def resolve_form(conversation_id: str, runtime: RuntimeDep, actor: AnsweringForm) -> Response:
    await to_thread.run_sync(runtime.handoff.resolve, conversation_id, actor.actor)
    await runtime.events.publish(new_event(RESOLVED, conversation_id, by=actor.actor))
    return back_to(f"/admin/conversations/{conversation_id}")


@router.post("/conversations/{conversation_id}/reply")
async def reply_form(conversation_id: str, runtime: RuntimeDep, actor: AnsweringForm,
                     content: Annotated[str, Form()] = "", author: Annotated[str, Form()] = "",
                     canned: Annotated[str, Form()] = "") -> Response:
    """An agent's reply, under the person's name (the name field counts only for the shared admin token).

    A canned reply chosen with the reply box left empty is sent as it is; text in the box wins."""
    from ..turns import check_message

    if canned and not content.strip():
        content = await to_thread.run_sync(CannedReplies(runtime.log.sessions).text_of, canned)
    text = check_message(runtime, content)
    name = (author.strip() or actor.display_name) if actor.user_id is None else actor.display_name
    message = await to_thread.run_sync(lambda: runtime.handoff.agent_reply(conversation_id, text, name, None,
                                                                            actor=actor.actor))
    await runtime.events.publish(new_event(AGENT_REPLY, conversation_id, message_id=message.id, author=name))
    return back_to(f"/admin/conversations/{conversation_id}")


@router.get("/prompts")
async def prompts_page(request: Request, runtime: RuntimeDep, helper: SessionsDep, actor: StaffPage) -> HTMLResponse:
    """Versions, labels and per-version figures."""
    versions = await to_thread.run_sync(prompt_versions, runtime)
    return render(request, helper, "admin/prompts.html", {"actor": actor, "section": "prompts",
                                                          "versions": versions})


@router.get("/prompts/diff")
async def diff_page(request: Request, a: str, b: str, runtime: RuntimeDep, helper: SessionsDep,
                    actor: StaffPage) -> HTMLResponse:
    try:
        first, _ = assemble_for_display(runtime.settings, runtime.prompts, runtime.knowledge, a,
                                           canary=runtime.canary)
        second, _ = assemble_for_display(runtime.settings, runtime.prompts, runtime.knowledge, b,
                                            canary=runtime.canary)
    except LookupError as error:
        raise NotFound(str(error)) from None
    lines = prompt_diff(first, second).splitlines()
    return render(request, helper, "admin/diff.html", {"actor": actor, "section": "prompts", "a": first.ref,
                                                       "b": second.ref, "lines": lines})


@router.get("/prompts/{ref}")
async def prompt_page(request: Request, ref: str, runtime: RuntimeDep, helper: SessionsDep, actor: StaffPage,
                      query: str = "") -> HTMLResponse:
    """The assembled prompt of one version."""
    try:
        rendered, how = assemble_for_display(runtime.settings, runtime.prompts, runtime.knowledge, ref, query,
                                    canary=runtime.canary)
    except LookupError as error:
        raise NotFound(str(error)) from None
    return render(request, helper, "admin/prompt.html", {
        "actor": actor, "section": "prompts", "prompt": rendered, "how": how, "query": query,
        "tokens": estimate_tokens(rendered.text)})


@router.get("/audit")
async def audit_page(request: Request, runtime: RuntimeDep, helper: SessionsDep, actor: AdminsPage,
                     before: BeforeId = None) -> HTMLResponse:
    entries = await to_thread.run_sync(runtime.review.audit_log, 100, before)
    next_url = f"/admin/audit?before={entries[-1].id}" if len(entries) == 100 else None
    return render(request, helper, "admin/audit.html", {"actor": actor, "section": "audit", "entries": entries,
                                                        "next_url": next_url})


@router.get("/report")
async def report_page(request: Request, runtime: RuntimeDep, helper: SessionsDep, actor: StaffPage) -> HTMLResponse:
    """The prompting-vs-fine-tuning report with its chart."""
    report = await to_thread.run_sync(lambda: build_report(runtime.settings, runtime.log.sessions,
                                                           prompts=runtime.prompts))
    series = await to_thread.run_sync(weekly_rates, runtime.log.sessions)
    return render(request, helper, "admin/report.html", {"actor": actor, "section": "report", "report": report,
                                                         "chart": rate_chart(series)})


@router.get("/experiments")
async def experiments_page(request: Request, runtime: RuntimeDep, helper: SessionsDep, actor: ReviewingPage,
                           label: str = "") -> HTMLResponse:
    """Each split label's arms: figures with 95 % intervals, differences to control, verdicts, charts."""
    problem = None
    try:
        reports = await to_thread.run_sync(lambda: experiment_reports(runtime.log.sessions, runtime.prompts,
                                                                      label=label or None))
    except NotFound as error:  # an unknown label, or one that splits no traffic: the page says how to split
        reports, problem = [], error.message
    return render(request, helper, "admin/experiments.html", {
        "actor": actor, "section": "experiments", "label": label, "problem": problem, "reports": reports,
        "text": experiment_text, "chart_sets": [experiment_charts(report) for report in reports]})
