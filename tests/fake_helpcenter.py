"""A small fake help center served over real HTTP: pages the test changes, requests it can inspect."""

from __future__ import annotations

import asyncio
import io
import threading
from dataclasses import dataclass, field

from pypdf import PdfWriter
from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

# Words that live only in the page chrome: none of them may reach an imported entry.
CHROME_WORDS = ("NAVWORD", "HEADERWORD", "COOKIEWORD", "SCRIPTWORD", "FOOTERWORD")


@dataclass
class Page:
    """One response: body, status, content type, headers; `slow` holds it until the test ends."""

    body: bytes | str = b""
    status: int = 200
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    slow: bool = False


@dataclass
class FakeHelpCenter:
    """Pages by path; answers 304 when a page's ETag is sent back; records every request's path and headers."""

    pages: dict[str, Page] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def paths_requested(self) -> list[str]:
        return [path for path, _ in self.requests]

    def app(self) -> Starlette:
        async def handle(request: Request) -> Response:
            path = request.url.path
            self.requests.append((path, dict(request.headers)))
            page = self.pages.get(path)
            if page is None:
                return Response("not found", status_code=404, media_type="text/plain")
            if page.slow:
                while not self.release.is_set():
                    await asyncio.sleep(0.05)
            etag = page.headers.get("ETag")
            if etag and request.headers.get("if-none-match") == etag:
                return Response(status_code=304, headers={"ETag": etag})
            return Response(page.body, status_code=page.status, headers=page.headers, media_type=page.content_type)

        return Starlette(routes=[Route("/{path:path}", handle)])


def article(title: str, sections: list[tuple[str, str, str]], intro: str = "", links: tuple[str, ...] = ()) -> str:
    """A help-center page: nav, header, cookie banner, the article (h2 sections with ids), footer, script."""
    body = "".join(f'<h2 id="{ident}">{heading}</h2><p>{text}</p>' for heading, ident, text in sections)
    nav = "".join(f'<a href="{href}">{href}</a> ' for href in links)
    return f"""<!doctype html><html><head><title>{title} | Example Help</title>
<meta property="og:title" content="{title}"><script>var SCRIPTWORD = "tracking";</script></head>
<body><header>HEADERWORD Example Help Center <nav>NAVWORD {nav}<a href="/help/">Home</a></nav></header>
<div class="cookie-banner" id="cookie-consent">COOKIEWORD We use cookies. <button>Accept</button></div>
<main><article><h1>{title}</h1><p>{intro}</p>{body}</article></main>
<footer>FOOTERWORD Copyright Example Inc. <a href="/help/terms">Terms</a></footer>
<script>console.log("SCRIPTWORD")</script></body></html>"""


def sitemap(base: str, paths: list[str]) -> str:
    """A sitemap listing `paths` under `base`."""
    urls = "".join(f"<url><loc>{base}{path}</loc></url>" for path in paths)
    return f'<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>'


def pdf(text: str | None, title: str | None = None) -> bytes:
    """A one-page PDF showing `text` in Helvetica (None: a blank page, as a scan without OCR reads)."""
    writer = PdfWriter()
    page = writer.add_blank_page(612, 792)
    if text is not None:
        font = DictionaryObject({NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
                                 NameObject("/BaseFont"): NameObject("/Helvetica")})
        page[NameObject("/Resources")] = DictionaryObject(
            {NameObject("/Font"): DictionaryObject({NameObject("/F1"): writer._add_object(font)})})
        content = DecodedStreamObject()
        content.set_data(f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode("latin-1"))
        page[NameObject("/Contents")] = writer._add_object(content)
    if title:
        writer.add_metadata({"/Title": title})
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
