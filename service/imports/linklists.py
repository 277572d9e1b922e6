"""Link-list pages (a help center's index, category and section pages): lists of other pages, not articles."""

from __future__ import annotations

import copy
import re
from urllib.parse import urldefrag, urljoin, urlsplit

import lxml.html

# A page is a list of links when at least this share of its main content's text sits in blocks (list items,
# paragraphs, table rows, definitions) that carry a link to another page of the same source. Chosen on the
# Tallybook help center (tests/data/helpcenter/): its 7 hub pages measure 0.89 (index) to 0.98 (categories),
# its 33 articles 0.00 (0.16 at most with their "Related articles" aside counted as content); 0.6 leaves room
# both ways (an article whose every paragraph links elsewhere is a list of links in all but name).
LINK_LIST_SHARE = 0.6
# Fewer links than this is a short page with a link or two, never a hub.
LINK_LIST_MIN_LINKS = 3
LINK_LIST_REASON = "a list of links, not an article"
_SPACE = re.compile(r"\s+")
_BLOCKS = ".//li|.//p|.//dd|.//dt|.//tr"
_MAIN = ("//main", "//*[@role='main']", "//article", "//body")


def _length(element: lxml.html.HtmlElement) -> int:
    return len(_SPACE.sub(" ", element.text_content()).strip())


def _same_source(href: str, page: str) -> bool:
    """Whether `href` leads to another page of the source that holds `page` (same host, not the page itself)."""
    target = urldefrag(urljoin(page, href.strip()))[0]
    parts = urlsplit(target)
    if parts.scheme not in ("", "http", "https"):
        return False
    return parts.netloc == urlsplit(page).netloc and target != urldefrag(page)[0]


def link_list_share(tree: lxml.html.HtmlElement, url: str, prune_xpaths: list[str]) -> tuple[float, int]:
    """(share of the main content's text in blocks that link to other pages of the source, how many links)."""
    tree = copy.deepcopy(tree)
    for path in [*prune_xpaths, "//script", "//style", "//template"]:
        for element in tree.xpath(path):
            element.drop_tree()
    main = next((found[0] for found in (tree.xpath(path) for path in _MAIN) if found), tree)
    total = _length(main)
    links = {a for a in main.xpath(".//a[@href]") if _same_source(a.get("href", ""), url)}
    if not total or not links:
        return 0.0, len(links)
    blocks = [block for block in main.xpath(_BLOCKS) if any(a in links for a in block.iter("a"))]
    outer = set(blocks)
    linked = sum(_length(block) for block in blocks if not any(up in outer for up in block.iterancestors()))
    # Links set as cards outside any block (`<a><h3>Title</h3><p>summary</p></a>`) count with their own text.
    linked += sum(_length(a) for a in links if not any(up in outer for up in a.iterancestors()))
    return min(linked / total, 1.0), len(links)


def is_link_list(tree: lxml.html.HtmlElement, url: str, prune_xpaths: list[str]) -> bool:
    """Whether the page is mostly a list of links to the source's other pages (a hub), not an article."""
    share, links = link_list_share(tree, url, prune_xpaths)
    return links >= LINK_LIST_MIN_LINKS and share >= LINK_LIST_SHARE
