"""Link-list pages (a help center's index, category and section pages): lists of other pages, not articles."""

from __future__ import annotations

import copy
import re
from urllib.parse import urldefrag, urljoin, urlsplit

import lxml.html

# A page is a list of links when at least this share of its main content's text sits in entries that open
# with a link to another page of the same source (list items, paragraphs, table rows or cards like
# `<li><a href="/articles/x">Title</a><p>summary</p></li>`); a link inside a sentence does not make an entry.
# Chosen on the Tallybook help center (tests/data/helpcenter/): its 7 hub pages measure 0.89 (the index) to
# 0.98 (categories), its 33 articles 0.00, and at most 0.16 if their "Related articles" aside (dropped as page
# chrome before this count) were content; 0.6 sits between with room both ways.
LINK_LIST_SHARE = 0.6
# A page needs at least this many such entries: a one-sentence article that opens with a link is not a hub,
# while a category page that lists two articles is.
LINK_LIST_MIN_ENTRIES = 2
LINK_LIST_REASON = "a list of links, not an article"
_SPACE = re.compile(r"\s+")
_BLOCK_TAGS = ("li", "p", "dd", "dt", "tr")
_BLOCKS = "|".join(f".//{tag}" for tag in _BLOCK_TAGS)
_MAIN = ("//main", "//*[@role='main']", "//article", "//body")


def _text(element: lxml.html.HtmlElement) -> str:
    return _SPACE.sub(" ", element.text_content()).strip()


def _same_source(href: str, page: str) -> bool:
    """Whether `href` leads to another page of the source that holds `page` (same host, not the page itself)."""
    target = urldefrag(urljoin(page, href.strip()))[0]
    parts = urlsplit(target)
    if parts.scheme not in ("", "http", "https"):
        return False
    return parts.netloc == urlsplit(page).netloc and target != urldefrag(page)[0]


def _link_led(block: lxml.html.HtmlElement, links: set[lxml.html.HtmlElement]) -> bool:
    """Whether the block opens with a link to another page (a list entry), not a link inside a sentence."""
    first = next(block.iter("a"), None)
    return first is not None and first in links and _text(block).startswith(_text(first) or "\0")


def link_list_share(tree: lxml.html.HtmlElement, url: str, prune_xpaths: list[str]) -> tuple[float, int]:
    """(share of the main content's text in blocks that open with a link to another page of the source,
    how many such blocks)."""
    tree = copy.deepcopy(tree)
    for path in [*prune_xpaths, "//script", "//style", "//template"]:
        for element in tree.xpath(path):
            element.drop_tree()
    main = next((found[0] for found in (tree.xpath(path) for path in _MAIN) if found), tree)
    total = len(_text(main))
    links = {a for a in main.xpath(".//a[@href]") if _same_source(a.get("href", ""), url)}
    if not total or not links:
        return 0.0, 0
    led = [block for block in main.xpath(_BLOCKS) if _link_led(block, links)]
    outer = set(led)
    entries = [block for block in led if not any(up in outer for up in block.iterancestors())]
    # Links set as cards outside any block (`<a><h3>Title</h3><p>summary</p></a>`) are entries of their own.
    entries += [a for a in links if not any(up in outer for up in a.iterancestors())
                and not any(b.tag in _BLOCK_TAGS for b in a.iterancestors())]
    return min(sum(len(_text(entry)) for entry in entries) / total, 1.0), len(entries)


def is_link_list(tree: lxml.html.HtmlElement, url: str, prune_xpaths: list[str]) -> bool:
    """Whether the page is mostly a list of links to the source's other pages (a hub), not an article."""
    share, entries = link_list_share(tree, url, prune_xpaths)
    return entries >= LINK_LIST_MIN_ENTRIES and share >= LINK_LIST_SHARE
