"""Which pages of a help center to read: robots.txt, then its sitemaps, else same-site links breadth-first."""

from __future__ import annotations

import posixpath
from collections import deque
from collections.abc import Mapping
from urllib.parse import urldefrag, urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import lxml.etree
import lxml.html

from .documents import Document, Listing, NotModified, Problem
from .errors import ImportCapReached, ImportFailed, PageFailed, PageSkipped
from .extraction import extract_html, extract_pdf
from .fetching import USER_AGENT, Fetched, Fetcher, same_site

MAX_SITEMAPS = 20
_ASSETS = {".css", ".js", ".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".ico", ".zip", ".gz", ".mp4",
           ".woff", ".woff2", ".ttf", ".xml", ".json"}
_HTML_TYPES = ("text/html", "application/xhtml+xml")
# Sitemaps are read without DTDs, entities or network access (no XML bombs, no external fetches).
_XML = lxml.etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)

Validators = Mapping[str, tuple[str | None, str | None]]  # url -> (etag, last_modified) of the stored copy


def scope_of(start_url: str) -> str:
    """The path prefix pages must be under: the start page's folder (`/help/` for `/help` or `/help/a.html`)."""
    path = urlsplit(start_url).path or "/"
    if path.endswith("/"):
        return path
    last = path.rsplit("/", 1)[-1]
    return path.rsplit("/", 1)[0] + "/" if "." in last else path + "/"


def in_scope(url: str, start_url: str) -> bool:
    """Same site as the start page and under its folder."""
    path = urlsplit(url).path or "/"
    scope = scope_of(start_url)
    return same_site(url, start_url) and (path.startswith(scope) or path + "/" == scope)


def read_robots(fetcher: Fetcher, origin: str) -> RobotFileParser:
    """robots.txt of the site (RFC 9309: missing means all allowed; a server error means none is)."""
    robots = RobotFileParser()
    try:
        fetched = fetcher.get(urljoin(origin, "/robots.txt"))
    except PageFailed as error:
        raise ImportFailed(fetcher.start_url, f"robots.txt could not be read ({error.reason})") from None
    if fetched.status >= 500:
        raise ImportFailed(fetcher.start_url, f"robots.txt answered HTTP {fetched.status}; not crawling")
    robots.parse(fetched.body.decode("utf-8", "replace").splitlines() if fetched.status == 200 else [])
    return robots


def sitemap_urls(fetcher: Fetcher, robots: RobotFileParser, origin: str) -> list[str]:
    """Page URLs from the sitemaps named in robots.txt (else /sitemap.xml), following sitemap index files."""
    queue = deque(robots.site_maps() or [urljoin(origin, "/sitemap.xml")])
    seen: set[str] = set()
    pages: list[str] = []
    while queue and len(seen) < MAX_SITEMAPS:
        url = queue.popleft()
        if url in seen or not same_site(url, origin):
            continue
        seen.add(url)
        try:
            fetched = fetcher.get(url)
        except PageFailed:
            continue
        if fetched.status != 200:
            continue
        locs, nested = _parse_sitemap(fetched.body)
        queue.extend(nested)
        pages.extend(locs)
    return list(dict.fromkeys(urldefrag(p)[0] for p in pages))


def _parse_sitemap(body: bytes) -> tuple[list[str], list[str]]:
    """(page URLs, nested sitemap URLs) of a sitemap or sitemap index; nothing when it is not one."""
    try:
        root = lxml.etree.fromstring(body, parser=_XML)
    except lxml.etree.XMLSyntaxError:
        return [], []
    locs = [t.strip() for t in _strings(root.xpath("//*[local-name()='loc']/text()"))]
    if lxml.etree.QName(root).localname == "sitemapindex":
        return [], locs
    return locs, []


def _strings(result: object) -> list[str]:
    """The strings of an XPath result (which lxml types as a union of everything XPath can return)."""
    return [str(value) for value in result] if isinstance(result, list) else []


