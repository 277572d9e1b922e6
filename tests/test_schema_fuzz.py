"""Schemathesis against the service's own OpenAPI schema: no 5xx, every response matches the schema."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from service.api import create_app
from service.config import PROJECT_ROOT
from service.runtime import Runtime

from .conftest import make_settings

pytestmark = pytest.mark.filterwarnings("ignore")

_runtime: Runtime | None = None


def _app() -> object:
    global _runtime
    from service.db import upgrade

    workdir = Path(__file__).resolve().parent.parent / ".pytest_cache" / "schemathesis"
    workdir.mkdir(parents=True, exist_ok=True)
    database = workdir / "fuzz.db"
    database.unlink(missing_ok=True)
    upgrade(f"sqlite:///{database}")
    # The fuzzer calls every write endpoint, `promote` included: it gets its own copy of the knowledge.
    knowledge = workdir / "knowledge"
    shutil.rmtree(knowledge, ignore_errors=True)
    shutil.copytree(PROJECT_ROOT / "knowledge", knowledge)
    # Rate limits off: the fuzzer sends hundreds of requests from one client on purpose.
    _runtime = Runtime.build(make_settings(workdir, f"sqlite:///{database}", rate_limit_per_ip="0",
                                           rate_limit_per_visitor="0", knowledge_dir=knowledge))
    return create_app(runtime=_runtime)


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_errors_and_matches_its_schema(case: schemathesis.Case) -> None:
    assert _runtime is not None
    headers = {}
    if case.path.startswith("/admin"):
        headers["Authorization"] = f"Bearer {_runtime.admin_token}"
    elif "{conversation_id}" in case.path:
        # A real conversation and its token, so the fuzzer gets past authorization into the handlers.
        conversation = _runtime.log.create_conversation()
        case.path_parameters = {**(case.path_parameters or {}), "conversation_id": conversation.id}
        headers["Authorization"] = f"Bearer {_runtime.tokens.issue(conversation.id)}"
    response = case.call(headers=headers)
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code}"
    # Opaque cursors and ids invented by the fuzzer are schema-valid strings that are rightly refused
    # (422 invalid_cursor, 404): every other check, including the response schemas, applies.
    case.validate_response(response, excluded_checks=[positive_data_acceptance])
