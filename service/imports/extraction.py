"""Main content only: trafilatura for HTML (no nav, header, footer, cookie banner or script), pypdf for PDF."""

from __future__ import annotations

import io
import logging
import re

import lxml.html
import trafilatura
from lxml.etree import ParserError
from pypdf import PdfReader
from pypdf.errors import PdfReadError

from .errors import PageFailed, PageSkipped
from .linklists import LINK_LIST_REASON, is_link_list

# trafilatura logs every page it finds too short at WARNING; the import reports those itself.
logging.getLogger("trafilatura").setLevel(logging.ERROR)
_SPACE = re.compile(r"\s+")
# Page chrome dropped before extraction: on a short article trafilatura's fallbacks may otherwise keep
# the header and navigation next to the few paragraphs of content.
CHROME_XPATHS = ["//header", "//nav", "//footer", "//aside", "//*[@role='navigation' or @role='banner']",
                 "//*[contains(@class, 'cookie') or contains(@id, 'cookie') or contains(@class, 'consent')]"]


def _text(value: str | None) -> str:
    return _SPACE.sub(" ", value or "").strip()


def html_title(tree: lxml.html.HtmlElement) -> str:
    """The page's own title: og:title, else the first h1, else <title>."""
    for path in ("//meta[@property='og:title']/@content", "//h1", "//title"):
        found = tree.xpath(path)
        if found:
            value = found[0] if isinstance(found[0], str) else found[0].text_content()
            if _text(value):
                return _text(value)[:500]
    return ""


def heading_anchors(tree: lxml.html.HtmlElement) -> dict[str, str]:
    """Heading text -> its id (or the id of an anchor inside it), so a section can link to `page#id`."""
    anchors: dict[str, str] = {}
    for heading in tree.xpath("//h2|//h3"):
        ident = heading.get("id") or next((a.get("id") or a.get("name") for a in heading.xpath(".//a[@id or @name]")),
                                          None)
        text = _text(heading.text_content())
        if ident and text and text not in anchors:
            anchors[text] = ident
    return anchors


def extract_html(html: str | bytes, url: str, *, skip_link_lists: bool = True) -> tuple[str, str, dict[str, str]]:
    """(title, main content as Markdown, heading anchors) of an HTML page; PageSkipped when it has no article.

    A page that is a list of links to the source's other pages (an index or category page) is skipped unless
    `skip_link_lists` is off (an export's article body is an article by definition).
    """
    try:
        tree = lxml.html.document_fromstring(html)
    except (ParserError, ValueError) as error:
        raise PageFailed(url, f"not readable as HTML ({error})") from None
    if skip_link_lists and is_link_list(tree, url, CHROME_XPATHS):
        raise PageSkipped(url, LINK_LIST_REASON)
    markdown = trafilatura.extract(html, url=url, output_format="markdown", include_links=False,
                                   include_comments=False, include_tables=True, include_images=False,
                                   favor_precision=True, deduplicate=False, prune_xpath=CHROME_XPATHS)
    if not markdown or not markdown.strip():
        raise PageSkipped(url, "no main content found (an index or empty page)")
    title = html_title(tree) or url
    return title, drop_title_heading(markdown, title), heading_anchors(tree)


def drop_title_heading(markdown: str, title: str) -> str:
    """The Markdown without a leading `# Title` line that repeats the title."""
    lines = markdown.strip().splitlines()
    if lines and lines[0].startswith("# ") and _text(lines[0][2:]).lower() == title.lower():
        lines = lines[1:]
    return "\n".join(lines).strip()


def extract_pdf(data: bytes, url: str) -> tuple[str, str]:
    """(title, text) of a PDF; PageFailed when it cannot be read or has no text (a scan)."""
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise PageFailed(url, "the PDF is encrypted")
        pages = [page.extract_text() or "" for page in reader.pages]
        title = _text(reader.metadata.title if reader.metadata else None)
    except (PdfReadError, ValueError, KeyError, TypeError) as error:
        raise PageFailed(url, f"not a readable PDF ({error})") from None
    text = "\n\n".join(page.strip() for page in pages if page.strip())
    if not text:
        raise PageFailed(url, f"the PDF has no text ({len(pages)} pages, perhaps scanned images): run OCR first")
    return title, text


def split_markdown_title(text: str, fallback: str) -> tuple[str, str]:
    """(title, body) of a Markdown file: its first `# ` heading, else `fallback`."""
    lines = text.strip().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("# "):
            return _text(line[2:])[:500] or fallback, "\n".join(lines[:i] + lines[i + 1:]).strip()
        if line.strip():
            break
    return fallback, text.strip()
