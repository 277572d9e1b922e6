"""Schemathesis against the service's own OpenAPI schema: no 5xx, every response matches the schema."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from service.api import create_app
from service.config import PROJECT_ROOT
from service.runtime import Runtime

from .conftest import make_settings

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def fuzz_runtime(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Runtime]:
    """The service's parts on a database and a knowledge copy of its own, in a temporary directory."""
    workdir = tmp_path_factory.mktemp("schemathesis")
    database = workdir / "fuzz.db"
    shutil.copy(sqlite_template, database)
    # The fuzzer calls every write endpoint, `promote` included: it gets its own copy of the knowledge.
    knowledge = workdir / "knowledge"
    shutil.copytree(PROJECT_ROOT / "knowledge", knowledge)
    # Rate limits off: the fuzzer sends hundreds of requests from one client on purpose.
    runtime = Runtime.build(make_settings(workdir, f"sqlite:///{database}", rate_limit_per_ip="0",
                                          rate_limit_per_visitor="0", rate_limit_conversations_per_ip="0",
                                          knowledge_dir=knowledge))
    yield runtime
    asyncio.run(runtime.aclose())


@pytest.fixture(scope="module")
def fuzz_app(fuzz_runtime: Runtime) -> FastAPI:
    """The app the fuzzer's requests go to."""
    return create_app(runtime=fuzz_runtime)


def _document_app() -> FastAPI:
    """An app that only serves its OpenAPI document at collection: in-memory database, secrets given, no file."""
    settings = make_settings(Path(tempfile.gettempdir()) / "supportbot-schema-only", "sqlite://",
                             admin_token="schema-only-admin-token")
    return create_app(runtime=Runtime.build(settings))


# Read at collection, so each operation is a test of its own; the requests go to `fuzz_app`, built when a
# test first needs it, on a temporary directory.
schema = schemathesis.openapi.from_asgi("/openapi.json", _document_app())


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_errors_and_matches_its_schema(
    case: schemathesis.Case[Any], fuzz_runtime: Runtime, fuzz_app: FastAPI
) -> None:
    headers = {}
    if case.path.startswith("/admin"):
        headers["Authorization"] = f"Bearer {fuzz_runtime.admin_token}"
    elif "{conversation_id}" in case.path:
        # A real conversation and its token, so the fuzzer gets past authorization into the handlers.
        conversation = fuzz_runtime.log.create_conversation()
        case.path_parameters = {**(case.path_parameters or {}), "conversation_id": conversation.id}
        headers["Authorization"] = f"Bearer {fuzz_runtime.tokens.issue(conversation.id)}"
    response = case.call(headers=headers, app=fuzz_app)
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code}"
    # Opaque cursors and ids invented by the fuzzer are schema-valid strings that are rightly refused
    # (422 invalid_cursor, 404): every other check, including the response schemas, applies.
    case.validate_response(response, excluded_checks=[positive_data_acceptance])
