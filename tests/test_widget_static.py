"""The widget's routes: widget.js with caching headers and ETag, the demo page with a strict CSP."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from service.api import create_app
from service.api.widget import STATIC_DIR, Asset, accepts_gzip, bundle_widget, demo_csp
from service.runtime import Runtime

from .conftest import make_settings


@pytest.fixture
async def client(tmp_path: Path, sqlite_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The whole app, as `supportbot serve` builds it; these routes do not depend on the database engine."""
    runtime = Runtime.build(make_settings(tmp_path, sqlite_url))
    transport = httpx.ASGITransport(app=create_app(runtime=runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://supportbot.test") as c:
        yield c
    await runtime.aclose()


async def test_widget_js_is_served_with_caching_headers_and_a_strong_etag(client: httpx.AsyncClient) -> None:
    response = await client.get("/widget.js", headers={"Accept-Encoding": "identity"})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert response.headers["cache-control"] == "public, max-age=300"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["etag"] == f'"{hashlib.sha256(response.content).hexdigest()}"'
    assert "content-encoding" not in response.headers
    assert response.content == bundle_widget()


async def test_widget_js_is_gzipped_for_browsers_that_accept_it(client: httpx.AsyncClient) -> None:
    plain = await client.get("/widget.js", headers={"Accept-Encoding": "identity"})
    response = await client.get("/widget.js", headers={"Accept-Encoding": "gzip, deflate, br"})

    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["vary"] == "Accept-Encoding"
    assert response.content == plain.content  # httpx decompresses
    assert int(response.headers["content-length"]) < len(plain.content) / 2
    assert response.headers["etag"] != plain.headers["etag"], "each representation has its own strong ETag"


@pytest.mark.parametrize("if_none_match", ["{etag}", "W/{etag}", '"other", {etag}', "*"])
async def test_browser_with_the_current_version_gets_304_without_a_body(
    client: httpx.AsyncClient, if_none_match: str
) -> None:
    first = await client.get("/widget.js")

    again = await client.get("/widget.js", headers={"If-None-Match": if_none_match.format(etag=first.headers["etag"])})

    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == first.headers["etag"]
    assert again.headers["cache-control"] == "public, max-age=300"


async def test_browser_with_an_old_version_gets_the_new_one(client: httpx.AsyncClient) -> None:
    response = await client.get("/widget.js", headers={"If-None-Match": '"an-old-version"'})

    assert response.status_code == 200
    assert response.content.startswith(b"/*! supportbot widget.js")


def test_bundle_keeps_dompurify_and_its_licence_inside_one_closure() -> None:
    bundle = bundle_widget().decode()
    purify = (STATIC_DIR / "purify.min.js").read_text(encoding="utf-8")

    assert purify.startswith("/*! @license DOMPurify")
    assert purify.splitlines()[0] in bundle
    assert (STATIC_DIR / "widget.js").read_text(encoding="utf-8") in bundle
    assert "sourceMappingURL" not in bundle
    assert bundle.index("var module = { exports: {} }") < bundle.index("@license DOMPurify")
    assert bundle.rstrip().endswith("})();")


def test_etag_follows_the_files_content(tmp_path: Path) -> None:
    for name in ("purify.min.js", "widget.js"):
        (tmp_path / name).write_text((STATIC_DIR / name).read_text(encoding="utf-8"), encoding="utf-8")
    before = Asset.of(bundle_widget(tmp_path))
    (tmp_path / "widget.js").write_text("/* changed */", encoding="utf-8")

    after = Asset.of(bundle_widget(tmp_path))

    assert before.etag != after.etag
    assert not after.matches(before.etag)


@pytest.mark.parametrize(("header", "expected"), [
    ("gzip", True), ("br, gzip;q=0.8", True), ("*", True), (None, False), ("identity", False), ("gzip;q=0", False),
])
def test_gzip_is_used_only_when_accepted(header: str | None, expected: bool) -> None:
    assert accepts_gzip(header) is expected


async def test_demo_page_is_sent_with_a_strict_content_security_policy(client: httpx.AsyncClient) -> None:
    response = await client.get("/")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = dict(part.strip().split(" ", 1) for part in response.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'"
    assert policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "strict-origin-when-cross-origin"


async def test_demo_page_embeds_the_widget_like_a_customer_and_needs_no_inline_script(
    client: httpx.AsyncClient
) -> None:
    page = (await client.get("/")).text

    scripts = re.findall(r"<script\b([^>]*)>", page)
    assert len(scripts) == 1
    assert 'src="/widget.js"' in scripts[0] and " async" in scripts[0]
    assert "Acme Analytics" in page


def test_demo_csp_allows_exactly_the_pages_own_inline_styles() -> None:
    page = "<style>a { color: red }</style><p>x</p><style media='print'>p{}</style>"

    policy = demo_csp(page)

    style_src = next(part for part in policy.split("; ") if part.startswith("style-src"))
    expected = [base64.b64encode(hashlib.sha256(css.encode()).digest()).decode() for css in ("a { color: red }", "p{}")]
    assert style_src == f"style-src 'self' 'sha256-{expected[0]}' 'sha256-{expected[1]}'"


async def test_widget_routes_stay_out_of_the_api_schema(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]

    assert "/widget.js" not in paths and "/" not in paths



def test_widget_never_parses_a_string_as_html() -> None:
    """Replies, action summaries and results reach the page as text nodes or the safe Markdown path only."""
    source = (STATIC_DIR / "widget.js").read_text(encoding="utf-8")

    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "DOMParser",
                 "createContextualFragment", "srcdoc"):
        assert sink not in source, sink
