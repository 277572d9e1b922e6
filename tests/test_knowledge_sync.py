"""Keeping imported knowledge in sync: changed, removed and failing pages, ETags, replicas, the schedule, the CLI."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from service.api import create_app
from service.imports import crawling
from service.imports.schedule import ScheduledSync
from service.imports.storing import ImportedKnowledge
from service.knowledge import KnowledgeStore
from service.models import KnowledgeDocument, KnowledgeEntry, KnowledgeSource
from service.runtime import Runtime

from .conftest import make_settings
from .fake_helpcenter import FakeHelpCenter, Page, article, sitemap
from .processes import SUPPORTBOT, clean_env
from .test_knowledge_import import make_imports
from .upstream_server import serving


@pytest.fixture
def center() -> Iterator[tuple[FakeHelpCenter, str]]:
    """A fake help center with two articles in its sitemap."""
    fake = FakeHelpCenter()
    with serving(fake.app(), lifespan="off") as base:
        fake.pages["/sitemap.xml"] = Page(sitemap(base, ["/help/shipping", "/help/returns"]),
                                          content_type="application/xml")
        fake.pages["/help/shipping"] = Page(article("Shipping times", [], intro="Parcels leave within 24 hours."))
        fake.pages["/help/returns"] = Page(article("Returns", [], intro="Returns are free for 30 days."))
        try:
            yield fake, base
        finally:
            fake.release.set()


def texts(imports: object) -> dict[str, str]:
    with imports.sessions() as session:  # type: ignore[attr-defined]
        return {row.title: row.text for row in session.scalars(select(KnowledgeEntry))}


def test_sync_updates_changed_pages_and_drops_removed_ones(
    center: tuple[FakeHelpCenter, str], database_url: str
) -> None:
    fake, base = center
    imports = make_imports(database_url)
    assert imports.import_source(f"{base}/help/").added == 2
    fake.pages["/help/shipping"] = Page(article("Shipping times", [], intro="Parcels now leave within 12 hours."))
    fake.pages["/sitemap.xml"] = Page(sitemap(base, ["/help/shipping"]), content_type="application/xml")

    [report] = imports.sync_all()

    assert (report.added, report.updated, report.unchanged, report.removed) == (0, 1, 0, 1)
    assert texts(imports) == {"Shipping times": "Parcels now leave within 12 hours."}


def test_a_page_that_starts_failing_keeps_its_last_copy(center: tuple[FakeHelpCenter, str], database_url: str) -> None:
    fake, base = center
    imports = make_imports(database_url)
    imports.import_source(f"{base}/help/")
    fake.pages["/help/returns"] = Page("upstream broke", status=503, content_type="text/plain")

    [report] = imports.sync_all()

    assert report.failed == [(f"{base}/help/returns", "HTTP 503")] and report.status == "partial"
    assert texts(imports)["Returns"] == "Returns are free for 30 days."
    with imports.sessions() as session:
        source = session.scalars(select(KnowledgeSource)).one()
        document = session.scalars(select(KnowledgeDocument).where(KnowledgeDocument.url.endswith("/returns"))).one()
    assert source.last_sync_status == "partial" and document.last_error == "HTTP 503"


def test_a_source_that_fails_entirely_keeps_everything(center: tuple[FakeHelpCenter, str], sqlite_url: str) -> None:
    fake, base = center
    imports = make_imports(sqlite_url)
    imports.import_source(f"{base}/help/")
    fake.pages["/robots.txt"] = Page("maintenance", status=503, content_type="text/plain")

    [report] = imports.sync_all()

    assert report.error is not None and "robots.txt answered HTTP 503" in report.error
    assert report.source == f"{base}/help/"
    assert set(texts(imports)) == {"Shipping times", "Returns"}


def test_etags_are_sent_back_and_an_unchanged_page_is_not_parsed_again(
    center: tuple[FakeHelpCenter, str], sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, base = center
    fake.pages["/help/shipping"].headers["ETag"] = '"v1"'
    imports = make_imports(sqlite_url)
    imports.import_source(f"{base}/help/")
    parsed: list[str] = []
    real = crawling.extract_html
    monkeypatch.setattr(crawling, "extract_html", lambda html, url: parsed.append(url) or real(html, url))
    fake.requests.clear()

    [report] = imports.sync_all()

    sent = [headers for path, headers in fake.requests if path == "/help/shipping"]
    assert sent and sent[0].get("if-none-match") == '"v1"'
    assert f"{base}/help/shipping" not in parsed and f"{base}/help/returns" in parsed
    assert (report.unchanged, report.updated) == (2, 0), report


def test_every_replica_sees_a_sync(center: tuple[FakeHelpCenter, str], database_url: str, tmp_path: Path) -> None:
    fake, base = center
    imports = make_imports(database_url)
    replicas = [KnowledgeStore(tmp_path / "none", interval=0, imported=ImportedKnowledge(
        make_imports(database_url).sessions, interval=0)) for _ in range(2)]
    assert [len(r.current().issues) for r in replicas] == [0, 0]

    imports.import_source(f"{base}/help/")
    assert [len(r.current().issues) for r in replicas] == [2, 2]
    first = replicas[0].current()
    assert replicas[0].current() is first  # nothing changed: no rebuild

    fake.pages["/sitemap.xml"] = Page(sitemap(base, ["/help/returns"]), content_type="application/xml")
    imports.sync_all()
    assert [[i.title for i in r.current().issues] for r in replicas] == [["Returns"], ["Returns"]]


def test_two_replicas_on_one_database_sync_a_source_once(
    center: tuple[FakeHelpCenter, str], database_url: str
) -> None:
    fake, base = center
    make_imports(database_url).import_source(f"{base}/help/")
    schedules = [ScheduledSync(make_imports(database_url), interval=0.001) for _ in range(2)]
    fake.requests.clear()
    barrier = threading.Barrier(2)
    results: list[int] = []

    def tick(schedule: ScheduledSync) -> None:
        barrier.wait()
        results.append(len(schedule.run_due()))

    threads = [threading.Thread(target=tick, args=(s,)) for s in schedules]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert sorted(results) == [0, 1]
    assert fake.paths_requested().count("/help/shipping") == 1
    # Synced a moment ago: not due again within the interval.
    assert ScheduledSync(make_imports(database_url), interval=3600).run_due() == []


def test_the_service_syncs_on_its_schedule(center: tuple[FakeHelpCenter, str], sqlite_url: str,
                                           tmp_path: Path) -> None:
    fake, base = center
    imports = make_imports(sqlite_url)
    imports.import_source(f"{base}/help/")
    fake.pages["/help/returns"] = Page(article("Returns", [], intro="Returns are free for 60 days."))
    settings = make_settings(tmp_path, sqlite_url, knowledge_sync_interval=0.2, knowledge_import_delay=0)

    with serving(create_app(runtime=Runtime.build(settings))) as service:
        deadline = time.monotonic() + 30
        while texts(imports)["Returns"] != "Returns are free for 60 days." and time.monotonic() < deadline:
            time.sleep(0.05)
        assert httpx.get(f"{service}/healthz").status_code == 200

    assert texts(imports)["Returns"] == "Returns are free for 60 days."


def test_the_cli_imports_lists_syncs_and_removes(center: tuple[FakeHelpCenter, str], tmp_path: Path) -> None:
    fake, base = center
    env = clean_env(tmp_path, SUPPORTBOT_KNOWLEDGE_IMPORT_DELAY="0")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([SUPPORTBOT, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)

    assert run("db", "upgrade").returncode == 0
    imported = run("knowledge", "import", f"{base}/help/", "--max-pages", "5")
    assert imported.returncode == 0, imported.stderr
    assert f"{base}/help/: 2 added, 0 updated, 0 unchanged, 0 removed, 0 failed" in imported.stdout

    fake.pages["/help/returns"] = Page("down", status=500, content_type="text/plain")
    synced = run("knowledge", "sync")
    assert synced.returncode == 1
    assert "1 unchanged, 0 removed, 1 failed" in synced.stdout
    assert f"failed  {base}/help/returns: HTTP 500" in synced.stdout

    listed = run("knowledge", "list")
    assert f"{base}/help/  [web]  2 documents, 2 entries" in listed.stdout and "partial" in listed.stdout

    missing = run("knowledge", "import", str(tmp_path / "nope.json"))
    assert missing.returncode == 1 and "nope.json: failed, nothing changed: no such file or folder" in missing.stderr
    assert run("knowledge", "remove", f"{base}/help/").returncode == 0
    assert "no imported sources" in run("knowledge", "list").stdout
