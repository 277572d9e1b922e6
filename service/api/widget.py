"""The embeddable chat widget: `GET /widget.js` (cached, with a strong ETag) and the demo page at `/`."""

from __future__ import annotations

import base64
import gzip
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Header, Response
from fastapi.responses import HTMLResponse

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
WIDGET_CACHE_CONTROL = "public, max-age=300"

router = APIRouter(tags=["widget"])


@dataclass(frozen=True)
class Asset:
    """A file served from memory, plain and gzipped, each with a strong ETag from the file's sha256."""

    body: bytes
    gzipped: bytes
    etag: str
    gzip_etag: str

    @classmethod
    def of(cls, body: bytes) -> Asset:
        """The asset for `body`."""
        digest = hashlib.sha256(body).hexdigest()
        # mtime=0: the same file always compresses to the same bytes, on every replica.
        return cls(body=body, gzipped=gzip.compress(body, compresslevel=9, mtime=0),
                   etag=f'"{digest}"', gzip_etag=f'"{digest}-gzip"')

    def matches(self, if_none_match: str | None) -> bool:
        """True when an If-None-Match header names this version (weak comparison, as RFC 9110 asks for GET)."""
        if if_none_match is None:
            return False
        tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
        return "*" in tags or self.etag in tags or self.gzip_etag in tags


def accepts_gzip(accept_encoding: str | None) -> bool:
    """True when an Accept-Encoding header allows gzip (and does not refuse it with q=0)."""
    for part in (accept_encoding or "").lower().split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip() in {"gzip", "*"}:
            return params.replace(" ", "") not in {"q=0", "q=0.0", "q=0.00", "q=0.000"}
    return False


def bundle_widget(static_dir: Path = STATIC_DIR) -> bytes:
    """widget.js and the vendored DOMPurify in one closure: one request, and no globals left on the host page."""
    purify = (static_dir / "purify.min.js").read_text(encoding="utf-8")
    purify = re.sub(r"^//# sourceMappingURL=.*$", "", purify, flags=re.MULTILINE).strip()
    widget = (static_dir / "widget.js").read_text(encoding="utf-8")
    # DOMPurify's UMD wrapper takes the CommonJS branch when `module` and `exports` exist, so it neither
    # sets window.DOMPurify nor calls a host page's AMD `define`.
    return "\n".join([
        "/*! supportbot widget.js: the chat widget (MIT) and DOMPurify (Apache-2.0 OR MPL-2.0); licences below */",
        "(function () {",
        "var module = { exports: {} }, exports = module.exports;",
        purify,
        "var DOMPurify = module.exports;",
        widget,
        "})();",
        "",
    ]).encode("utf-8")


def demo_csp(html: str) -> str:
    """The demo page's Content-Security-Policy: scripts and requests to 'self' only, its inline styles by hash."""
    hashes = [
        "'sha256-" + base64.b64encode(hashlib.sha256(block.encode("utf-8")).digest()).decode("ascii") + "'"
        for block in re.findall(r"<style[^>]*>(.*?)</style>", html, flags=re.DOTALL | re.IGNORECASE)
    ]
    return "; ".join([
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        " ".join(["style-src 'self'", *hashes]),
        "img-src 'self' data:",
        "font-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ])


# Read once at import: the files change with a deploy, not while the process runs.
WIDGET = Asset.of(bundle_widget())
DEMO_HTML = (STATIC_DIR / "demo.html").read_text(encoding="utf-8")
WIDGET_HEADERS = {
    "Cache-Control": WIDGET_CACHE_CONTROL,
    "Vary": "Accept-Encoding",
    "X-Content-Type-Options": "nosniff",
    # Loaded by customers' pages, some of which set Cross-Origin-Embedder-Policy.
    "Cross-Origin-Resource-Policy": "cross-origin",
}
DEMO_HEADERS = {
    "Content-Security-Policy": demo_csp(DEMO_HTML),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "X-Frame-Options": "DENY",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cache-Control": "no-cache",
}


@router.get("/widget.js", include_in_schema=False)
async def widget_script(
    if_none_match: Annotated[str | None, Header()] = None,
    accept_encoding: Annotated[str | None, Header()] = None,
) -> Response:
    """The widget customers embed (gzipped when the browser accepts it); 304 when it already has this version."""
    compressed = accepts_gzip(accept_encoding)
    headers = {**WIDGET_HEADERS, "ETag": WIDGET.gzip_etag if compressed else WIDGET.etag}
    if WIDGET.matches(if_none_match):
        return Response(status_code=304, headers=headers)
    if compressed:
        headers["Content-Encoding"] = "gzip"
    return Response(WIDGET.gzipped if compressed else WIDGET.body, media_type="text/javascript", headers=headers)


@router.get("/", include_in_schema=False)
async def demo_page() -> HTMLResponse:
    """A demo host page ("Acme Analytics") that embeds the widget the way a customer would."""
    return HTMLResponse(DEMO_HTML, headers=DEMO_HEADERS)
