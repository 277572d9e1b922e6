"""Importing knowledge: a help center over real HTTP, folders, export files; bad input named clearly."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from service.api import create_app
from service.db import create_db_engine, make_session_factory
from service.imports.errors import PageFailed
from service.imports.fetching import Fetcher, FetchLimits, is_public
from service.imports.splitting import split_sections
from service.imports.storing import ImportedKnowledge
from service.imports.syncing import KnowledgeImports
from service.knowledge import KnowledgeStore
from service.models import KnowledgeDocument, KnowledgeEntry, KnowledgeSource
from service.runtime import Runtime

from .conftest import make_settings
from .factories import send, start_conversation
from .fake_helpcenter import CHROME_WORDS, FakeHelpCenter, Page, article, pdf, sitemap
from .upstream_server import serving

LONG = "Each step is shown on the screen, and the change is saved when you press the button. " * 12


@pytest.fixture
def center() -> Iterator[tuple[FakeHelpCenter, str]]:
    """A fake help center on loopback and its base URL."""
    fake = FakeHelpCenter()
    with serving(fake.app(), lifespan="off") as base:
        try:
            yield fake, base
        finally:
            fake.release.set()


def make_imports(url: str, **limits: object) -> KnowledgeImports:
    """The importer on the test database, with no pause between requests and a short timeout."""
    values: dict[str, object] = {"delay": 0, "timeout": 3}
    values.update(limits)
    return KnowledgeImports(make_session_factory(create_db_engine(url)), FetchLimits(**values))  # type: ignore[arg-type]


def entries(imports: KnowledgeImports) -> list[KnowledgeEntry]:
    with imports.sessions() as session:
        return list(session.scalars(select(KnowledgeEntry).order_by(KnowledgeEntry.id)))


def publish_help_center(fake: FakeHelpCenter, base: str) -> None:
    """Three articles in the sitemap, one of them long with sections; robots.txt keeps /help/internal/ out."""
    fake.pages["/robots.txt"] = Page("User-agent: *\nDisallow: /help/internal/\n", content_type="text/plain")
    fake.pages["/sitemap.xml"] = Page(sitemap(base, ["/help/reset-password", "/help/invoices", "/help/internal/ops",
                                                     "/blog/launch"]), content_type="application/xml")
    fake.pages["/help/reset-password"] = Page(article(
        "Reset your password", [("The link did not arrive", "no-link", "Look in the spam folder first. " + LONG),
                                ("Accounts with single sign-on", "sso", "Your identity provider owns it. " + LONG)],
        intro="Open the sign-in page and choose Forgot password."))
    fake.pages["/help/invoices"] = Page(article("Download an invoice", [],
                                                intro="Invoices are under Billing, then History, as PDF files."))
    fake.pages["/help/internal/ops"] = Page(article("Internal runbook", [], intro="Secret operations notes."))
    fake.pages["/blog/launch"] = Page(article("Launch post", [], intro="Not under the help path."))


def test_web_import_reads_the_sitemap_respects_robots_and_keeps_only_main_content(
    center: tuple[FakeHelpCenter, str], database_url: str
) -> None:
    fake, base = center
    publish_help_center(fake, base)
    imports = make_imports(database_url)

    report = imports.import_source(f"{base}/help/")

    assert report.error is None, report.error
    assert (report.added, report.updated, report.removed, report.failed) == (2, 0, 0, [])
    assert (f"{base}/help/internal/ops", "disallowed by robots.txt") in report.skipped
    assert "/help/internal/ops" not in fake.paths_requested() and "/blog/launch" not in fake.paths_requested()
    rows = entries(imports)
    titles = [row.title for row in rows]
    assert "Reset your password: The link did not arrive" in titles
    assert "Reset your password: Accounts with single sign-on" in titles
    assert "Download an invoice" in titles
    by_title = {row.title: row for row in rows}
    assert by_title["Reset your password: Accounts with single sign-on"].url == f"{base}/help/reset-password#sso"
    assert by_title["Download an invoice"].url == f"{base}/help/invoices"
    assert "Billing, then History" in by_title["Download an invoice"].text
    for row in rows:
        assert not any(word in row.text or word in row.title for word in CHROME_WORDS), row.text
        assert "Accept" not in row.text and "Copyright" not in row.text


def test_imported_entries_are_served_next_to_the_hand_written_files(
    center: tuple[FakeHelpCenter, str], sqlite_url: str, tmp_path: Path
) -> None:
    fake, base = center
    publish_help_center(fake, base)
    imports = make_imports(sqlite_url)
    imports.import_source(f"{base}/help/")
    (tmp_path / "knowledge").mkdir()
    (tmp_path / "knowledge" / "faq.md").write_text("## Opening hours\nkeywords: hours\n\nNine to five.\n")

    base_now = KnowledgeStore(tmp_path / "knowledge", interval=0,
                              imported=ImportedKnowledge(imports.sessions, interval=0)).current()

    titles = [issue.title for issue in base_now.issues]
    assert titles[0] == "Opening hours" and "Download an invoice" in titles
    invoice = next(i for i in base_now.issues if i.title == "Download an invoice")
    assert invoice.id.startswith("imported-") and invoice.url == f"{base}/help/invoices"
    assert invoice.page_title == "Download an invoice" and invoice.source == f"{base}/help/"
    assert base_now.search("where do I get my invoice pdf", k=1)[0][0].title == "Download an invoice"


def test_sitemap_named_in_robots_and_a_sitemap_index_are_followed(
    center: tuple[FakeHelpCenter, str], sqlite_url: str
) -> None:
    fake, base = center
    fake.pages["/robots.txt"] = Page(f"User-agent: *\nAllow: /\nSitemap: {base}/maps/index.xml\n",
                                     content_type="text/plain")
    fake.pages["/maps/index.xml"] = Page(
        '<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<sitemap><loc>{base}/maps/articles.xml</loc></sitemap></sitemapindex>", content_type="application/xml")
    fake.pages["/maps/articles.xml"] = Page(sitemap(base, ["/help/a"]), content_type="application/xml")
    fake.pages["/help/a"] = Page(article("Change your plan", [], intro="Plans change under Billing, Plan."))

    report = make_imports(sqlite_url).import_source(f"{base}/help/")

    assert report.error is None and report.added == 1
    assert "/sitemap.xml" not in fake.paths_requested()


def test_without_a_sitemap_links_under_the_start_path_are_followed(
    center: tuple[FakeHelpCenter, str], sqlite_url: str
) -> None:
    fake, base = center
    fake.pages["/help/"] = Page(article("Help center", [], intro="Browse the articles.",
                                        links=("/help/a", "/help/b", "/pricing", "http://elsewhere.test/help/x")))
    fake.pages["/help/a"] = Page(article("Export data", [], intro="Exports are under Settings, Data.",
                                         links=("/help/c",)))
    fake.pages["/help/b"] = Page(article("Delete an account", [], intro="Only the owner can delete it."))
    fake.pages["/help/c"] = Page(article("Export formats", [], intro="CSV and JSON exports are offered."))
    fake.pages["/pricing"] = Page(article("Pricing", [], intro="Plans and prices."))

    report = make_imports(sqlite_url).import_source(f"{base}/help/")

    assert report.error is None, report.error
    assert "/pricing" not in fake.paths_requested()
    assert {"/help/a", "/help/b", "/help/c"} <= set(fake.paths_requested())
    assert report.added >= 3


def test_max_pages_bounds_a_crawl(center: tuple[FakeHelpCenter, str], sqlite_url: str) -> None:
    fake, base = center
    paths = [f"/help/{n}" for n in range(6)]
    fake.pages["/sitemap.xml"] = Page(sitemap(base, paths), content_type="application/xml")
    for n, path in enumerate(paths):
        fake.pages[path] = Page(article(f"Article {n}", [], intro=f"Article number {n} explains feature {n}."))

    report = make_imports(sqlite_url).import_source(f"{base}/help/", max_pages=2)

    assert report.added == 2 and "2 pages" in (report.note or "")
    assert sum(p.startswith("/help/") for p in fake.paths_requested()) == 2


def test_a_redirect_to_another_host_is_refused_without_a_request(
    center: tuple[FakeHelpCenter, str], sqlite_url: str
) -> None:
    fake, base = center
    port = base.rsplit(":", 1)[1]
    fake.pages["/sitemap.xml"] = Page(sitemap(base, ["/help/ok", "/help/moved"]), content_type="application/xml")
    fake.pages["/help/ok"] = Page(article("Fine page", [], intro="This page stays."))
    fake.pages["/help/moved"] = Page(status=302, headers={"Location": f"http://localhost:{port}/help/ok"})

    report = make_imports(sqlite_url).import_source(f"{base}/help/")

    failed = dict(report.failed)
    assert "not on the source's host" in failed[f"{base}/help/moved"]
    assert fake.paths_requested().count("/help/ok") == 1  # the other host (localhost) was never asked


def test_a_redirect_loop_ends_with_a_clear_error(center: tuple[FakeHelpCenter, str], sqlite_url: str) -> None:
    fake, base = center
    fake.pages["/help/"] = Page(status=301, headers={"Location": "/help/a"})
    fake.pages["/help/a"] = Page(status=301, headers={"Location": "/help/"})

    report = make_imports(sqlite_url).import_source(f"{base}/help/")

    assert report.error is not None and "redirect loop" in report.error
    assert f"{base}/help/ -> {base}/help/a -> {base}/help/" in report.error


def test_bad_pages_are_named_and_the_good_ones_imported(center: tuple[FakeHelpCenter, str], sqlite_url: str) -> None:
    fake, base = center
    fake.pages["/sitemap.xml"] = Page(sitemap(base, ["/help/good", "/help/huge", "/help/logo.bin", "/help/slow",
                                                     "/help/broken", "/help/guide.pdf", "/help/scan.pdf"]),
                                      content_type="application/xml")
    fake.pages["/help/good"] = Page(article("Good page", [], intro="This one imports."))
    fake.pages["/help/huge"] = Page(article("Huge page", [], intro="x" * 40_000))
    fake.pages["/help/logo.bin"] = Page(b"\x89PNG....", content_type="image/png")
    fake.pages["/help/slow"] = Page(article("Slow page", [], intro="Never arrives."), slow=True)
    fake.pages["/help/broken"] = Page("oops", status=500, content_type="text/plain")
    fake.pages["/help/guide.pdf"] = Page(pdf("Warranty covers two years of parts", "Warranty terms"),
                                         content_type="application/pdf")
    fake.pages["/help/scan.pdf"] = Page(pdf(None), content_type="application/pdf")

    report = make_imports(sqlite_url, max_page_bytes=20_000, timeout=1).import_source(f"{base}/help/")

    failed, skipped = dict(report.failed), dict(report.skipped)
    assert "too large" in failed[f"{base}/help/huge"]
    assert "timed out" in failed[f"{base}/help/slow"]
    assert failed[f"{base}/help/broken"] == "HTTP 500"
    assert "the PDF has no text" in failed[f"{base}/help/scan.pdf"]
    assert skipped[f"{base}/help/logo.bin"] == "not HTML (image/png)"
    assert report.added == 2  # the good page and the PDF with text
    assert report.status == "partial"


def test_an_unreachable_source_fails_naming_it_and_stores_nothing(sqlite_url: str) -> None:
    imports = make_imports(sqlite_url, timeout=1)
    source = "http://127.0.0.1:9/help/"  # the discard port: nobody listens

    report = imports.import_source(source)

    assert report.error is not None and "unreachable" in report.error and report.source == source
    with imports.sessions() as session:
        assert session.scalars(select(KnowledgeSource)).all() == []


def test_a_non_html_start_page_fails_the_source(center: tuple[FakeHelpCenter, str], sqlite_url: str) -> None:
    fake, base = center
    fake.pages["/help/"] = Page(b"\x00\x01", content_type="application/octet-stream")

    report = make_imports(sqlite_url).import_source(f"{base}/help/")

    assert report.error is not None and "not HTML (application/octet-stream)" in report.error


def test_a_public_source_is_never_led_to_a_private_address() -> None:
    addresses = {"help.example.com": ["93.184.215.14"], "help.example.com.evil": ["10.0.0.5"]}
    fetcher = Fetcher("https://help.example.com/", FetchLimits(delay=0),
                      resolve=lambda host: addresses.get(host, ["10.0.0.5"]))
    assert fetcher.allow_private is False
    addresses["help.example.com"] = ["169.254.169.254"]  # DNS now points at the cloud metadata address
    with pytest.raises(PageFailed, match="private address"):
        fetcher.check_url("https://help.example.com/a")
    with pytest.raises(PageFailed, match="only http"):
        fetcher.check_url("file:///etc/passwd")
    fetcher.close()
    assert not is_public("127.0.0.1") and not is_public("::ffff:192.168.1.1") and is_public("93.184.215.14")


def test_long_articles_split_at_headings_small_ones_stay_whole() -> None:
    assert len(split_sections("Short answer.\n\n## Heading\n\nMore.")) == 1
    text = f"Intro. {LONG}\n\n## First\n\n{LONG}\n\n### Deeper\n\n{LONG}\n\n```\n## not a heading\n```"
    sections = split_sections(text)
    assert [s.heading for s in sections] == [None, "First", "Deeper"]
    assert "## not a heading" in sections[-1].text


def test_a_folder_of_markdown_html_text_and_pdf(sqlite_url: str, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "billing").mkdir(parents=True)
    (docs / "billing" / "refunds.md").write_text("# Refunds\n\nRefunds take 5 to 10 business days.\n")
    (docs / "shipping.html").write_text(article("Shipping times", [], intro="Parcels leave the warehouse in 24 hours."))
    (docs / "returns-policy.txt").write_text("Returns are accepted for 30 days after delivery.\n")
    (docs / "warranty.pdf").write_bytes(pdf("Warranty covers two years of parts", "Warranty terms"))
    (docs / "scanned.pdf").write_bytes(pdf(None))
    (docs / "image.png").write_bytes(b"\x89PNG")
    imports = make_imports(sqlite_url)

    report = imports.import_source(str(docs))

    assert report.added == 4 and [url for url, _ in report.failed] == ["scanned.pdf"]
    assert "the PDF has no text" in report.failed[0][1]
    by_title = {row.title: row for row in entries(imports)}
    assert set(by_title) == {"Refunds", "Shipping times", "Returns policy", "Warranty terms"}
    assert "24 hours" in by_title["Shipping times"].text and "COOKIEWORD" not in by_title["Shipping times"].text
    served = ImportedKnowledge(imports.sessions, interval=0)()
    assert all(issue.url is None for issue in served)  # local files have no address a visitor could open


ZENDESK = {"articles": [
    {"id": 1, "title": "Pair a new device", "html_url": "https://help.example.com/hc/articles/1",
     "body": "<p>Hold the button for five seconds until the light blinks.</p>", "draft": False,
     "updated_at": "2026-01-02T10:00:00Z"},
    {"id": 2, "title": "Unreleased feature", "html_url": "https://help.example.com/hc/articles/2",
     "body": "<p>Draft.</p>", "draft": True, "updated_at": "2026-01-02T10:00:00Z"},
], "next_page": None}
INTERCOM = {"type": "list", "total_count": 1, "data": [
    {"type": "article", "id": "9", "title": "Invite a teammate", "state": "published",
     "url": "https://intercom.help/example/en/articles/9", "updated_at": 1767225600,
     "body": "<h2 id='seats'>Seats</h2><p>Each invite uses a seat on your plan.</p>"},
]}


@pytest.mark.parametrize(("export", "title", "url"), [
    (ZENDESK, "Pair a new device", "https://help.example.com/hc/articles/1"),
    (INTERCOM, "Invite a teammate", "https://intercom.help/example/en/articles/9"),
])
def test_zendesk_and_intercom_exports(database_url: str, tmp_path: Path, export: dict[str, object], title: str,
                                      url: str) -> None:
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export))
    imports = make_imports(database_url)

    report = imports.import_source(str(path))

    assert report.error is None and report.added == 1
    rows = entries(imports)
    assert [(row.title, row.url) for row in rows] == [(title, url)]
    with imports.sessions() as session:
        assert session.scalars(select(KnowledgeDocument.updated_at)).one() is not None


@pytest.mark.parametrize(("content", "expected"), [
    ('{"results": []}', "not an articles export; expected a Zendesk Help Center articles export"),
    ("not json at all", "not valid JSON"),
])
def test_an_export_of_the_wrong_shape_is_named(sqlite_url: str, tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "export.json"
    path.write_text(content)

    report = make_imports(sqlite_url).import_source(str(path))

    assert report.error is not None and expected in report.error and report.source == str(path)


async def test_an_imported_article_answers_through_the_offline_provider(
    center: tuple[FakeHelpCenter, str], sqlite_url: str, tmp_path: Path
) -> None:
    fake, base = center
    fake.pages["/sitemap.xml"] = Page(sitemap(base, ["/help/pair-thermostat"]), content_type="application/xml")
    fake.pages["/help/pair-thermostat"] = Page(article(
        "Pair the thermostat with the hub", [],
        intro="Hold the pairing button on the thermostat for five seconds until the ring blinks blue."))
    make_imports(sqlite_url).import_source(f"{base}/help/")
    runtime = Runtime.build(make_settings(tmp_path, sqlite_url))
    transport = httpx.ASGITransport(app=create_app(runtime=runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://supportbot.test") as client:
        conversation_id, auth = await start_conversation(client)
        response = await send(client, conversation_id, auth, "How can I pair my thermostat with the hub?")
    await runtime.aclose()

    assert response.status_code == 200, response.text
    reply = response.json()["reply"]["content"]
    assert "ring blinks blue" in reply


HELP_CENTER = Path(__file__).resolve().parent / "data" / "helpcenter"


def hub(title: str, links: list[tuple[str, str, str]]) -> str:
    """A category page: the page chrome around a list of article links, each with its one-line summary."""
    items = "".join(f'<li><a href="{href}">{name}</a><p>{summary}</p></li>' for href, name, summary in links)
    return article(title, []).replace("<p></p>", f'<ul class="article-list">{items}</ul>')


def with_related(page: str, links: list[str], aside: bool) -> str:
    """The article with a "Related articles" list after it: in an <aside>, or in a plain <div> inside the article."""
    items = "".join(f'<li><a href="{href}">Related: {href}</a></li>' for href in links)
    if aside:
        return page.replace("</article>", f"</article><aside><h3>Related articles</h3><ul>{items}</ul></aside>")
    return page.replace("</article>", f'<div class="related"><h3>Related articles</h3><ul>{items}</ul></div></article>')


def test_link_list_pages_are_skipped_and_articles_with_related_links_are_imported(
    center: tuple[FakeHelpCenter, str], database_url: str
) -> None:
    fake, base = center
    related = ["/help/refunds", "/help/invoices", "/help/billing"]
    fake.pages["/sitemap.xml"] = Page(sitemap(base, ["/help/", "/help/billing", "/help/small", "/help/refunds",
                                                     "/help/invoices", "/help/inline"]),
                                      content_type="application/xml")
    fake.pages["/help/"] = Page(hub("How can we help?", [("/help/billing", "Billing", "Plans, invoices, refunds."),
                                                         ("/help/account", "Account", "Sign-in and security.")]))
    fake.pages["/help/billing"] = Page(hub("Billing", [
        ("/help/refunds", "Refund a payment", "Send money back to a customer who paid by card."),
        ("/help/invoices", "Download an invoice", "Find every invoice you were sent as a PDF."),
        ("/help/plans", "Plans and prices", "What each plan costs and what it includes."),
    ]))
    fake.pages["/help/small"] = Page(hub("Small category", [("/help/refunds", "Refund a payment", "Money back."),
                                                            ("/help/invoices", "Download an invoice", "PDFs.")]))
    fake.pages["/help/refunds"] = Page(with_related(article(
        "Refund a payment", [], intro="Open the payment and choose Refund; the money is back in 5 to 10 days."),
        related, aside=True))
    fake.pages["/help/invoices"] = Page(with_related(article(
        "Download an invoice", [], intro="Invoices are under Billing, then History, as PDF files."),
        related, aside=False))
    fake.pages["/help/inline"] = Page(article(
        "Change your plan", [], intro='Go to <a href="/help/billing">Billing</a>, then <a href="/help/plans">Plans</a>,'
                                      " and choose the plan you want; the price changes from the next invoice."))
    imports = make_imports(database_url)

    report = imports.import_source(f"{base}/help/")

    assert report.error is None and report.failed == []
    assert sorted(report.skipped) == [(f"{base}/help/", "a list of links, not an article"),
                                      (f"{base}/help/billing", "a list of links, not an article"),
                                      (f"{base}/help/small", "a list of links, not an article")]
    assert report.added == 3
    by_url = {row.url: row for row in entries(imports)}
    assert set(by_url) == {f"{base}/help/refunds", f"{base}/help/invoices", f"{base}/help/inline"}
    assert "5 to 10 days" in by_url[f"{base}/help/refunds"].text
    assert "Billing, then History" in by_url[f"{base}/help/invoices"].text
    assert "the price changes from the next invoice" in by_url[f"{base}/help/inline"].text


def test_a_page_that_became_a_list_of_links_stops_answering_at_the_next_sync(
    center: tuple[FakeHelpCenter, str], sqlite_url: str
) -> None:
    fake, base = center
    fake.pages["/sitemap.xml"] = Page(sitemap(base, ["/help/refunds", "/help/billing"]), content_type="application/xml")
    fake.pages["/help/refunds"] = Page(article("Refund a payment", [], intro="Open the payment and choose Refund."))
    fake.pages["/help/billing"] = Page(article("Billing", [], intro="Plans are billed monthly, on the day you joined."))
    imports = make_imports(sqlite_url)
    assert imports.import_source(f"{base}/help/").added == 2
    fake.pages["/help/billing"] = Page(hub("Billing", [("/help/refunds", "Refund a payment", "Money back."),
                                                       ("/help/plans", "Plans", "What each plan costs.")]))

    [report] = imports.sync_all()

    assert (report.updated, report.unchanged, report.removed) == (0, 1, 1)
    assert report.skipped == [(f"{base}/help/billing", "a list of links, not an article")]
    assert [row.url for row in entries(imports)] == [f"{base}/help/refunds"]


def test_the_tallybook_folder_imports_its_33_articles_and_skips_its_7_hub_pages(sqlite_url: str) -> None:
    imports = make_imports(sqlite_url)

    report = imports.import_source(str(HELP_CENTER))

    hubs = sorted(path.relative_to(HELP_CENTER).as_posix() for path in HELP_CENTER.glob("**/*.html")
                  if path.parent.name not in ("articles", "internal"))
    assert hubs == ["categories/account-and-security.html", "categories/banking.html", "categories/expenses.html",
                    "categories/getting-started.html", "categories/invoices-and-payments.html",
                    "categories/tax-and-reports.html", "index.html"]
    assert sorted(report.skipped) == [(hub, "a list of links, not an article") for hub in hubs]
    with imports.sessions() as session:
        stored = set(session.scalars(select(KnowledgeDocument.url)))
    articles = {f"articles/{path.name}" for path in (HELP_CENTER / "articles").glob("*.html")}
    assert len(articles) == 33 and articles <= stored and not set(hubs) & stored


def test_an_export_article_that_is_a_list_of_links_is_still_imported(sqlite_url: str, tmp_path: Path) -> None:
    # Each step opens with a link to another article: as a web page this body would be a list of links.
    body = "".join(f'<li><a href="/hc/articles/{n}">Step {n}</a>: hold the button for five seconds until the light '
                   "blinks, then open the app and choose Pair on the devices screen.</li>" for n in range(4))
    path = tmp_path / "export.json"
    path.write_text(json.dumps({"articles": [{"id": 7, "title": "Where to start", "body": f"<ul>{body}</ul>",
                                              "html_url": "https://help.example.com/hc/articles/7"}]}))

    report = make_imports(sqlite_url).import_source(str(path))

    assert report.error is None and (report.added, report.skipped) == (1, [])
    # The same list as an HTML page of a folder is skipped (it is the folder's only page, so the import fails).
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "start.html").write_text(f"<html><body><main><h1>Start</h1><ul>{body}</ul></main></body>")
    web = make_imports(sqlite_url).import_source(str(tmp_path / "web"))
    assert web.error is not None and "start.html: a list of links, not an article" in web.error, web.error
