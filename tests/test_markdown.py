"""The safe Markdown subset the admin pages render for bot and agent replies (the widget's subset)."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from service.markdown import LINK_REL, render_markdown

ALLOWED_TAGS = {"p", "br", "strong", "em", "code", "pre", "ul", "ol", "li", "a"}
ALLOWED_ATTRIBUTES = {"href", "target", "rel", "start", "class"}


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text, of an HTML fragment."""

    def __init__(self, fragment: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text = ""
        self.feed(str(fragment))  # a plain str: Markup would escape the pieces again
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text += data


@pytest.mark.parametrize(("source", "expected"), [
    ("**Dashboard slow only in Safari**\n\nClear the cache.",
     "<p><strong>Dashboard slow only in Safari</strong></p>\n<p>Clear the cache.</p>"),
    ("Do this *first*: run `acme export --all`", "<p>Do this <em>first</em>: run <code>acme export --all</code></p>"),
    ("line one\nline two", "<p>line one<br>\nline two</p>"),
    ("- Open **Settings**\n- Run it", "<ul>\n<li>Open <strong>Settings</strong></li>\n<li>Run it</li>\n</ul>"),
    ("3. third\n4. fourth", '<ol start="3">\n<li>third</li>\n<li>fourth</li>\n</ol>'),
    ("```\nacme export --since 2024-01-01\n```", "<pre><code>acme export --since 2024-01-01\n</code></pre>"),
    ("## Heading", "<p><strong>Heading</strong></p>"),
    ("[status](https://status.acme.example/(eu))",
     f'<p><a href="https://status.acme.example/(eu)" target="_blank" rel="{LINK_REL}">status</a></p>'),
    ("Write to <support@acme.example>",
     f'<p>Write to <a href="mailto:support@acme.example" target="_blank" rel="{LINK_REL}">'
     "support@acme.example</a></p>"),
    ("See https://acme.example/docs.",
     f'<p>See <a href="https://acme.example/docs" target="_blank" rel="{LINK_REL}">https://acme.example/docs</a>.</p>'),
    ("window.__name and snake_case_word", "<p>window.__name and snake_case_word</p>"),
])
def test_the_widget_subset_renders_as_html(source: str, expected: str) -> None:
    assert render_markdown(source).strip() == expected


@pytest.mark.parametrize(("source", "visible"), [
    ("<img src=x onerror=alert(1)>", "<img src=x onerror=alert(1)>"),
    ("<script>window.__pwned=2</script>", "<script>window.__pwned=2</script>"),
    ('<a href="javascript:alert(1)">x</a>', '<a href="javascript:alert(1)">x</a>'),
    ("[x](javascript:alert(1))", "[x](javascript:alert(1))"),
    ("[x](JaVaScRiPt:alert(1))", "[x](JaVaScRiPt:alert(1))"),
    ("[x](data:text/html;base64,PHNjcmlwdD4=)", "[x](data:text/html;base64,PHNjcmlwdD4=)"),
    ("[x](vbscript:msgbox)", "[x](vbscript:msgbox)"),
    ("[x](/admin/logout)", "[x](/admin/logout)"),
    ("[x](//evil.example)", "[x](//evil.example)"),
    ("![a](http://x/y.png)", "a"),
    ("![a](javascript:alert(1))", "![a](javascript:alert(1))"),
    ('[x](https://a.example/" onmouseover="alert(1))', '[x](https://a.example/" onmouseover="alert(1))'),
    ("[ref]\n\n[ref]: javascript:alert(1)", "[ref][ref]: javascript:alert(1)"),
    ("<https://a.example/x onclick=alert(1)>", "<https://a.example/x onclick=alert(1)>"),
    ("| a |\n|---|\n| <b>x</b> |", "| a |\n|---|\n| <b>x</b> |"),
    ("&lt;img src=x onerror=alert(1)&gt;", "&lt;img src=x onerror=alert(1)&gt;"),
])
def test_hostile_input_stays_inert(source: str, visible: str) -> None:
    rendered = Elements(render_markdown(source))

    assert rendered.text.replace("\n", "") == visible.replace("\n", ""), "shown as text, not dropped"
    for tag, attributes in rendered.tags:
        assert tag in ALLOWED_TAGS, f"{tag} is outside the subset"
        assert set(attributes) <= ALLOWED_ATTRIBUTES, f"{attributes} on {tag}"
        if tag == "a":
            assert (attributes["href"] or "").startswith(("https://", "http://", "mailto:")), attributes
            assert attributes["rel"] == LINK_REL


def test_an_image_becomes_a_link_and_is_never_loaded() -> None:
    rendered = Elements(render_markdown("![tracker](https://evil.example/pixel.png)"))

    assert rendered.tags == [("p", {}), ("a", {"href": "https://evil.example/pixel.png", "target": "_blank",
                                               "rel": LINK_REL})]
    assert rendered.text.strip() == "tracker"