def page_links(body: bytes, base_url: str) -> list[str]:
    """Absolute URLs of the page's <a href> links, without fragments."""
    try:
        tree = lxml.html.document_fromstring(body)
    except (lxml.etree.ParserError, ValueError):
        return []
    links = []
    for href in _strings(tree.xpath("//a/@href")):
        url = urldefrag(urljoin(base_url, href.strip()))[0]
        if posixpath.splitext(urlsplit(url).path)[1].lower() not in _ASSETS:
            links.append(url)
    return links


def read_page(fetched: Fetched, url: str) -> Document | NotModified | Problem:
    """A fetched page as a document, or the problem with it (404/410 = gone; not HTML = skipped)."""
    if fetched.status == 304:
        return NotModified(url)
    if fetched.status in (404, 410):
        return Problem(url, f"HTTP {fetched.status}", "gone")
    if fetched.status != 200:
        return Problem(url, f"HTTP {fetched.status}", "failed")
    kind = fetched.content_type.split(";", 1)[0].strip().lower()
    try:
        if kind in _HTML_TYPES:
            title, markdown, anchors = extract_html(fetched.body, url)
        elif kind == "application/pdf":
            title, markdown = extract_pdf(fetched.body, url)
            title, anchors = title or posixpath.basename(urlsplit(url).path), {}
        else:
            return Problem(url, f"not HTML ({kind or 'no content type'})", "skipped")
    except PageSkipped as error:
        return Problem(url, error.reason, "skipped")
    except PageFailed as error:
        return Problem(url, error.reason, "failed")
    return Document(url, title, markdown, anchors, fetched.etag, fetched.last_modified)


def crawl(fetcher: Fetcher, known: Validators) -> Listing:
    """Read the site: the sitemap's pages if it has any under the start path, else the pages links reach."""
    start = urldefrag(fetcher.start_url)[0]
    origin = urljoin(start, "/")
    listing = Listing()
    try:
        robots = read_robots(fetcher, origin)
        mapped = [u for u in sitemap_urls(fetcher, robots, origin) if in_scope(u, start)]
        queue = deque(mapped or [start, *known])
        follow_links = not mapped
        _visit(fetcher, robots, queue, follow_links, start, known, listing)
    except ImportCapReached as error:
        listing.complete, listing.note = False, str(error)
    if not listing.items and listing.complete:
        raise ImportFailed(start, "no pages found (no sitemap, and the start page links to none under its path)")
    return listing


def _visit(fetcher: Fetcher, robots: RobotFileParser, queue: deque[str], follow_links: bool, start: str,
           known: Validators, listing: Listing) -> None:
    seen = set(queue)
    pages = 0
    while queue and pages < fetcher.limits.max_pages:
        url = queue.popleft()
        if not robots.can_fetch(USER_AGENT, url):
            listing.items.append(Problem(url, "disallowed by robots.txt", "skipped"))
            continue
        pages += 1
        etag, modified = known.get(url, (None, None))
        try:
            fetched = fetcher.get(url, etag, modified)
        except PageFailed as error:
            if url == start and not known and not listing.items:
                raise ImportFailed(start, error.reason) from None
            listing.items.append(Problem(url, error.reason, "failed"))
            continue
        item = read_page(fetched, url)
        listing.items.append(item)
        if follow_links and fetched.status == 200:
            for link in _new_links(fetched, start, seen):
                seen.add(link)
                queue.append(link)
    if queue:
        listing.note = f"stopped at {fetcher.limits.max_pages} pages (--max-pages)"


def _new_links(fetched: Fetched, start: str, seen: set[str]) -> list[str]:
    if not fetched.content_type.lower().startswith(_HTML_TYPES):
        return []
    return [link for link in dict.fromkeys(page_links(fetched.body, fetched.url))
            if link not in seen and in_scope(link, start)]
