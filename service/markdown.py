"""The safe Markdown subset of bot and agent replies, rendered to HTML on the server for the admin pages.

The same subset as the chat widget (service/static/widget.js): paragraphs with line breaks, **bold**,
*italic*, `code`, fenced code, lists, headings shown as a bold line, and links to http(s)/mailto only,
opened with rel="noopener noreferrer nofollow ugc". Images are never loaded: `![alt](url)` becomes a link.
Raw HTML stays visible text. Everything else (tables, quotes, rules, reference links) stays plain text.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.rules_core import StateCore
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from markupsafe import Markup, escape

LINK_SCHEMES = ("http:", "https:", "mailto:")
LINK_REL = "noopener noreferrer nofollow ugc"
# markdown-it rule names: the whole allow-list. HTML rules stay off (and html=False escapes raw HTML).
RULES = ["heading", "list", "fence", "newline", "escape", "backticks", "emphasis", "link", "image", "autolink",
         "linkify"]
# Underscore emphasis turns identifiers such as window.__name or snake_case_words into formatting.
UNDERSCORE_MARKUP = {"_", "__"}


def render_markdown(text: str) -> Markup:
    """Bot or agent text as safe HTML (the subset above); a Jinja filter on the admin pages."""
    return Markup(_parser().render(text))


def is_safe_link(url: str) -> bool:
    """Only http(s) and mailto targets become links; javascript:, data:, relative URLs stay text."""
    return url.strip().lower().startswith(LINK_SCHEMES)


@cache
def _parser() -> MarkdownIt:
    md = MarkdownIt("zero", {"html": False, "breaks": True, "linkify": True, "xhtmlOut": False, "maxNesting": 20})
    md.enable(RULES)
    md.validateLink = is_safe_link  # type: ignore[method-assign]
    if md.linkify is None:  # markdown-it-py imports its optional linkify-it-py lazily
        raise RuntimeError("linkify-it-py is not installed: pip install 'markdown-it-py[linkify]'")
    # Bare http(s) URLs only, as the widget: no "example.com" or e-mail guesses.
    md.linkify.set({"fuzzy_link": False, "fuzzy_email": False, "fuzzy_ip": False})
    md.core.ruler.before("text_join", "no_underscore_emphasis", _underscores_as_text)
    md.add_render_rule("link_open", _link_open)
    md.add_render_rule("image", _image_as_link)
    md.add_render_rule("heading_open", lambda *_: "<p><strong>")
    md.add_render_rule("heading_close", lambda *_: "</strong></p>\n")
    return md


def _underscores_as_text(state: StateCore) -> None:
    for block in state.tokens:
        for token in block.children or ():
            if token.type in {"em_open", "em_close", "strong_open", "strong_close"} and \
                    token.markup in UNDERSCORE_MARKUP:
                token.type, token.tag, token.nesting, token.content = "text", "", 0, token.markup


def _link_open(renderer: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict,
               env: EnvType) -> str:
    tokens[idx].attrSet("target", "_blank")
    tokens[idx].attrSet("rel", LINK_REL)
    return renderer.renderToken(tokens, idx, options, env)


def _image_as_link(renderer: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict,
                   env: EnvType) -> str:
    # An image would load from anywhere when the page opens (a tracking pixel); a link loads nothing.
    token = tokens[idx]
    src = str(token.attrGet("src") or "")
    alt = renderer.renderInlineAsText(token.children or [], options, env) or src
    return f'<a href="{escape(src)}" target="_blank" rel="{LINK_REL}">{escape(alt)}</a>'
