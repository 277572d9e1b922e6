"""Fixtures: a migrated database (SQLite and the real PostgreSQL), settings, runtime, app and clients."""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import respx
from hypothesis import settings as hypothesis_settings
from playwright.sync_api import Browser, Page, sync_playwright
from sqlalchemy import create_engine, text

from service.api import create_app
from service.config import PROJECT_ROOT, Settings
from service.db import upgrade
from service.models import Base
from service.runtime import Runtime

from . import checkout_guard, reliability_report, respx_httpx2  # noqa: F401 - respx also intercepts httpx2

PG_URL = os.environ.get("SUPPORTBOT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MODEL_BASE_URL = "http://model.test/v1"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
# Under CI property tests draw the same examples every run, so a red run is reproducible and never a coin
# toss; a developer's runs keep exploring new examples (and Hypothesis keeps the failing ones in .hypothesis).
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
if IN_CI:
    hypothesis_settings.load_profile("ci")
CHROMIUM = Path(os.environ.get("SUPPORTBOT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(autouse=True)
def root_log_handlers() -> Iterator[None]:
    """The root logger's handlers as they were before each test: `supportbot` commands run in this process point
    logging at the stderr of their run, which pytest closes when the test ends; a later test's log lines would
    then fail with "I/O operation on closed file" in its output."""
    root = logging.getLogger()
    before, level = root.handlers[:], root.level
    yield
    for handler in root.handlers[:]:
        if handler not in before:
            root.removeHandler(handler)
            handler.close()
    for handler in before:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


def postgres_available() -> bool:
    try:
        engine = create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:  # noqa: BLE001
        return False


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once; each test gets a copy."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_schema_url() -> Iterator[str]:
    """A fresh schema in the machine's PostgreSQL, migrated once for the session, dropped after."""
    if not postgres_available():
        if IN_CI:
            pytest.fail(f"PostgreSQL is required under CI=true but {PG_URL} is unreachable")
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}")
    schema = f"sbtest_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_URL)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    upgrade(url)
    yield url
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def _truncate_postgres(url: str) -> None:
    engine = create_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database: every storage test runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "supportbot.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url: str = request.getfixturevalue("postgres_schema_url")
    _truncate_postgres(url)
    return url


@pytest.fixture
def sqlite_url(tmp_path: Path, sqlite_template: Path) -> str:
    """A migrated SQLite database, for tests about behaviour that does not depend on the engine."""
    path = tmp_path / "supportbot.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


def site_files(tmp: Path, sqlite_template: Path, extra_knowledge: dict[str, str]) -> tuple[str, Path]:
    """A migrated SQLite database and a copy of the shipped knowledge plus `extra_knowledge` files, in `tmp`."""
    shutil.copy(sqlite_template, tmp / "supportbot.db")
    knowledge = tmp / "knowledge"
    shutil.copytree(PROJECT_ROOT / "knowledge", knowledge)
    for name, entry in extra_knowledge.items():
        (knowledge / name).write_text(entry, encoding="utf-8")
    return f"sqlite:///{tmp / 'supportbot.db'}", knowledge


def make_settings(tmp_path: Path, database_url: str, **overrides: object) -> Settings:
    """Settings pointing at a test database and data dir, the repo's prompts and knowledge."""
    values: dict[str, object] = {
        "data_dir": tmp_path / "data",
        "database_url": database_url,
        "prompts_dir": PROJECT_ROOT / "prompts",
        "knowledge_dir": PROJECT_ROOT / "knowledge",
        "secret_key": "test-secret-key-0123456789",
        "openai_api_key": None,
        "reload_interval": 0,
        "_env_file": None,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url)


@pytest.fixture
def hosted_settings(tmp_path: Path, database_url: str) -> Settings:
    """Settings with a hosted model configured (mocked with respx at MODEL_BASE_URL)."""
    return make_settings(tmp_path, database_url, openai_api_key="sk-test-key", openai_base_url=MODEL_BASE_URL,
                         model="gpt-4o-mini")


@pytest.fixture
def model_mock() -> Iterator[respx.MockRouter]:
    """The hosted model's HTTP boundary; unmatched requests fail the test."""
    with respx.mock(base_url=MODEL_BASE_URL, assert_all_called=False) as router:
        yield router


async def _client_for(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(runtime=runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://supportbot.test") as client:
        yield client
    await runtime.aclose()


@pytest.fixture
def runtime(settings: Settings) -> Runtime:
    """The service's parts with the offline provider."""
    return Runtime.build(settings)


@pytest.fixture
def hosted_runtime(hosted_settings: Settings, model_mock: respx.MockRouter) -> Runtime:
    """The service's parts with the (mocked) hosted model."""
    return Runtime.build(hosted_settings)


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """An API client against the app with the offline provider."""
    async for c in _client_for(runtime):
        yield c


@pytest.fixture
async def hosted_client(hosted_runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """An API client against the app with the (mocked) hosted model."""
    async for c in _client_for(hosted_runtime):
        yield c



def pytest_configure(config: pytest.Config) -> None:
    """The checkout guard, and the `reliability` fixture (its rows go to a file only when asked)."""
    config.pluginmanager.register(checkout_guard, "supportbot-checkout-guard")
    config.pluginmanager.register(reliability_report, "supportbot-reliability")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """The machine's Chromium (widget and admin pages); skipped where there is none, except under CI=true."""
    if not CHROMIUM.exists():
        if IN_CI:
            pytest.fail(f"Chromium is required under CI=true but {CHROMIUM} does not exist")
        pytest.skip(f"no Chromium at {CHROMIUM}")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh visitor (own storage); the test fails on any uncaught error in the page."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert errors == [], f"uncaught errors in the page: {errors}"


FinetuneCli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run_cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> FinetuneCli:
    """`supportbot finetune ...` in this process with these settings: (exit code, stdout, stderr)."""
    from service import cli

    # The CLI points logging at the stderr of its run; capsys closes that stream after each test.
    monkeypatch.setattr(cli, "configure_logging", lambda *args, **kwargs: None)

    def run(*args: str, using: Settings | None = None) -> tuple[int, str, str]:
        monkeypatch.setattr(cli, "get_settings", lambda: using or settings)
        code = cli.main(["finetune", *args])
        out, err = capsys.readouterr()
        return code, out, err
    return run
