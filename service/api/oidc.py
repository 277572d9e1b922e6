"""Single sign-on pages: off to the identity provider, and back with a session (service/sso.py does the work)."""

from __future__ import annotations

from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Cookie, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..auth import AdminSessions
from ..errors import NotFound
from ..sso import PENDING_COOKIE, PENDING_MAX_AGE, SingleSignOn, SsoRefused, SsoUnavailable
from .admin_pages import SECURITY_HEADERS, SessionsDep, _safe_next, is_https, render

router = APIRouter(prefix="/admin/login/sso", include_in_schema=False)
PENDING_PATH = "/admin/login/sso"


def single_sign_on(request: Request) -> SingleSignOn:
    """This process's single sign-on (its provider metadata cached); 404 when none is configured."""
    state = request.app.state
    if not hasattr(state, "single_sign_on"):
        runtime = state.runtime
        state.single_sign_on = SingleSignOn(runtime.settings, runtime.people, runtime.review.record)
    sso: SingleSignOn = state.single_sign_on
    if not sso.configured:
        raise NotFound("single sign-on is not configured")
    return sso


SsoDep = Annotated[SingleSignOn, Depends(single_sign_on)]


@router.get("")
async def sso_start(request: Request, sso: SsoDep, helper: SessionsDep, next: str = "/admin") -> Response:
    """Send the browser to the identity provider, remembering this sign-in in a signed cookie."""
    try:
        url, pending = await sso.begin(_safe_next(next))
    except SsoUnavailable as error:
        return _login_page(request, helper, next, f"Single sign-on is unavailable: {error.message}.", 503)
    response = RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)
    # Lax, not strict: the cookie must come back with the provider's redirect, a top-level GET from its site.
    response.set_cookie(PENDING_COOKIE, pending, max_age=PENDING_MAX_AGE, httponly=True, samesite="lax",
                        path=PENDING_PATH, secure=is_https(request))
    return response


@router.get("/callback")
async def sso_callback(request: Request, sso: SsoDep, helper: SessionsDep,
                       sb_sso: Annotated[str | None, Cookie()] = None) -> HTMLResponse:
    """Verify the provider's answer; then a session for the person, set as the password sign-in sets it."""
    try:
        user, next_url = await sso.complete(sb_sso, dict(request.query_params))
    except SsoRefused as refused:
        response = _login_page(request, helper, "/admin", refused.message, refused.status_code)
    except SsoUnavailable as error:
        response = _login_page(request, helper, "/admin", f"Single sign-on is unavailable: {error.message}.", 503)
    else:
        cookie = await to_thread.run_sync(helper.issue, user)
        # A page that moves on, not a redirect: after the provider's cross-site redirect a browser would not
        # send the SameSite=Strict session cookie on the next hop; a navigation from this page does.
        response = render(request, helper, "admin/sso_signed_in.html", {"next": next_url, "actor": None})
        response.set_cookie(AdminSessions.COOKIE, cookie, max_age=helper.max_age, httponly=True,
                            samesite="strict", path="/admin", secure=is_https(request))
    response.delete_cookie(PENDING_COOKIE, path=PENDING_PATH)  # one sign-in, one use
    return response


def _login_page(request: Request, helper: AdminSessions, next_url: str, error: str, status: int) -> HTMLResponse:
    return render(request, helper, "admin/login.html", {"next": _safe_next(next_url), "actor": None,
                                                        "error": error}, status_code=status)
