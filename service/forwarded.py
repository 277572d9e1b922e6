"""What a request looked like to the client: its address and scheme behind a proxy, and if a form is same-site.

`X-Forwarded-Proto` is believed only from SUPPORTBOT_TRUSTED_PROXIES (as `X-Forwarded-For` is): from
anyone else it would let a client switch cookie flags or the allowed origin at will.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import Request

from .errors import Forbidden
from .ratelimit import RateLimits


def _peer(request: Request) -> str | None:
    return request.client.host if request.client else None


def client_ip(request: Request, limits: RateLimits) -> str:
    """The client's address (X-Forwarded-For believed only from SUPPORTBOT_TRUSTED_PROXIES)."""
    return limits.client_ip(_peer(request), request.headers.get("x-forwarded-for"))


def request_scheme(request: Request, limits: RateLimits) -> str:
    """`https` or `http` as the client used it: the trusted proxy's X-Forwarded-Proto, else the connection's."""
    forwarded = request.headers.get("x-forwarded-proto")
    if forwarded and limits.is_trusted(_peer(request)):
        # Each proxy appends its own: the first value is what the client spoke to the outermost one.
        scheme = forwarded.split(",")[0].strip().lower()
        if scheme in {"http", "https"}:
            return scheme
    return request.url.scheme


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def require_same_origin(request: Request, limits: RateLimits, public_url: str) -> None:
    """Refuse (403) a form post whose Origin (or, without one, Referer) is another site."""
    own = {_origin(public_url), f"{request_scheme(request, limits)}://{request.headers.get('host', '')}".lower()}
    origin = request.headers.get("origin")
    referer = request.headers.get("referer")
    # A browser always sends Origin on a form post ("null" from sandboxes and opaque pages: refused too);
    # neither header means a script or tool, which still needs the session's CSRF token.
    claimed = origin if origin is not None else (_origin(referer) if referer else None)
    if claimed is not None and claimed.lower().rstrip("/") not in own:
        raise Forbidden("this form was posted from another site", code="foreign_origin")
